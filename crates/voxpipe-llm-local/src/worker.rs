//! The client side of `voxpipe-llm-worker`: finding the program, starting it, and speaking
//! the [protocol](crate::protocol) over its stdin and stdout.

use crate::Error;
use crate::protocol::{ChatMessage, Reply, Request, Settings};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// The worker program's file name.
pub const WORKER_PROGRAM: &str = "voxpipe-llm-worker";

/// The environment variable that overrides where the worker program is.
pub const WORKER_ENV: &str = "VOXPIPE_LLM_WORKER";

/// Lines of the worker's stderr kept for error messages.
const LOG_TAIL: usize = 12;

/// The longest line read from the worker (a reply on stdout, a log line on stderr), bytes:
/// 4 MiB. A reply is one JSON object per line (a text delta, a tool call's body, counts), a few
/// KB at most; the cap keeps a broken worker, or another program configured as the worker, from
/// making this process buffer a line without end.
pub const MAX_LINE_BYTES: usize = 4 << 20;

/// What the worker said when its model was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// Parameters of the model.
    pub n_params: u64,
    /// Training context length of the model.
    pub n_ctx_train: u32,
    /// How long the load took in the worker.
    pub load_ms: u64,
}

/// A running `voxpipe-llm-worker` with a model loaded. The process is killed when this is
/// dropped.
#[derive(Debug)]
pub struct WorkerProcess {
    path: PathBuf,
    child: Child,
    stdin: ChildStdin,
    replies: mpsc::Receiver<Result<Reply, String>>,
    log: Arc<Mutex<VecDeque<String>>>,
    stderr_task: Option<JoinHandle<()>>,
    next_id: u64,
    ready: Ready,
}

/// Where the worker program is: `configured`, else `$VOXPIPE_LLM_WORKER`, else beside the
/// running executable (or one directory up when the executable is a test binary in `deps/`).
///
/// # Errors
/// [`Error::WorkerNotFound`] listing the paths tried and the command that builds it.
pub fn locate(configured: Option<&Path>) -> Result<PathBuf, Error> {
    let env = std::env::var_os(WORKER_ENV).filter(|v| !v.is_empty()).map(PathBuf::from);
    let explicit = configured.map(Path::to_path_buf).or(env);
    let mut searched = Vec::new();
    if let Some(path) = explicit {
        if path.is_file() {
            return Ok(path);
        }
        searched.push(path);
        return Err(Error::WorkerNotFound { searched });
    }
    if let Ok(exe) = std::env::current_exe() {
        let mut dir = exe.parent().map(Path::to_path_buf);
        while let Some(d) = dir {
            let candidate = d.join(WORKER_PROGRAM);
            if candidate.is_file() {
                return Ok(candidate);
            }
            searched.push(candidate);
            // Tests and benches run from `target/<profile>/deps/`; the program is one level up.
            dir = (d.file_name().is_some_and(|n| n == "deps"))
                .then(|| d.parent().map(Path::to_path_buf))
                .flatten();
        }
    }
    Err(Error::WorkerNotFound { searched })
}

impl WorkerProcess {
    /// Starts the worker at `program` and loads `model` into it. Returns when the model is
    /// ready (or failed to load).
    ///
    /// # Errors
    /// [`Error::WorkerSpawn`], the worker's load error ([`Error::Worker`], e.g. code
    /// `model_load` for a file that is not a valid GGUF), [`Error::WorkerDied`].
    pub async fn start(program: &Path, model: &Path, settings: Settings) -> Result<Self, Error> {
        let mut command = Command::new(program);
        // llama.cpp's OpenMP workers spin between parallel regions by default, taking a core
        // from whisper and the voice on a small machine; passive waiting costs microseconds.
        if std::env::var_os("OMP_WAIT_POLICY").is_none() {
            command.env("OMP_WAIT_POLICY", "PASSIVE");
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| Error::WorkerSpawn { path: program.to_path_buf(), source })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            unreachable!("all three pipes were requested");
        };
        let log = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_TAIL)));
        let stderr_task = tokio::spawn(forward_log(stderr, log.clone()));
        let (tx, replies) = mpsc::channel(64);
        tokio::spawn(read_replies(stdout, tx));
        let ready = Ready { n_params: 0, n_ctx_train: 0, load_ms: 0 };
        let mut worker = Self {
            path: program.to_path_buf(),
            child,
            stdin,
            replies,
            log,
            stderr_task: Some(stderr_task),
            next_id: 0,
            ready,
        };
        let load = Request::Load { model: model.display().to_string(), settings };
        worker.send(&load).await?;
        match worker.recv().await? {
            Reply::Ready { n_params, n_ctx_train, load_ms } => {
                worker.ready = Ready { n_params, n_ctx_train, load_ms };
                info!(worker = %program.display(), model = %model.display(), n_params, load_ms, "llm worker ready");
                Ok(worker)
            }
            Reply::Error { code, message, fatal, .. } => Err(Error::Worker { code, message, fatal }),
            other => Err(Error::Protocol { message: format!("expected `ready`, got {other:?}") }),
        }
    }

    /// What the worker reported when its model was loaded.
    pub fn ready(&self) -> Ready {
        self.ready
    }

    /// The worker's process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Asks for a reply to `messages`; returns the request id its replies carry.
    ///
    /// # Errors
    /// [`Error::WorkerDied`] when the worker is gone.
    pub async fn generate(&mut self, messages: Vec<ChatMessage>, tools: bool) -> Result<u64, Error> {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&Request::Generate { id, messages, tools }).await?;
        Ok(id)
    }

    /// Asks the worker to evaluate `messages` into its KV cache (a warm-up); returns the request
    /// id of its `prefilled` reply.
    ///
    /// # Errors
    /// [`Error::WorkerDied`] when the worker is gone.
    pub async fn prefill(&mut self, messages: Vec<ChatMessage>) -> Result<u64, Error> {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&Request::Prefill { id, messages }).await?;
        Ok(id)
    }

    /// Asks the worker to stop request `id`; it answers with `done` (`cancelled`).
    ///
    /// # Errors
    /// [`Error::WorkerDied`] when the worker is gone.
    pub async fn cancel(&mut self, id: u64) -> Result<(), Error> {
        self.send(&Request::Cancel { id }).await
    }

    /// The next reply. Cancel-safe.
    ///
    /// # Errors
    /// [`Error::WorkerDied`] (with its exit status and last log lines) when the worker's output
    /// ended, [`Error::Protocol`] for a line that is not a reply.
    pub async fn recv(&mut self) -> Result<Reply, Error> {
        match self.replies.recv().await {
            Some(Ok(reply)) => Ok(reply),
            Some(Err(message)) => Err(Error::Protocol { message }),
            None => Err(self.died().await),
        }
    }

    async fn send(&mut self, request: &Request) -> Result<(), Error> {
        let line = request.to_line();
        let written = async {
            self.stdin.write_all(line.as_bytes()).await?;
            self.stdin.flush().await
        };
        match written.await {
            Ok(()) => Ok(()),
            Err(e) => {
                debug!(error = %e, "writing to the llm worker failed");
                Err(self.died().await)
            }
        }
    }

    /// The error for a worker whose pipes closed: waits briefly for its exit status and the
    /// end of its log.
    async fn died(&mut self) -> Error {
        let status = match tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await {
            Ok(Ok(status)) => describe(status),
            Ok(Err(e)) => format!("exit status unknown: {e}"),
            Err(_) => {
                let _ = self.child.start_kill();
                "its output closed; killed".into()
            }
        };
        if let Some(task) = self.stderr_task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
        let log =
            self.log.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect::<Vec<_>>().join("\n");
        warn!(worker = %self.path.display(), %status, "llm worker stopped");
        Error::WorkerDied { path: self.path.clone(), status, log }
    }
}

#[cfg(unix)]
fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(9)) => "killed by signal 9 (SIGKILL; out of memory?)".into(),
        (None, Some(6)) => "aborted (signal 6)".into(),
        (None, Some(11)) => "crashed (signal 11, segmentation fault)".into(),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => status.to_string(),
    }
}

#[cfg(not(unix))]
fn describe(status: std::process::ExitStatus) -> String {
    status.to_string()
}

/// One line read by [`read_line_capped`].
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A whole line, without its `\n` (or `\r\n`); invalid UTF-8 replaced.
    Text(String),
    /// The line went past the limit; with `discard`, the rest of it was skipped.
    TooLong,
    /// End of the stream.
    Eof,
}

/// Reads one line of at most `max` bytes. Past `max` it returns [`Line::TooLong`] at once, or,
/// with `discard`, after skipping the rest of the line (so the next call reads the next one).
/// Never holds more than `max` bytes of a line.
async fn read_line_capped<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
    discard: bool,
) -> std::io::Result<Line> {
    buf.clear();
    let mut too_long = false;
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return Ok(match (too_long, buf.is_empty()) {
                (true, _) => Line::TooLong,
                (false, true) => Line::Eof,
                (false, false) => Line::Text(String::from_utf8_lossy(buf).into_owned()),
            });
        }
        let (piece, end) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        let consumed = end.unwrap_or(piece.len());
        if !too_long && buf.len() + piece.len() > max {
            too_long = true;
            buf.clear();
            if !discard {
                r.consume(consumed);
                return Ok(Line::TooLong);
            }
        }
        if !too_long {
            buf.extend_from_slice(piece);
        }
        r.consume(consumed);
        if end.is_some() {
            if too_long {
                return Ok(Line::TooLong);
            }
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(Line::Text(String::from_utf8_lossy(buf).into_owned()));
        }
    }
}

async fn read_replies(stdout: tokio::process::ChildStdout, tx: mpsc::Sender<Result<Reply, String>>) {
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        let line = match read_line_capped(&mut reader, &mut buf, MAX_LINE_BYTES, false).await {
            Ok(Line::Text(line)) => line,
            Ok(Line::TooLong) => {
                // The worker is unusable: report it and read no further.
                let _ = tx
                    .send(Err(format!("a reply line longer than the limit of {MAX_LINE_BYTES} bytes")))
                    .await;
                return;
            }
            Ok(Line::Eof) => return,
            Err(e) => {
                debug!(error = %e, "reading the llm worker's output failed");
                return;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let reply = serde_json::from_str::<Reply>(&line).map_err(|e| {
            let shown: String = line.chars().take(200).collect();
            format!("unreadable reply ({e}): {shown}")
        });
        if tx.send(reply).await.is_err() {
            return;
        }
    }
}

/// Forwards the worker's stderr to this process's log (warnings as warnings, the rest at
/// debug) and keeps the last lines for error messages.
async fn forward_log(stderr: tokio::process::ChildStderr, log: Arc<Mutex<VecDeque<String>>>) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        let line = match read_line_capped(&mut reader, &mut buf, MAX_LINE_BYTES, true).await {
            Ok(Line::Text(line)) => line,
            Ok(Line::TooLong) => format!("(a log line longer than {MAX_LINE_BYTES} bytes was dropped)"),
            Ok(Line::Eof) | Err(_) => return,
        };
        if line.contains("WARN") || line.contains("ERROR") {
            warn!(target: "voxpipe_llm_worker", "{line}");
        } else {
            debug!(target: "voxpipe_llm_worker", "{line}");
        }
        let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() == LOG_TAIL {
            log.pop_front();
        }
        log.push_back(line);
    }
}

#[cfg(test)]
mod line_tests {
    use super::*;

    async fn lines(input: &[u8], max: usize, discard: bool) -> Vec<Line> {
        let mut r = input;
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            let line = read_line_capped(&mut r, &mut buf, max, discard).await.unwrap();
            let end = line == Line::Eof || (line == Line::TooLong && !discard);
            out.push(line);
            if end {
                return out;
            }
        }
    }

    fn text(s: &str) -> Line {
        Line::Text(s.into())
    }

    #[tokio::test]
    async fn lines_are_split_on_lf_and_crlf_and_a_last_unterminated_line_counts() {
        let got = lines(b"one\r\ntwo\n\nthree", 16, false).await;
        assert_eq!(got, [text("one"), text("two"), text(""), text("three"), Line::Eof]);
    }

    #[tokio::test]
    async fn a_line_past_the_limit_stops_the_reader_or_is_skipped() {
        assert_eq!(lines(b"ok\n0123456789\nnext\n", 8, false).await, [text("ok"), Line::TooLong]);
        assert_eq!(
            lines(b"ok\n0123456789\nnext\n12345678", 8, true).await,
            [text("ok"), Line::TooLong, text("next"), text("12345678"), Line::Eof]
        );
    }

    /// A worker whose first reply is a valid `ready` line padded past the limit: without the
    /// cap it would be read whole (and accepted); with it, `start` fails with a protocol error.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_worker_reply_line_over_the_limit_is_a_protocol_error() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("voxpipe-llm-local-line-cap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("fake-worker.sh");
        let pad = MAX_LINE_BYTES + 1;
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nread -r request\nprintf '{{\"type\":\"ready\",\"n_params\":1,\"n_ctx_train\":1,\"load_ms\":1,\"pad\":\"'\nhead -c {pad} /dev/zero | tr '\\000' a\nprintf '\"}}\\n'\nsleep 10\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let settings = Settings {
            threads: 1,
            batch_threads: None,
            context_tokens: 512,
            max_tokens: 16,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            stop: Vec::new(),
        };
        let err = WorkerProcess::start(&script, Path::new("model.gguf"), settings).await.unwrap_err();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(matches!(err, Error::Protocol { .. }), "{err}");
        assert!(
            err.to_string().contains(&format!("longer than the limit of {MAX_LINE_BYTES} bytes")),
            "{err}"
        );
    }
}
