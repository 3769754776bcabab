//! The official `openai` (Realtime and chat streaming) and `anthropic` Python SDKs, pinned in
//! `tests/conformance/requirements.txt` and installed by `scripts/setup.sh` into
//! `target/conformance-venv`, against `voxpipe fake realtime|llm|anthropic` started as a user
//! would (the `voxpipe` command, on 127.0.0.1 with a free port). Each script in
//! `tests/conformance/` validates every server event or chunk's raw JSON against the SDK's own
//! pydantic models and exits non-zero on anything they reject or a conversation that goes wrong
//! (tool calls, and a barge-in with `conversation.item.truncate` in the Realtime run).
//!
//! Without the venv these tests fail and say to run `scripts/setup.sh`: CI runs it first.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_path_buf()
}

fn conformance_dir() -> PathBuf {
    root().join("tests/conformance")
}

/// The venv's Python, checked to hold exactly the pinned requirements.
fn python() -> PathBuf {
    let venv = root().join("target/conformance-venv");
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh (it installs the SDKs pinned in tests/conformance/requirements.txt there)",
        python.display()
    );
    let wanted = std::fs::read(conformance_dir().join("requirements.txt")).expect("requirements.txt");
    let installed = std::fs::read(venv.join(".requirements.txt")).unwrap_or_default();
    assert!(
        wanted == installed,
        "{} does not hold tests/conformance/requirements.txt as it is now: run scripts/setup.sh",
        venv.display()
    );
    python
}

/// A `voxpipe fake …` process, killed when dropped.
struct Fake {
    child: Child,
    /// The URL it printed (`ws://…/v1/realtime` or `http://…/v1`).
    url: String,
    log: tempfile::NamedTempFile,
}

impl Fake {
    fn start(args: &[&str]) -> Fake {
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_voxpipe-e2e-cli"))
            .arg("fake")
            .args(args)
            .current_dir(root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("starting voxpipe fake");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Reads the first line for the URL, then drains stdout until the process ends.
        std::thread::Builder::new()
            .name("fake-stdout".into())
            .spawn(move || {
                let mut lines = BufReader::new(stdout).lines();
                let _ = tx.send(lines.next());
                for _ in lines {}
            })
            .unwrap();
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(Ok(line))) => line,
            other => {
                let _ = child.kill();
                let status = child.wait();
                let log = std::fs::read_to_string(log.path()).unwrap_or_default();
                panic!("`voxpipe fake {}` printed no URL ({other:?}, {status:?}):\n{log}", args.join(" "));
            }
        };
        let url = line
            .split_once("listening on ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_string();
        Fake { child, url, log }
    }

    /// `http://127.0.0.1:PORT/v1`, whatever the scheme and path it printed.
    fn http_base(&self) -> String {
        let rest = self.url.split_once("://").map_or(self.url.as_str(), |(_, r)| r);
        let host = rest.split('/').next().unwrap();
        format!("http://{host}/v1")
    }

    /// Runs `script` with `args`; fails with its output and the fake's log unless it passes.
    fn run(&self, script: &str, args: &[&str], title: &str) {
        let output = Command::new(python())
            .arg(conformance_dir().join(script))
            .args(args)
            .env_remove("PYTHONPATH")
            .env_remove("PYTHONHOME")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {script}: {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let log = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        let report =
            format!("--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- the fake's log ---\n{log}");
        assert!(output.status.success(), "{script} failed ({}):\n{report}", output.status);
        assert!(stdout.contains(&format!("{title}: OK")), "{script} did not finish:\n{report}");
        assert!(
            stdout.contains(" validated against the SDK's types"),
            "{script} validated nothing:\n{report}"
        );
        println!("{stdout}");
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn conformance_file(name: &str) -> String {
    conformance_dir().join(name).display().to_string()
}

#[test]
fn the_openai_sdk_accepts_every_realtime_event_of_a_call_with_a_tool_and_a_barge_in_in_both_dialects() {
    let config = conformance_file("realtime-fake.toml");
    let fake = Fake::start(&["realtime", "--port", "0", "--config", &config]);
    assert!(fake.url.starts_with("ws://127.0.0.1:") && fake.url.ends_with("/v1/realtime"), "{}", fake.url);
    fake.run("openai_realtime.py", &[&fake.http_base(), "--api-key", "sk-conformance"], "openai realtime");
}

/// `voxpipe fake KIND` (`llm` or `anthropic`) on the scripted replies, unpaced.
fn scripted_llm_fake(kind: &str) -> Fake {
    let replies = conformance_file("llm-replies.toml");
    Fake::start(&[
        kind,
        "--port",
        "0",
        "--replies",
        &replies,
        "--time-to-first-token-ms",
        "0",
        "--token-interval-ms",
        "0",
    ])
}

#[test]
fn the_openai_sdk_accepts_every_chat_chunk_of_a_tool_call_and_an_answer() {
    let fake = scripted_llm_fake("llm");
    fake.run("openai_chat.py", &[&fake.http_base(), "--api-key", "sk-conformance"], "openai chat");
}

#[test]
fn the_anthropic_sdk_accepts_every_messages_event_with_each_way_it_authenticates() {
    let fake = scripted_llm_fake("anthropic");
    fake.run("anthropic_messages.py", &[&fake.http_base()], "anthropic messages");
}
