//! The client side of `voxpipe-llm-worker`: finding the program, starting it, and speaking
//! the [protocol](crate::protocol) over its stdin and stdout.

use crate::Error;
use crate::protocol::{ChatMessage, Reply, Request, Settings};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
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

async fn read_replies(stdout: tokio::process::ChildStdout, tx: mpsc::Sender<Result<Reply, String>>) {
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => return,
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
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
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
