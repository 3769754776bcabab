//! With the `llama` feature the binary links llama.cpp's shared libraries (they cannot be
//! linked statically beside whisper.cpp: duplicate ggml symbols). voxpipe-llama's build script
//! places them next to the binary; an `$ORIGIN` rpath (old-style, so it also covers
//! libllama's own dependency on libggml) lets the binary find them without LD_LIBRARY_PATH.
fn main() {
    if std::env::var_os("CARGO_FEATURE_LLAMA").is_some() {
        println!("cargo:rustc-link-arg-bins=-Wl,--disable-new-dtags,-rpath,$ORIGIN");
    }
}
