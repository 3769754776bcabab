//! The `voxpipe` binary.

fn main() -> std::process::ExitCode {
    voxpipe_cli::main()
}
