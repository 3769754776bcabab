//! Drives a TTS stage by hand: a call context, the stage's inbox and outbox, and the event log.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use voxpipe_core::event::Event;
use voxpipe_core::{
    CallContext, EventKind, Frame, Inbox, NoTools, Outbox, OutputAudio, Stage, StageError, TextDelta,
    Transcript, channel,
};

/// A running stage and its surroundings.
pub struct Harness {
    pub ctx: CallContext,
    pub input: Outbox,
    pub output: Inbox,
    pub events: mpsc::Receiver<Event>,
    pub task: JoinHandle<Result<(), StageError>>,
}

impl Harness {
    pub fn start(stage: Box<dyn Stage>) -> Self {
        let (ctx, event_rx) = CallContext::new(Arc::new(NoTools));
        let (input, stage_in) = channel();
        let (stage_out, output) = channel();
        let task = tokio::spawn(stage.run(ctx.clone(), stage_in, stage_out));
        Self { ctx, input, output, events: event_rx, task }
    }

    /// Sends a text delta (ignored if the stage has already stopped, e.g. on a fatal error).
    pub async fn delta(&self, item: &str, text: &str) {
        let _ = self.input.send(Frame::TextDelta(TextDelta { item: item.into(), text: text.into() })).await;
    }

    pub async fn final_transcript(&self, item: &str, text: &str) {
        let t = Transcript { item: Some(item.into()), text: text.into(), is_final: true };
        let _ = self.input.send(Frame::AssistantTranscript(t)).await;
    }

    /// Streams `text` as deltas of `piece` characters, `gap` apart, then the final transcript.
    pub async fn say(&self, item: &str, text: &str, piece: usize, gap: Duration) {
        let chars: Vec<char> = text.chars().collect();
        for p in chars.chunks(piece) {
            self.delta(item, &p.iter().collect::<String>()).await;
            tokio::time::sleep(gap).await;
        }
        self.final_transcript(item, text).await;
    }

    /// Every frame until end of stream (which must come within `limit`).
    pub async fn collect_until_eos(&mut self, limit: Duration) -> Vec<Frame> {
        let mut frames = Vec::new();
        loop {
            let f = tokio::time::timeout(limit, self.output.recv()).await.expect("end of stream in time");
            match f {
                Some(Frame::EndOfStream) => return frames,
                Some(f) => frames.push(f),
                None => panic!("stage closed its output without end of stream"),
            }
        }
    }

    /// The next frame if one comes within 20 ms.
    pub async fn try_next(&mut self) -> Option<Frame> {
        tokio::time::timeout(Duration::from_millis(20), self.output.recv()).await.ok().flatten()
    }

    /// Every event logged so far.
    pub fn drain_events(&mut self) -> Vec<EventKind> {
        let mut out = Vec::new();
        while let Ok(ev) = self.events.try_recv() {
            out.push(ev.kind);
        }
        out
    }
}

pub fn audio(frames: &[Frame]) -> Vec<&OutputAudio> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::OutputAudio(a) => Some(a),
            _ => None,
        })
        .collect()
}

pub fn samples(frames: &[Frame]) -> Vec<i16> {
    audio(frames).iter().flat_map(|a| a.chunk.samples.iter().copied()).collect()
}

pub fn spoken_text(frames: &[Frame]) -> String {
    audio(frames).iter().filter_map(|a| a.text.as_deref()).collect()
}

pub fn words(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

/// What the chunker cuts `text` into.
pub fn chunks_of(text: &str, min: usize, max: usize) -> Vec<String> {
    let mut c = voxpipe_tts::SentenceChunker::new(min, max);
    c.push(text);
    let mut out = Vec::new();
    while let Some(x) = c.pop() {
        out.push(x);
    }
    out.extend(c.finish());
    out
}
