//! The `voxpipe` command, built again inside the voxpipe-e2e package so that its integration
//! tests can run it as a user would (`tests/tests/conformance.rs` runs `voxpipe fake …`):
//! cargo gives a test the path of its own package's binaries only (`CARGO_BIN_EXE_…`), freshly
//! built. Same code as crates/voxpipe-cli/src/main.rs.

fn main() -> std::process::ExitCode {
    voxpipe_cli::main()
}
