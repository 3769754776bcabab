//! The `command` handler: a program run directly (no shell), the arguments as JSON on stdin,
//! the result from stdout. The program runs in its own process group: when it exits, or the
//! call is dropped (timeout, hang-up), the whole group is killed, so nothing it started in the
//! background outlives the call or holds its output pipe open.

use crate::Error;
use crate::config::CommandHandlerConfig;
use crate::error::{EXCERPT_BYTES, excerpt};
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use voxpipe_core::{MissingSecret, Secret};

/// Variables a program gets from voxpipe's own environment, when set: enough to find
/// programs, write temporary files and format text, and nothing that holds a credential.
const INHERITED: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"];

/// A configured program.
#[derive(Debug)]
pub(crate) struct CommandHandler {
    program: PathBuf,
    args: Vec<String>,
    /// The program's whole environment (secret values redacted in `Debug`).
    env: Vec<(String, Secret)>,
    /// Stop keeping stdout past this many bytes (the rest is drained and discarded).
    max_stdout_bytes: usize,
}

impl CommandHandler {
    /// The handler of tool `name`; secret values are read now through `env`, so a missing one
    /// is a configuration error before the call starts.
    pub(crate) fn build(
        name: &str,
        c: &CommandHandlerConfig,
        max_stdout_bytes: usize,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        let mut vars: Vec<(String, Secret)> = INHERITED
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), Secret::new(v))))
            .collect();
        vars.extend(c.env.iter().map(|(k, v)| (k.clone(), Secret::new(v.clone()))));
        for (k, var) in &c.secret_env {
            match env(var) {
                Some(v) if !v.is_empty() => vars.push((k.clone(), Secret::new(v))),
                _ => {
                    let key = format!("tools.{name}.handler.secret_env.{k}");
                    return Err(MissingSecret { var: var.clone(), key }.into());
                }
            }
        }
        Ok(Self { program: c.program.clone(), args: c.args.clone(), env: vars, max_stdout_bytes })
    }

    /// Runs the program once.
    ///
    /// # Cancellation
    /// Dropping the future kills the program and everything it started (its process group).
    pub(crate) async fn call(&self, args: &serde_json::Value) -> Result<String, Error> {
        let program = self.program.display().to_string();
        let mut child = tokio::process::Command::new(&self.program)
            // Its own group (pgid = its pid), so its children can be killed with it.
            .process_group(0)
            .args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v.expose())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::CommandStart { program: program.clone(), message: e.to_string() })?;
        let group = child.id().map(ProcessGroup);
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let input = args.to_string();
        // Write, read and wait together: a program that writes before reading all of its
        // input must not deadlock against us.
        let write = async move {
            // A program that exits without reading its input is not an error here; its exit
            // status says how it went.
            let _ = stdin.write_all(input.as_bytes()).await;
            drop(stdin);
        };
        let (_, out, err, status) = tokio::join!(
            write,
            read_capped(stdout, self.max_stdout_bytes),
            read_capped(stderr, EXCERPT_BYTES),
            async {
                let status = child.wait().await;
                // Whatever it left running in the background goes with it (and releases the
                // pipes, which the reads above wait on).
                drop(group);
                status
            }
        );
        let status =
            status.map_err(|e| Error::CommandStart { program: program.clone(), message: e.to_string() })?;
        if !status.success() {
            return Err(Error::CommandFailed {
                program,
                status: status.to_string(),
                stderr: excerpt(&String::from_utf8_lossy(&err)),
            });
        }
        Ok(String::from_utf8_lossy(&out).trim().to_string())
    }
}

/// Kills a process group when dropped.
#[derive(Debug)]
struct ProcessGroup(u32);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let Some(pid) = i32::try_from(self.0).ok().and_then(rustix::process::Pid::from_raw) else { return };
        // ESRCH (the group is already gone) is the common case and not an error.
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// Reads up to `cap + 1` bytes, then drains the rest so the writer never blocks on a full pipe.
async fn read_capped(mut r: impl AsyncRead + Unpin, cap: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let _ = (&mut r).take(cap as u64 + 1).read_to_end(&mut kept).await;
    let _ = tokio::io::copy(&mut r, &mut tokio::io::sink()).await;
    kept
}
