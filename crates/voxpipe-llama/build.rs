//! Lets this crate's test and bench binaries find `libllama.so` and `libggml*.so` without
//! `LD_LIBRARY_PATH`: llama-cpp-sys-2 hard-links the shared libraries into `target/<profile>/`
//! and `target/<profile>/deps/`, next to those binaries, and an rpath of `$ORIGIN` makes the
//! loader look there. A binary crate
//! that uses `voxpipe-llama` needs the same line for its binaries (`rustc-link-arg-bins`).

fn main() {
    for kind in ["tests", "benches"] {
        println!("cargo:rustc-link-arg-{kind}=-Wl,-rpath,$ORIGIN");
    }
}
