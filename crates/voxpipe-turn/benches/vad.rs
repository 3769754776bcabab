//! VAD cost per frame (placeholder).
fn main() {}
