//! `voxpipe-llm-worker` spoken to directly, line by line: load, generate, cancel, errors, exit.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use voxpipe_llm_local::protocol::{ChatMessage, Finish, Reply, Request, Settings};

/// A worker process with its replies read on a thread (so a silent worker fails the test
/// instead of hanging it).
struct Raw {
    child: Child,
    stdin: Option<ChildStdin>,
    replies: mpsc::Receiver<String>,
}

impl Raw {
    fn spawn() -> Self {
        let mut child = Command::new(support::worker())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start voxpipe-llm-worker");
        let stdout = child.stdout.take().unwrap();
        let (tx, replies) = mpsc::channel();
        let reader = std::thread::Builder::new().name("replies".into());
        reader
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
            .unwrap();
        Self { stdin: child.stdin.take(), child, replies }
    }

    fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    fn send(&mut self, request: &Request) {
        self.send_line(request.to_line().trim_end());
    }

    fn recv(&self) -> Reply {
        let line = self.replies.recv_timeout(Duration::from_secs(60)).expect("a reply within 60 s");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a reply ({e}): {line}"))
    }

    /// Closes stdin and waits (at most 20 s) for the exit status.
    fn close_and_wait(mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        let pid = self.child.id();
        let mut child = self.child;
        let (tx, rx) = mpsc::channel();
        let waiter = std::thread::Builder::new().name("wait".into());
        waiter.spawn(move || tx.send(child.wait())).unwrap();
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(status) => status.unwrap(),
            Err(_) => {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
                panic!("the worker did not exit after its stdin closed");
            }
        }
    }
}

fn settings(max_tokens: u32) -> Settings {
    Settings {
        threads: 1,
        batch_threads: None,
        context_tokens: 2048,
        max_tokens,
        temperature: 0.0,
        top_p: 0.95,
        seed: 1234,
        stop: vec![],
    }
}

fn user(text: &str) -> Vec<ChatMessage> {
    vec![
        ChatMessage::new("system", "You are a helpful assistant. Answer briefly."),
        ChatMessage::new("user", text),
    ]
}

async fn loaded(max_tokens: u32) -> Raw {
    let model = support::smollm2().await.display().to_string();
    let mut w = Raw::spawn();
    w.send(&Request::Load { model, settings: settings(max_tokens) });
    match w.recv() {
        Reply::Ready { n_params, n_ctx_train, .. } => assert!(n_params > 100_000_000 && n_ctx_train >= 2048),
        other => panic!("expected ready, got {other:?}"),
    }
    w
}

/// Reads the replies to request `id` up to `done`: (deltas, done).
fn read_reply(w: &Raw, id: u64) -> (Vec<(String, u64)>, Reply) {
    let mut deltas = Vec::new();
    loop {
        match w.recv() {
            Reply::Delta { id: i, text, tokens } if i == id => deltas.push((text, tokens)),
            done @ Reply::Done { id: i, .. } if i == id => return (deltas, done),
            other => panic!("unexpected reply: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_prefill_warms_the_cache_for_the_first_reply() {
    let model = support::smollm2().await.display().to_string();
    let mut w = Raw::spawn();
    w.send(&Request::Load { model, settings: Settings { batch_threads: Some(2), ..settings(8) } });
    assert!(matches!(w.recv(), Reply::Ready { .. }));
    let mut messages = user("unused");
    messages.truncate(1);
    w.send(&Request::Prefill { id: 1, messages: messages.clone() });
    let Reply::Prefilled { id: 1, usage, cancelled: false, .. } = w.recv() else {
        panic!("expected prefilled")
    };
    assert!(usage.prompt_tokens > 5 && usage.generated_tokens == 0, "{usage:?}");
    messages.push(ChatMessage::new("user", "Hello!"));
    w.send(&Request::Generate { id: 2, messages, tools: false });
    let (_, done) = read_reply(&w, 2);
    let Reply::Done { usage: u2, .. } = done else { unreachable!() };
    // Everything the prefill evaluated but its last token (always evaluated again) is reused.
    assert!(u2.reused_tokens + 1 >= usage.prompt_tokens, "prefill {usage:?}, then {u2:?}");
    assert!(w.close_and_wait().success());
}

#[tokio::test]
async fn generate_streams_deltas_then_done_and_keeps_the_context() {
    let mut w = loaded(32).await;
    let mut messages = user("What is the capital of France?");
    w.send(&Request::Generate { id: 1, messages: messages.clone(), tools: false });
    let (deltas, done) = read_reply(&w, 1);
    assert!(!deltas.is_empty());
    assert!(deltas.windows(2).all(|d| d[0].1 < d[1].1), "token counts increase: {deltas:?}");
    let Reply::Done { finish, usage, ttft_ms, cancelled_at, .. } = done else { unreachable!() };
    assert!(matches!(finish, Finish::EndOfTurn | Finish::Length), "{finish:?}");
    assert!(usage.prompt_tokens > 10 && usage.generated_tokens as usize >= deltas.len(), "{usage:?}");
    assert_eq!(usage.reused_tokens, 0);
    assert!(ttft_ms.is_some() && cancelled_at.is_none());
    let reply: String = deltas.iter().map(|(t, _)| t.as_str()).collect();
    eprintln!("reply: {reply:?}");

    // The next request carries the conversation so far: the worker reuses its KV cache.
    messages.push(ChatMessage::new("assistant", reply));
    messages.push(ChatMessage::new("user", "And of Italy?"));
    w.send(&Request::Generate { id: 2, messages, tools: false });
    let (_, done) = read_reply(&w, 2);
    let Reply::Done { usage: u2, .. } = done else { unreachable!() };
    assert!(u2.reused_tokens >= usage.prompt_tokens - 1, "{usage:?} then {u2:?}");
    assert!(w.close_and_wait().success());
}

#[tokio::test]
async fn cancel_stops_generation_within_one_token_step() {
    let mut w = loaded(400).await;
    w.send(&Request::Generate {
        id: 7,
        messages: user("Count from 1 to 300, separated by commas."),
        tools: false,
    });
    let mut seen = 0;
    while seen < 3 {
        match w.recv() {
            Reply::Delta { id: 7, .. } => seen += 1,
            other => panic!("unexpected before the cancel: {other:?}"),
        }
    }
    let sent = Instant::now();
    w.send(&Request::Cancel { id: 7 });
    let (late, done) = read_reply(&w, 7);
    let waited = sent.elapsed();
    let Reply::Done { finish, usage, cancelled_at, .. } = done else { unreachable!() };
    assert_eq!(finish, Finish::Cancelled);
    let at = cancelled_at.expect("cancelled_at is reported");
    // The flag is checked before every decode: at most the token being sampled when the
    // cancel arrived completes.
    assert!(
        usage.generated_tokens <= at + 1,
        "{} tokens generated, cancel read at {at}",
        usage.generated_tokens
    );
    assert!(usage.generated_tokens < 400);
    eprintln!(
        "cancel read after {at} tokens; {} generated; {} deltas in flight; done {waited:?} after the cancel",
        usage.generated_tokens,
        late.len()
    );

    // A cancel for a finished request is ignored, and the worker takes the next one.
    w.send(&Request::Cancel { id: 7 });
    w.send(&Request::Generate { id: 8, messages: user("Say hi."), tools: false });
    let (deltas, done) = read_reply(&w, 8);
    assert!(
        !deltas.is_empty() && matches!(done, Reply::Done { finish: Finish::EndOfTurn | Finish::Length, .. })
    );
    assert!(w.close_and_wait().success());
}

#[tokio::test]
async fn closing_stdin_mid_generation_ends_the_worker_promptly() {
    let mut w = loaded(400).await;
    w.send(&Request::Generate {
        id: 1,
        messages: user("Count from 1 to 300, separated by commas."),
        tools: false,
    });
    assert!(matches!(w.recv(), Reply::Delta { id: 1, .. }));
    let replies = std::mem::replace(&mut w.replies, mpsc::channel().1);
    let status = w.close_and_wait();
    assert!(status.success(), "{status}");
    // Promptly: the generation was abandoned, not run to its 400-token cap before the exit.
    let after: Vec<String> = replies.try_iter().collect();
    assert!(after.len() < 399, "{} deltas after stdin closed", after.len());
    assert!(!after.iter().any(|l| l.contains("\"finish\":\"length\"")), "the generation ran to its cap");
}

#[tokio::test]
async fn unreadable_requests_get_protocol_errors_and_the_worker_goes_on() {
    let mut w = loaded(8).await;
    w.send_line("this is not json");
    let Reply::Error { id, code, message, fatal } = w.recv() else { panic!("expected an error") };
    assert_eq!((id, code.as_str(), fatal), (None, "protocol", false));
    assert!(message.contains("this is not json"), "{message}");
    w.send(&Request::Generate { id: 1, messages: user("Hi"), tools: false });
    assert!(matches!(read_reply(&w, 1).1, Reply::Done { .. }));
    assert!(w.close_and_wait().success());
}

#[test]
fn a_missing_model_is_a_fatal_error_naming_the_pull_command_and_the_worker_exits_1() {
    let mut w = Raw::spawn();
    let model = std::env::temp_dir().join("voxpipe-no-such-model.gguf").display().to_string();
    w.send(&Request::Load { model, settings: settings(8) });
    let Reply::Error { id, code, message, fatal } = w.recv() else { panic!("expected an error") };
    assert_eq!((id, code.as_str(), fatal), (None, "model_not_found", true));
    assert!(message.contains("voxpipe models pull smollm2-135m"), "{message}");
    assert_eq!(w.close_and_wait().code(), Some(1));
}

#[test]
fn a_first_message_other_than_load_is_a_protocol_error() {
    let mut w = Raw::spawn();
    w.send(&Request::Cancel { id: 1 });
    let Reply::Error { code, fatal, .. } = w.recv() else { panic!("expected an error") };
    assert_eq!((code.as_str(), fatal), ("protocol", true));
    assert_eq!(w.close_and_wait().code(), Some(2));
}
