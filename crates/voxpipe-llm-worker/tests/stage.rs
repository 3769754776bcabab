//! The `llm.local` stage end to end: the client in this process, the real SmolLM2-135M GGUF
//! (pulled into the default model cache on first run) in `voxpipe-llm-worker`.

mod support;

use std::time::Duration;
use support::{Running, context_with_events, greedy, read_turn, said, stage, start, start_with, worker};
use voxpipe_core::{EventKind, Frame, InterruptReason, ResponseStatus};
use voxpipe_llm_local::{Error, LocalLlm, LocalLlmConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_turn_streams_deltas_whose_concatenation_is_the_final_transcript() {
    let mut call = start(stage(greedy(48)).await);

    call.input.send(said("What is the capital of France?")).await.unwrap();
    let first = read_turn(&mut call.output).await;
    assert_eq!(&first.kinds[..2], ["user_transcript", "response_started"], "{:?}", first.kinds);
    assert!(!first.deltas.is_empty(), "no text streamed");
    let joined: String = first.deltas.concat();
    assert!(!joined.trim().is_empty());
    assert_eq!(first.transcript.as_deref(), Some(joined.as_str()));
    let done = first.done.unwrap();
    assert_eq!(done.response_id, "reply_1");
    assert!(matches!(done.status, ResponseStatus::Completed | ResponseStatus::Incomplete), "{done:?}");
    let u1 = done.usage.unwrap();
    assert!(u1.input_tokens > 10 && u1.output_tokens > 0 && u1.output_tokens <= 48, "{u1:?}");
    assert!(u1.output_tokens as usize >= first.deltas.len(), "{u1:?} for {} deltas", first.deltas.len());
    eprintln!("turn 1 ({:?}): {joined:?}", done.status);

    // The second turn sees the first: its prompt holds both messages and the reply, and the
    // worker reuses the KV cache of the first turn.
    call.input.send(said("And what is the capital of Italy?")).await.unwrap();
    let second = read_turn(&mut call.output).await;
    let u2 = second.done.as_ref().unwrap().usage.clone().unwrap();
    eprintln!("turn 2: {:?}", second.deltas.concat());
    assert_eq!(second.done.unwrap().response_id, "reply_2");
    assert!(u2.input_tokens > u1.input_tokens + u1.output_tokens - 1, "{u1:?} then {u2:?}");
    assert!(u2.cached_tokens >= u1.input_tokens - 1, "the first prompt was not reused: {u2:?}");

    call.input.send(Frame::EndOfStream).await.unwrap();
    assert!(matches!(call.output.recv().await, Some(Frame::EndOfStream)));
    call.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_stops_generation_and_the_call_goes_on() {
    let config = LocalLlmConfig { temperature: 0.0, max_tokens: 400, ..Default::default() };
    let mut call = start(stage(config).await);

    call.input.send(said("Count from 1 to 300, separated by commas.")).await.unwrap();
    let mut before = 0;
    while before < 3 {
        match call.output.recv().await.expect("stage running") {
            Frame::TextDelta(_) => before += 1,
            Frame::ResponseDone(d) => panic!("the reply ended before the interrupt: {d:?}"),
            _ => {}
        }
    }
    call.ctx.interrupt(InterruptReason::BargeIn, None).await;
    // Like every downstream component, drop the queued output of the interrupted reply.
    let flushed = call.output.flush_interruptible();
    let rest = read_turn(&mut call.output).await;
    assert!(rest.deltas.len() <= 1, "{} deltas after the interrupt", rest.deltas.len());
    assert_eq!(rest.transcript, None, "no final transcript for a cancelled reply");
    let done = rest.done.unwrap();
    assert_eq!(done.status, ResponseStatus::Cancelled);
    assert_eq!(done.reason.as_deref(), Some("interrupted"));
    let generated = done.usage.unwrap().output_tokens;
    assert!(generated < 400, "generation ran to max_tokens despite the interrupt");
    eprintln!("interrupted after {} deltas sent, {generated} tokens", before + flushed + rest.deltas.len());

    // The call goes on, with the partial reply in history.
    call.input.send(said("Thanks.")).await.unwrap();
    let next = read_turn(&mut call.output).await;
    assert_eq!(next.done.unwrap().response_id, "reply_2");
    call.ctx.cancel.cancel();
    call.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_other_than_final_transcripts_are_forwarded_unchanged() {
    let mut call = start(stage(greedy(8)).await);
    let partial =
        Frame::UserTranscript(voxpipe_core::Transcript { item: None, text: "Hel".into(), is_final: false });
    call.input.send(partial).await.unwrap();
    call.input.send(said("   ")).await.unwrap();
    call.input.send(Frame::SpeechStopped { at: Duration::from_millis(700) }).await.unwrap();
    call.input.send(Frame::EndOfStream).await.unwrap();
    let mut kinds = Vec::new();
    while let Some(f) = call.output.recv().await {
        kinds.push(f.kind());
    }
    assert_eq!(kinds, ["user_transcript", "user_transcript", "speech_stopped", "end_of_stream"]);
    call.task.await.unwrap().unwrap();
}

/// Waits for the first text of a reply, then kills the worker with SIGKILL.
async fn kill_mid_reply(call: &mut Running, pid: u32) {
    loop {
        match call.output.recv().await.expect("stage running") {
            Frame::TextDelta(_) => break,
            Frame::ResponseDone(d) => panic!("the reply ended before the kill: {d:?}"),
            _ => {}
        }
    }
    let killed = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
    assert!(killed.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_reply_is_replaced_and_the_call_goes_on() {
    let config = LocalLlmConfig { temperature: 0.0, max_tokens: 400, ..Default::default() };
    let stage = stage(config).await;
    let pid = stage.worker_pid().expect("the worker runs");
    let (ctx, mut events) = context_with_events();
    let mut call = start_with(stage, ctx);
    call.input.send(said("Count from 1 to 300, separated by commas.")).await.unwrap();
    kill_mid_reply(&mut call, pid).await;
    let cut = read_turn(&mut call.output).await.done.unwrap();
    assert_eq!(cut.status, ResponseStatus::Failed, "the cut reply fails: {cut:?}");
    assert_eq!(cut.reason.as_deref(), Some("worker_died"));
    let (code, message) = loop {
        let event = events.recv().await.expect("a provider_error event");
        if let EventKind::ProviderError { code, message, .. } = event.kind {
            break (code, message);
        }
    };
    assert_eq!(code.as_deref(), Some("worker_died"));
    assert!(message.contains("signal 9") && message.contains("restarting"), "{message}");

    // A new worker answers the next turn, with the conversation so far.
    call.input.send(said("What is the capital of France?")).await.unwrap();
    let next = read_turn(&mut call.output).await;
    assert_eq!(next.done.as_ref().unwrap().status, ResponseStatus::Completed, "{next:?}");
    assert!(!next.transcript.unwrap_or_default().is_empty());
    drop(call.input);
    let ended = tokio::time::timeout(Duration::from_secs(10), call.task).await.expect("the stage ends");
    ended.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_with_no_restarts_left_ends_the_call_with_a_clear_error() {
    let config = LocalLlmConfig { temperature: 0.0, max_tokens: 400, restarts: 0, ..Default::default() };
    let stage = stage(config).await;
    let pid = stage.worker_pid().expect("the worker runs");
    let mut call = start(stage);
    call.input.send(said("Count from 1 to 300, separated by commas.")).await.unwrap();
    kill_mid_reply(&mut call, pid).await;
    let rest = read_turn(&mut call.output).await;
    let done = rest.done.unwrap();
    assert_eq!(done.status, ResponseStatus::Failed, "{done:?}");
    assert_eq!(done.reason.as_deref(), Some("worker_died"));
    let ended =
        tokio::time::timeout(Duration::from_secs(10), call.task).await.expect("the stage ends, no hang");
    let err = ended.unwrap().unwrap_err();
    assert_eq!(err.stage, "llm.local");
    let message = err.to_string();
    assert!(message.contains("stopped unexpectedly") && message.contains("signal 9"), "{message}");
    assert!(message.contains("voxpipe-llm-worker"), "{message}");
    assert!(call.output.recv().await.is_none(), "nothing after the failure");
}

#[tokio::test]
async fn a_missing_worker_program_names_the_build_command() {
    let dir = std::env::temp_dir().join(format!("voxpipe-no-worker-{}", std::process::id()));
    let missing = dir.join("voxpipe-llm-worker");
    let config = LocalLlmConfig { worker: Some(missing.clone()), ..Default::default() };
    let err = LocalLlm::load(config).await.unwrap_err();
    assert!(matches!(err, Error::WorkerNotFound { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("cargo build --release -p voxpipe-llm-worker"), "{message}");
    assert!(message.contains(&missing.display().to_string()), "{message}");

    // Found beside the running executable: this test binary runs from `target/<profile>/deps/`,
    // where cargo also built the worker's directory.
    let found = voxpipe_llm_local::worker::locate(None).unwrap();
    assert_eq!(found.canonicalize().unwrap(), worker().canonicalize().unwrap());
}
