//! Test harness: runs one LLM stage with a hand-built call context, and a tool runtime that
//! records when each call started and ended.

#![allow(dead_code)]

use async_trait::async_trait;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use voxpipe_core::{
    CallContext, Clock, ControlBus, Event, EventKind, EventSender, Frame, Inbox, Outbox, PlayoutTracker,
    ResponseDone, Stage, StageError, ToolAction, ToolCall, ToolResult, ToolRuntime, ToolSpec, Transcript,
    channel,
};

/// Longest wait for any frame in a test.
const FRAME_TIMEOUT: Duration = Duration::from_secs(15);

/// One call of [`RecordingTools`].
#[derive(Clone, Debug)]
pub struct ToolRun {
    pub call: ToolCall,
    pub started: Instant,
    pub ended: Instant,
}

/// Tools `get_weather` and `get_time`, each taking `delay`; `end_call` ends the call;
/// `transfer` hands off. `get_weather` may have a filler.
#[derive(Debug)]
pub struct RecordingTools {
    specs: Vec<ToolSpec>,
    delay: Duration,
    filler: Option<(String, Duration)>,
    pub runs: Mutex<Vec<ToolRun>>,
}

impl RecordingTools {
    pub fn new(delay: Duration) -> Arc<Self> {
        Self::build(delay, None)
    }

    /// Like [`RecordingTools::new`], with `filler` spoken when `get_weather` runs longer than
    /// `after`.
    pub fn with_filler(delay: Duration, filler: &str, after: Duration) -> Arc<Self> {
        Self::build(delay, Some((filler.to_string(), after)))
    }

    fn build(delay: Duration, filler: Option<(String, Duration)>) -> Arc<Self> {
        let schema = |prop: &str| serde_json::json!({"type": "object", "properties": {prop: {"type": "string"}}, "required": [prop]});
        let specs = vec![
            ToolSpec {
                name: "get_weather".into(),
                description: "Weather in a city".into(),
                parameters: schema("city"),
            },
            ToolSpec {
                name: "get_time".into(),
                description: "Local time in a city".into(),
                parameters: schema("city"),
            },
            ToolSpec {
                name: "end_call".into(),
                description: "Hang up".into(),
                parameters: serde_json::json!({"type": "object", "properties": {}}),
            },
            ToolSpec {
                name: "transfer".into(),
                description: "Hand the caller to a human".into(),
                parameters: schema("reason"),
            },
        ];
        Arc::new(Self { specs, delay, filler, runs: Mutex::new(Vec::new()) })
    }

    pub fn runs(&self) -> Vec<ToolRun> {
        self.runs.lock().unwrap().clone()
    }

    /// The output a call produces: deterministic, so tests can look for it in requests.
    pub fn output_for(call: &ToolCall) -> String {
        let args: serde_json::Value = serde_json::from_str(&call.arguments).unwrap_or_default();
        serde_json::json!({"tool": call.name, "city": args["city"], "answer": "sunny, 21 C"}).to_string()
    }
}

#[async_trait]
impl ToolRuntime for RecordingTools {
    fn specs(&self) -> &[ToolSpec] {
        &self.specs
    }
    fn filler(&self, name: &str) -> Option<(String, Duration)> {
        self.filler.clone().filter(|_| name == "get_weather")
    }
    async fn call(&self, call: &ToolCall) -> ToolResult {
        let started = Instant::now();
        tokio::time::sleep(self.delay).await;
        let ended = Instant::now();
        self.runs.lock().unwrap().push(ToolRun { call: call.clone(), started, ended });
        let args: serde_json::Value = serde_json::from_str(&call.arguments).unwrap_or_default();
        let action = match call.name.as_str() {
            "end_call" => Some(ToolAction::EndCall),
            "transfer" => Some(ToolAction::Handoff {
                reason: args["reason"].as_str().unwrap_or_default().to_string(),
                target: Some("support".into()),
            }),
            _ => None,
        };
        ToolResult {
            call_id: call.call_id.clone(),
            name: call.name.clone(),
            output: Self::output_for(call),
            is_error: false,
            duration: ended - started,
            action,
        }
    }
}

/// A stage running in its own task.
pub struct Harness {
    pub ctx: CallContext,
    pub input: Outbox,
    pub output: Inbox,
    pub events: mpsc::Receiver<Event>,
    pub task: JoinHandle<Result<(), StageError>>,
}

impl Harness {
    pub fn start(stage: Box<dyn Stage>, tools: Arc<dyn ToolRuntime>) -> Self {
        let (events, event_rx) = EventSender::channel(Clock::start_now());
        let ctx = CallContext {
            clock: Clock::start_now(),
            cancel: CancellationToken::new(),
            control: ControlBus::new(),
            playout: Arc::new(PlayoutTracker::new()),
            events,
            tools,
        };
        let (input, stage_in) = channel();
        let (stage_out, output) = channel();
        let task = tokio::spawn(stage.run(ctx.clone(), stage_in, stage_out));
        Self { ctx, input, output, events: event_rx, task }
    }

    /// Sends a final user transcript.
    pub async fn say(&self, text: &str) {
        let t = Transcript { item: None, text: text.into(), is_final: true };
        self.input.send(Frame::UserTranscript(t)).await.unwrap();
    }

    /// The next frame, with the time it was received.
    pub async fn next(&mut self) -> (Instant, Frame) {
        let f = tokio::time::timeout(FRAME_TIMEOUT, self.output.recv()).await.expect("a frame in time");
        (Instant::now(), f.expect("the stage is still running"))
    }

    /// Frames up to and including the next `ResponseDone`.
    pub async fn turn(&mut self) -> Turn {
        let mut frames = Vec::new();
        loop {
            let (at, f) = self.next().await;
            let done = matches!(f, Frame::ResponseDone(_));
            frames.push((at, f));
            if done {
                return Turn { frames };
            }
        }
    }

    /// Events logged so far.
    pub fn drain_events(&mut self) -> Vec<EventKind> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push(e.kind);
        }
        out
    }

    /// Ends the stage with end of stream and returns its result.
    pub async fn finish(self) -> Result<(), StageError> {
        let _ = self.input.send(Frame::EndOfStream).await;
        let r = tokio::time::timeout(FRAME_TIMEOUT, self.task).await.expect("the stage ends").unwrap();
        self.ctx.cancel.cancel();
        r
    }
}

/// The frames of one turn.
pub struct Turn {
    pub frames: Vec<(Instant, Frame)>,
}

impl Turn {
    pub fn deltas(&self) -> Vec<String> {
        self.frames
            .iter()
            .filter_map(|(_, f)| match f {
                Frame::TextDelta(d) => Some(d.text.clone()),
                _ => None,
            })
            .collect()
    }
    pub fn first_delta_at(&self) -> Option<Instant> {
        self.frames.iter().find(|(_, f)| matches!(f, Frame::TextDelta(_))).map(|(at, _)| *at)
    }
    pub fn transcript(&self) -> Option<String> {
        self.frames.iter().find_map(|(_, f)| match f {
            Frame::AssistantTranscript(t) if t.is_final => Some(t.text.clone()),
            _ => None,
        })
    }
    pub fn done(&self) -> &ResponseDone {
        match &self.frames.last().unwrap().1 {
            Frame::ResponseDone(d) => d,
            other => panic!("turn ends with {other:?}"),
        }
    }
    pub fn tool_calls(&self) -> Vec<ToolCall> {
        self.frames
            .iter()
            .filter_map(|(_, f)| match f {
                Frame::ToolCall(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }
    pub fn tool_results(&self) -> Vec<ToolResult> {
        self.frames
            .iter()
            .filter_map(|(_, f)| match f {
                Frame::ToolResult(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }
    pub fn kinds(&self) -> Vec<&'static str> {
        self.frames.iter().map(|(_, f)| f.kind()).collect()
    }
}

/// The codes of the `provider_error` events among `events`, in order.
pub fn provider_errors(events: &[voxpipe_core::EventKind]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            voxpipe_core::EventKind::ProviderError { code, .. } => code.clone(),
            _ => None,
        })
        .collect()
}
