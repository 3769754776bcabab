//! The Kubernetes manifests in `deploy/kubernetes` pass `validate.sh` (yamllint,
//! kubernetes-validate --strict, and the cross-file checks), and the validator rejects broken
//! copies, so a green run means something.
//!
//! `validate.sh` installs its Python tools from PyPI into a venv on first use
//! (`$VOXPIPE_VENV`, default `~/.cache/voxpipe/venv-deploy`); later runs take a few seconds.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

/// Runs `validate.sh` with `args` and returns its output with stdout and stderr joined.
fn validate(args: &[&Path]) -> (Output, String) {
    let script = deploy_dir().join("validate.sh");
    let output = Command::new("bash")
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let text = format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output, text)
}

/// A copy of the manifests folder in a temp dir, with `edit` applied to `file`'s text.
fn broken_copy(file: &str, edit: impl Fn(&str) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(deploy_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let target = dir.path().join(file);
    let text = std::fs::read_to_string(&target).unwrap();
    let edited = edit(&text);
    assert_ne!(edited, text, "the edit to {file} changed nothing: update this test");
    std::fs::write(&target, edited).unwrap();
    dir
}

#[test]
fn manifests_validate() {
    let (output, text) = validate(&[]);
    assert!(output.status.success(), "validate.sh failed ({}):\n{text}", output.status);
    assert!(text.contains("all 8 files passed"), "unexpected output:\n{text}");
}

#[test]
fn unknown_field_is_rejected() {
    let dir = broken_copy("deployment.yaml", |t| t.replacen("  replicas: 2", "  replicaz: 2", 1));
    let file = dir.path().join("deployment.yaml");
    let (output, text) = validate(&[&file]);
    assert!(!output.status.success(), "validate.sh accepted `replicaz`:\n{text}");
    assert!(text.contains("'replicaz' was unexpected"), "no schema error for replicaz:\n{text}");
    assert!(text.contains(&format!("{} (kubernetes-validate --strict)", file.display())), "{text}");
}

#[test]
fn wrong_type_is_rejected() {
    let dir = broken_copy("deployment.yaml", |t| t.replacen("replicas: 2", "replicas: \"two\"", 1));
    let (output, text) = validate(&[&dir.path().join("deployment.yaml")]);
    assert!(!output.status.success(), "validate.sh accepted replicas: \"two\":\n{text}");
    assert!(text.contains("spec.replicas"), "no schema error for spec.replicas:\n{text}");
}

#[test]
fn grace_period_shorter_than_the_drain_is_rejected() {
    let dir = broken_copy("deployment.yaml", |t| {
        t.replacen("terminationGracePeriodSeconds: 1860", "terminationGracePeriodSeconds: 1800", 1)
    });
    let (output, text) = validate(&[dir.path()]);
    assert!(!output.status.success(), "validate.sh accepted a 1800 s grace period:\n{text}");
    assert!(text.contains("ERROR deployment.yaml: terminationGracePeriodSeconds 1800"), "{text}");
}

#[test]
fn public_url_off_the_ingress_host_is_rejected() {
    let dir = broken_copy("configmap.yaml", |t| {
        t.replacen("https://voice.example.com", "https://other.example.com", 1)
    });
    let (output, text) = validate(&[dir.path()]);
    assert!(!output.status.success(), "validate.sh accepted a foreign public_url:\n{text}");
    assert!(text.contains("ERROR ingress.yaml: public_url 'https://other.example.com'"), "{text}");
}
