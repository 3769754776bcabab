//! Makes binaries that use this crate runnable without `LD_LIBRARY_PATH`.
//!
//! llama.cpp is linked dynamically (`dynamic-link`), so a binary needs `libllama.so.0`,
//! `libggml.so.0`, `libggml-base.so.0` and `libggml-cpu.so.0` at run time. llama-cpp-sys-2
//! builds them in its own `OUT_DIR/lib` (found through its `links` metadata,
//! `DEP_LLAMA_GGML_CMAKE_DIR`); this script copies them, under their sonames, into
//! `target/<profile>/`, `target/<profile>/deps/` (and `examples/`), next to the binaries,
//! tests and benches.
//! An rpath of `$ORIGIN` then makes the loader look there: set here for this crate's binary
//! (`voxpipe-llm-worker`), tests and benches (`--disable-new-dtags` makes it an RPATH, which
//! also applies to libllama's own dependencies; a RUNPATH would not).

use std::path::{Path, PathBuf};

fn main() {
    for kind in ["bins", "tests", "benches"] {
        println!("cargo:rustc-link-arg-{kind}=-Wl,--disable-new-dtags,-rpath,$ORIGIN");
    }
    println!("cargo:rerun-if-env-changed=DEP_LLAMA_GGML_CMAKE_DIR");
    let Some(lib_dir) = std::env::var_os("DEP_LLAMA_GGML_CMAKE_DIR").map(PathBuf::from) else {
        println!(
            "cargo:warning=llama-cpp-sys-2 did not report its library directory; shared libraries not copied"
        );
        return;
    };
    let lib_dir = lib_dir.parent().expect("<lib>/cmake").to_path_buf();
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    // OUT_DIR = target/<profile>/build/<pkg>-<hash>/out
    let Some(profile_dir) = out_dir.ancestors().nth(3) else { return };
    let examples = Some(profile_dir.join("examples")).filter(|d| d.is_dir());
    for dest in [profile_dir.to_path_buf(), profile_dir.join("deps")].into_iter().chain(examples) {
        if let Err(e) = copy_libs(&lib_dir, &dest) {
            println!("cargo:warning=cannot copy llama.cpp shared libraries to {}: {e}", dest.display());
        }
    }
}

/// Puts every `lib*.so.<major>` of `from` (the real file behind the symlink) into `to`. This
/// also repairs the `lib*.so` symlinks llama-cpp-sys-2 hard-links there, which dangle without
/// the `.so.0` file and make a second build of llama-cpp-sys-2 in the same profile directory
/// (`cargo clippy` after `cargo build`) fail with `File exists`.
fn copy_libs(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let Some((stem, version)) = name.split_once(".so.") else { continue };
        // The soname file: `libllama.so.0`, not `libllama.so.0.26.0`.
        if !stem.starts_with("lib") || version.contains('.') {
            continue;
        }
        println!("cargo:rerun-if-changed={}", path.display());
        let dest = to.join(&name);
        let src_meta = std::fs::metadata(&path)?;
        let fresh = std::fs::metadata(&dest)
            .is_ok_and(|d| d.len() == src_meta.len() && d.modified().ok() >= src_meta.modified().ok());
        if !fresh {
            let _ = std::fs::remove_file(&dest);
            let real = std::fs::canonicalize(&path)?;
            // A hard link costs no space; copy across file systems.
            if std::fs::hard_link(&real, &dest).is_err() {
                std::fs::copy(&real, &dest)?;
            }
        }
    }
    Ok(())
}
