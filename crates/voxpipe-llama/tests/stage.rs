//! The `llm.local` stage end to end with the real SmolLM2-135M GGUF (pulled into the default
//! model cache on first run).

mod support;

use support::{greedy, read_turn, said, smollm2, start};
use voxpipe_core::{Frame, InterruptReason, ResponseStatus};
use voxpipe_llama::{LocalLlm, LocalLlmConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_turn_streams_deltas_whose_concatenation_is_the_final_transcript() {
    let stage = LocalLlm::with_model(greedy(48), smollm2().await).unwrap();
    let mut call = start(stage);

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
    // KV cache of the first turn is reused.
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
async fn an_interrupt_stops_generation_within_one_token_step() {
    let config = LocalLlmConfig { temperature: 0.0, max_tokens: 400, ..Default::default() };
    let stage = LocalLlm::with_model(config, smollm2().await).unwrap();
    let mut call = start(stage);

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
    let generated = done.usage.unwrap().output_tokens as usize;
    let sent = before + flushed + rest.deltas.len();
    // Each delta is at least one token; at most the pieces in flight (2 queued, 1 being sent)
    // and the token being decoded when the flag rose came on top.
    assert!(generated <= sent + 4, "{generated} tokens generated for {sent} deltas sent");
    eprintln!("interrupted after {sent} deltas, {generated} tokens");

    // The call goes on, with the partial reply in history.
    call.input.send(said("Thanks.")).await.unwrap();
    let next = read_turn(&mut call.output).await;
    assert_eq!(next.done.unwrap().response_id, "reply_2");
    call.ctx.cancel.cancel();
    call.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_other_than_final_transcripts_are_forwarded_unchanged() {
    let stage = LocalLlm::with_model(greedy(8), smollm2().await).unwrap();
    let mut call = start(stage);
    let partial =
        Frame::UserTranscript(voxpipe_core::Transcript { item: None, text: "Hel".into(), is_final: false });
    call.input.send(partial).await.unwrap();
    call.input.send(said("   ")).await.unwrap();
    call.input.send(Frame::SpeechStopped { at: std::time::Duration::from_millis(700) }).await.unwrap();
    call.input.send(Frame::EndOfStream).await.unwrap();
    let mut kinds = Vec::new();
    while let Some(f) = call.output.recv().await {
        kinds.push(f.kind());
    }
    assert_eq!(kinds, ["user_transcript", "user_transcript", "speech_stopped", "end_of_stream"]);
    call.task.await.unwrap().unwrap();
}
