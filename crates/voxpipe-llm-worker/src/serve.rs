//! The worker side of the [protocol](voxpipe_llm_local::protocol): reads requests from a
//! reader (stdin), runs them on an engine [`Session`], writes replies to a writer (stdout).
//!
//! A reader thread parses incoming lines so that `cancel` raises the running request's stop
//! flag while the generation loop runs on the calling thread. The end of the input raises
//! every flag (nobody is listening any more) and ends [`serve`] after the current request.

use crate::engine::{Outcome, Session, StopFlag};
use crate::{Error, LocalModel};
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tracing::{debug, info, warn};
use voxpipe_llm_local::protocol::{ChatMessage, Reply, Request, TokenUsage};

/// How [`serve`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The input ended: a normal shutdown.
    InputClosed,
    /// The output could not be written (the client went away).
    OutputClosed,
    /// The model could not be loaded or the context created; the error was reported.
    LoadFailed,
    /// The first message was not `load`, or the input was unreadable before it.
    ProtocolError,
}

/// Replies are written by two threads (generation, and the reader for protocol errors).
type Out = Arc<Mutex<Box<dyn Write + Send>>>;

fn write(out: &Out, reply: &Reply) -> bool {
    let line = reply.to_line();
    let mut w = out.lock().unwrap_or_else(|e| e.into_inner());
    w.write_all(line.as_bytes()).and_then(|()| w.flush()).is_ok()
}

fn error_reply(id: Option<u64>, e: &Error) -> Reply {
    Reply::Error { id, code: e.code().into(), message: e.to_string(), fatal: e.is_fatal() }
}

fn protocol_error(id: Option<u64>, message: String, fatal: bool) -> Reply {
    Reply::Error { id, code: "protocol".into(), message, fatal }
}

/// A request as the reader thread hands it over.
struct Job {
    id: u64,
    messages: Vec<ChatMessage>,
    /// `None` for a prefill, else whether to watch for tool calls.
    generate: Option<bool>,
    stop: Arc<StopFlag>,
}

/// Runs the protocol until the input ends.
pub fn serve(input: impl BufRead + Send + 'static, output: impl Write + Send + 'static) -> Exit {
    let out: Out = Arc::new(Mutex::new(Box::new(output)));
    let mut lines = input.lines();
    let (model_path, settings) = match lines.next() {
        None => return Exit::InputClosed,
        Some(Err(e)) => {
            write(&out, &protocol_error(None, format!("cannot read the input: {e}"), true));
            return Exit::ProtocolError;
        }
        Some(Ok(line)) => match serde_json::from_str::<Request>(&line) {
            Ok(Request::Load { model, settings }) => (model, settings),
            Ok(other) => {
                let message = format!("the first message must be `load`, got {other:?}");
                write(&out, &protocol_error(None, message, true));
                return Exit::ProtocolError;
            }
            Err(e) => {
                write(&out, &protocol_error(None, format!("unreadable request ({e}): {line}"), true));
                return Exit::ProtocolError;
            }
        },
    };
    let started = Instant::now();
    let model = match LocalModel::load(Path::new(&model_path)) {
        Ok(m) => m,
        Err(e) => {
            write(&out, &error_reply(None, &e));
            return Exit::LoadFailed;
        }
    };
    let mut session = match Session::new(&model, &settings) {
        Ok(s) => s,
        Err(e) => {
            write(&out, &error_reply(None, &e));
            return Exit::LoadFailed;
        }
    };
    let load_ms = started.elapsed().as_millis() as u64;
    info!(model = %model_path, load_ms, threads = settings.threads, "worker ready");
    let ready = Reply::Ready { n_params: model.n_params(), n_ctx_train: model.n_ctx_train(), load_ms };
    if !write(&out, &ready) {
        return Exit::OutputClosed;
    }

    let running: Arc<Mutex<HashMap<u64, Arc<StopFlag>>>> = Arc::default();
    let (jobs_tx, jobs) = mpsc::channel::<Job>();
    let reader = {
        let (out, running) = (out.clone(), running.clone());
        std::thread::Builder::new()
            .name("requests".into())
            .spawn(move || read_requests(lines, &out, &running, &jobs_tx))
            .expect("spawn the request reader thread")
    };
    let mut exit = Exit::InputClosed;
    while let Ok(job) = jobs.recv() {
        let id = job.id;
        let reply = match job.generate {
            Some(tools) => {
                let mut emit = |text: &str, tokens: u64| {
                    write(&out, &Reply::Delta { id, text: text.to_string(), tokens })
                };
                session.generate(&job.messages, tools, &job.stop, &mut emit).map(|o| done(id, o, &job.stop))
            }
            None => {
                let started = Instant::now();
                session.prefill_only(&job.messages, &job.stop).map(|r| prefilled(id, r, started))
            }
        };
        let reply = reply.unwrap_or_else(|e| {
            warn!(id, error = %e, "request failed");
            session.reset();
            error_reply(Some(id), &e)
        });
        running.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        if !write(&out, &reply) {
            exit = Exit::OutputClosed;
            break;
        }
    }
    drop(jobs);
    // The reader ends with the input; after an output failure it may still block on stdin,
    // which the process exit takes care of.
    if exit == Exit::InputClosed {
        let _ = reader.join();
    }
    debug!(?exit, "worker done");
    exit
}

fn done(id: u64, o: Outcome, stop: &StopFlag) -> Reply {
    let usage = TokenUsage {
        prompt_tokens: o.prompt_tokens as u64,
        reused_tokens: o.reused_tokens as u64,
        generated_tokens: o.generated_tokens as u64,
    };
    let ttft_ms = o.first_token.map(|d| d.as_millis() as u64);
    debug!(id, finish = ?o.finish, ?usage, ?ttft_ms, "request done");
    Reply::Done {
        id,
        finish: o.finish,
        tool_call: o.tool_call,
        usage,
        ttft_ms,
        cancelled_at: stop.cancelled_at(),
    }
}

fn prefilled(id: u64, evaluated: Option<(usize, usize)>, started: Instant) -> Reply {
    let (prompt, reused) = evaluated.unwrap_or_default();
    let usage =
        TokenUsage { prompt_tokens: prompt as u64, reused_tokens: reused as u64, generated_tokens: 0 };
    let ms = started.elapsed().as_millis() as u64;
    debug!(id, ?usage, ms, cancelled = evaluated.is_none(), "prefill done");
    Reply::Prefilled { id, usage, ms, cancelled: evaluated.is_none() }
}

/// Registers a request's stop flag and hands it to the engine thread; false once that is gone.
fn queue(
    running: &Mutex<HashMap<u64, Arc<StopFlag>>>,
    jobs: &mpsc::Sender<Job>,
    id: u64,
    messages: Vec<ChatMessage>,
    generate: Option<bool>,
) -> bool {
    let stop = Arc::new(StopFlag::new());
    running.lock().unwrap_or_else(|e| e.into_inner()).insert(id, stop.clone());
    jobs.send(Job { id, messages, generate, stop }).is_ok()
}

/// The reader thread: queues `generate` and `prefill`, raises flags on `cancel`, reports unreadable lines.
fn read_requests(
    lines: impl Iterator<Item = std::io::Result<String>>,
    out: &Out,
    running: &Mutex<HashMap<u64, Arc<StopFlag>>>,
    jobs: &mpsc::Sender<Job>,
) {
    for line in lines {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Request>(&line) {
            Ok(Request::Generate { id, messages, tools }) => {
                if !queue(running, jobs, id, messages, Some(tools)) {
                    break;
                }
            }
            Ok(Request::Prefill { id, messages }) => {
                if !queue(running, jobs, id, messages, None) {
                    break;
                }
            }
            Ok(Request::Cancel { id }) => {
                if let Some(flag) = running.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
                    flag.raise();
                    debug!(id, "cancel");
                }
            }
            Ok(Request::Load { .. }) => {
                write(out, &protocol_error(None, "the model is already loaded".into(), false));
            }
            Err(e) => {
                write(out, &protocol_error(None, format!("unreadable request ({e}): {line}"), false));
            }
        }
    }
    // The client is gone: stop whatever runs, so the worker exits promptly.
    for flag in running.lock().unwrap_or_else(|e| e.into_inner()).values() {
        flag.raise();
    }
}
