//! [`TtsStage`]: the pipeline stage shared by every TTS provider.
//!
//! Text deltas go through a [`SentenceChunker`]; each chunk goes to the reply's
//! [`Synthesizer`] session as soon as it is cut, so the first audio plays while the LLM is
//! still writing. Replies are spoken one after the other, in order; the audio of a reply comes
//! out in order, in pieces of at most 100 ms tagged with the words they carry.

use crate::Error;
use crate::chunker::{ChunkingConfig, SentenceChunker};
use crate::segment::{Piece, Segment};
use crate::synth::{EVENT_CAPACITY, SynthEvent, Synthesizer, TEXT_CAPACITY, TextChunk};
use async_trait::async_trait;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, trace, warn};
use voxpipe_core::audio::duration_of;
use voxpipe_core::{
    AudioChunk, CallContext, Control, EventKind, Frame, Inbox, ItemId, Outbox, OutputAudio, SampleRate,
    Stage, StageError, TextDelta,
};

/// Frames queued for downstream before the stage stops reading more input and audio.
const OUTQ_LIMIT: usize = 16;
/// Interrupted items remembered so late text deltas of theirs are ignored.
const CANCELLED_MEMORY: usize = 16;
/// Initial speaking-rate estimate for word attribution without alignment, characters per
/// second (about 150 words a minute); refined from each segment's measured length.
const INITIAL_CHARS_PER_SEC: f64 = 15.0;

/// Settings of the stage common to every provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StageOptions {
    /// Output sample rate, Hz.
    pub sample_rate: SampleRate,
    /// How replies are cut into chunks.
    pub chunking: ChunkingConfig,
}

/// A streaming TTS stage over a [`Synthesizer`].
///
/// # Interruption
/// On [`Control::Interrupt`] the reply sessions are aborted (the request stream or socket is
/// dropped at once), the chunkers cleared, queued output and interruptible input flushed, and
/// audio of the interrupted replies still arriving dropped.
///
/// # Cancellation
/// Returns `Ok` promptly when `ctx.cancel` fires.
///
/// # Errors
/// Fails on fatal provider errors ([`Error::is_fatal`]): bad credentials, a rejected request.
#[derive(Debug)]
pub struct TtsStage<P: Synthesizer> {
    synth: Arc<P>,
    opts: StageOptions,
}

impl<P: Synthesizer> TtsStage<P> {
    /// A stage speaking through `synth`.
    pub fn new(synth: P, opts: StageOptions) -> Self {
        Self { synth: Arc::new(synth), opts }
    }
}

#[async_trait]
impl<P: Synthesizer> Stage for TtsStage<P> {
    fn name(&self) -> &str {
        self.synth.name()
    }

    async fn run(self: Box<Self>, ctx: CallContext, input: Inbox, out: Outbox) -> Result<(), StageError> {
        let name = self.synth.name();
        let mut runner = Runner {
            control: ctx.control.subscribe(),
            ctx,
            synth: self.synth,
            opts: self.opts,
            input,
            out,
            replies: VecDeque::new(),
            outq: VecDeque::new(),
            cancelled: VecDeque::new(),
            turn: 0,
            numbered_by_responses: false,
            reported_turn: 0,
            chars_per_sec: INITIAL_CHARS_PER_SEC,
            eos: false,
            control_open: true,
            text_tx: None,
            events: None,
            active: None,
        };
        let result = runner.run().await;
        if let Some(a) = runner.active.take() {
            a.task.abort();
        }
        result.map_err(|e| StageError::new(name, e))
    }
}

/// One reply, from its first text delta until its audio is out.
#[derive(Debug)]
struct Reply {
    item: ItemId,
    turn: u32,
    /// Playout epoch when the reply began; its audio is dropped once the epoch moves on.
    epoch: u64,
    chunker: SentenceChunker,
    /// Chunks cut but not yet handed to the session.
    ready: VecDeque<TextChunk>,
    any_chunk: bool,
    text_done: bool,
    /// Output samples emitted, for the chunks' media timestamps.
    emitted_samples: u64,
}

/// The session speaking the front reply.
#[derive(Debug)]
struct Active {
    task: JoinHandle<Result<(), Error>>,
    segment: Option<Segment>,
    proportional: bool,
    requested_at: Option<Instant>,
}

struct Runner<P: Synthesizer> {
    ctx: CallContext,
    control: broadcast::Receiver<Control>,
    synth: Arc<P>,
    opts: StageOptions,
    input: Inbox,
    out: Outbox,
    replies: VecDeque<Reply>,
    outq: VecDeque<Frame>,
    cancelled: VecDeque<ItemId>,
    /// The turn replies are numbered with (from 1): one per `ResponseStarted` when upstream
    /// announces its responses, else one per reply, so a tool filler and the answer after it
    /// share their turn's number with the LLM's and ASR's metrics.
    turn: u32,
    /// Upstream sends `ResponseStarted` before each response's text.
    numbered_by_responses: bool,
    /// The last turn whose `tts_first_audio_ms` was logged: one per turn, its first audio.
    reported_turn: u32,
    chars_per_sec: f64,
    eos: bool,
    control_open: bool,
    text_tx: Option<mpsc::Sender<TextChunk>>,
    events: Option<mpsc::Receiver<SynthEvent>>,
    active: Option<Active>,
}

/// What one turn of the stage loop does, decided while the loop's futures borrow the runner.
enum Action {
    None,
    Stop,
    Control(Result<Control, broadcast::error::RecvError>),
    TextDone,
    Event(Option<SynthEvent>),
    Frame(Option<Frame>),
}

async fn reserve_text(tx: Option<&mpsc::Sender<TextChunk>>) -> Option<mpsc::Permit<'_, TextChunk>> {
    match tx {
        Some(tx) => tx.reserve().await.ok(),
        None => std::future::pending().await,
    }
}

async fn recv_event(rx: Option<&mut mpsc::Receiver<SynthEvent>>) -> Option<SynthEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl<P: Synthesizer> Runner<P> {
    async fn run(&mut self) -> Result<(), Error> {
        loop {
            self.start_session();
            if self.eos && self.replies.is_empty() && self.active.is_none() && self.outq.is_empty() {
                tokio::select! {
                    biased;
                    () = self.ctx.cancel.cancelled() => {}
                    _ = self.out.send(Frame::EndOfStream) => {}
                }
                return Ok(());
            }
            let has_ready = self.replies.front().is_some_and(|r| !r.ready.is_empty());
            let room = self.outq.len() < OUTQ_LIMIT;
            let action = tokio::select! {
                biased;
                () = self.ctx.cancel.cancelled() => Action::Stop,
                msg = self.control.recv(), if self.control_open => Action::Control(msg),
                permit = self.out.reserve(), if !self.outq.is_empty() => match permit {
                    Ok(p) => {
                        p.send(self.outq.pop_front().expect("outq is not empty"));
                        Action::None
                    }
                    Err(_) => Action::Stop,
                },
                permit = reserve_text(self.text_tx.as_ref()), if has_ready => match permit {
                    Some(permit) => {
                        let front = self.replies.front_mut().expect("has_ready was checked");
                        let chunk = front.ready.pop_front().expect("has_ready was checked");
                        let last = chunk.is_last;
                        trace!(chars = chunk.text.len(), last, "chunk to synthesizer");
                        permit.send(chunk);
                        if last { Action::TextDone } else { Action::None }
                    }
                    // The session stopped reading (it failed); the rest goes to a new session.
                    None => Action::TextDone,
                },
                ev = recv_event(self.events.as_mut()), if room => Action::Event(ev),
                frame = self.input.recv(), if room && !self.eos => Action::Frame(frame),
            };
            match action {
                Action::None => {}
                Action::Stop => return Ok(()),
                Action::Control(Ok(Control::Interrupt { .. })) => self.interrupt(),
                Action::Control(Ok(_)) => {}
                Action::Control(Err(broadcast::error::RecvError::Lagged(n))) => {
                    warn!(missed = n, "control bus lagged");
                }
                Action::Control(Err(broadcast::error::RecvError::Closed)) => self.control_open = false,
                Action::TextDone => self.text_tx = None,
                Action::Event(ev) => self.on_event(ev).await?,
                Action::Frame(frame) => self.on_frame(frame),
            }
        }
    }

    /// Starts a session for the front reply once it has text to speak.
    fn start_session(&mut self) {
        if self.active.is_some() {
            return;
        }
        let Some(front) = self.replies.front() else { return };
        if front.ready.is_empty() {
            return;
        }
        let (text_tx, text_rx) = mpsc::channel(TEXT_CAPACITY);
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_CAPACITY);
        let synth = self.synth.clone();
        let task = tokio::spawn(async move { synth.speak_reply(text_rx, ev_tx).await });
        debug!(item = %front.item, "reply session started");
        self.text_tx = Some(text_tx);
        self.events = Some(ev_rx);
        self.active = Some(Active { task, segment: None, proportional: false, requested_at: None });
    }

    fn on_frame(&mut self, frame: Option<Frame>) {
        let Some(frame) = frame else {
            self.end_of_stream();
            return;
        };
        match frame {
            Frame::TextDelta(d) => self.on_text(d),
            Frame::AssistantTranscript(ref t) if t.is_final => {
                let item = t.item.clone();
                self.end_reply(item.as_ref());
                self.outq.push_back(frame);
            }
            Frame::ResponseDone(_) => {
                self.end_reply(None);
                self.outq.push_back(frame);
            }
            Frame::ResponseStarted(_) => {
                self.numbered_by_responses = true;
                self.turn += 1;
                self.outq.push_back(frame);
            }
            Frame::EndOfStream => self.end_of_stream(),
            other => self.outq.push_back(other),
        }
    }

    fn on_text(&mut self, d: TextDelta) {
        if self.cancelled.contains(&d.item) {
            trace!(item = %d.item, "text of an interrupted reply dropped");
            return;
        }
        let same = self.replies.back().is_some_and(|r| r.item == d.item);
        if !same {
            if self.replies.back().is_some_and(|r| !r.text_done) {
                // A new reply began without the previous one being closed.
                self.end_reply(None);
            }
            if !self.numbered_by_responses {
                self.turn += 1;
            }
            self.replies.push_back(Reply {
                item: d.item.clone(),
                turn: self.turn,
                epoch: self.ctx.playout.epoch(),
                chunker: self.opts.chunking.chunker(),
                ready: VecDeque::new(),
                any_chunk: false,
                text_done: false,
                emitted_samples: 0,
            });
        }
        let Some(reply) = self.replies.back_mut().filter(|r| !r.text_done) else {
            debug!(item = %d.item, "text after the end of its reply ignored");
            return;
        };
        reply.chunker.push(&d.text);
        while let Some(text) = reply.chunker.pop() {
            reply.ready.push_back(TextChunk { text, is_last: false });
            reply.any_chunk = true;
        }
    }

    /// The text of a reply is complete: flush its chunker and mark its last chunk.
    fn end_reply(&mut self, item: Option<&ItemId>) {
        let reply = match item {
            Some(item) => self.replies.iter_mut().find(|r| &r.item == item && !r.text_done),
            None => self.replies.back_mut().filter(|r| !r.text_done),
        };
        let Some(reply) = reply else { return };
        reply.text_done = true;
        if let Some(text) = reply.chunker.finish() {
            reply.ready.push_back(TextChunk { text, is_last: true });
            reply.any_chunk = true;
        } else if let Some(last) = reply.ready.back_mut() {
            last.is_last = true;
        } else if reply.any_chunk {
            reply.ready.push_back(TextChunk { text: String::new(), is_last: true });
        }
        // A reply with no text at all has nothing to say (a session only starts on a chunk).
        self.replies.retain(|r| r.any_chunk || !r.text_done);
    }

    fn end_of_stream(&mut self) {
        self.eos = true;
        let open: Vec<ItemId> =
            self.replies.iter().filter(|r| !r.text_done).map(|r| r.item.clone()).collect();
        for item in open {
            self.end_reply(Some(&item));
        }
    }

    fn interrupt(&mut self) {
        if let Some(a) = self.active.take() {
            a.task.abort();
        }
        self.text_tx = None;
        self.events = None;
        for r in self.replies.drain(..) {
            if self.cancelled.len() == CANCELLED_MEMORY {
                self.cancelled.pop_front();
            }
            self.cancelled.push_back(r.item);
        }
        self.outq.retain(|f| !f.is_interruptible());
        let flushed = self.input.flush_interruptible();
        debug!(flushed, "interrupted: synthesis aborted");
    }

    async fn on_event(&mut self, ev: Option<SynthEvent>) -> Result<(), Error> {
        let Some(ev) = ev else { return self.session_ended().await };
        let Some(active) = self.active.as_mut() else { return Ok(()) };
        let Some(reply) = self.replies.front_mut() else { return Ok(()) };
        if self.ctx.playout.epoch() != reply.epoch {
            // Interrupted; the control message is on its way.
            return Ok(());
        }
        let in_rate = self.synth.sample_rate();
        let out_rate = self.opts.sample_rate;
        let mut pieces = Vec::new();
        match ev {
            SynthEvent::SegmentStart { requested_at, text } => {
                active.requested_at.get_or_insert(requested_at);
                active.proportional = text.is_some();
                active.segment = Some(Segment::new(in_rate, out_rate, text.as_deref(), self.chars_per_sec)?);
            }
            SynthEvent::Audio { samples, alignment } => {
                if samples.is_empty() && alignment.is_none() {
                    return Ok(());
                }
                if reply.turn != self.reported_turn {
                    self.reported_turn = reply.turn;
                    let value_ms = active.requested_at.map_or(0, |t| t.elapsed().as_millis() as u64);
                    let turn = reply.turn;
                    let name = "tts_first_audio_ms".to_string();
                    self.ctx.events.emit(EventKind::Metric { name, turn, value_ms }).await;
                }
                let segment = match active.segment.as_mut() {
                    Some(s) => s,
                    None => active.segment.insert(Segment::new(in_rate, out_rate, None, self.chars_per_sec)?),
                };
                segment.push(&samples, alignment, &mut pieces)?;
            }
            SynthEvent::SegmentEnd => {
                if let Some(mut segment) = active.segment.take() {
                    let (samples, chars) = segment.finish(&mut pieces)?;
                    if active.proportional && samples >= u64::from(out_rate) / 2 && chars > 0 {
                        let measured = chars as f64 / (samples as f64 / out_rate as f64);
                        self.chars_per_sec = 0.7 * self.chars_per_sec + 0.3 * measured;
                    }
                }
            }
            SynthEvent::Failed(e) => {
                if let Some(mut segment) = active.segment.take() {
                    segment.finish(&mut pieces)?;
                }
                warn!(error = %e, "synthesis failed; going on with the next chunk");
                let ev = EventKind::ProviderError {
                    stage: self.synth.name().into(),
                    code: None,
                    message: e.to_string(),
                };
                self.ctx.events.emit(ev).await;
            }
        }
        self.queue_pieces(pieces);
        Ok(())
    }

    fn queue_pieces(&mut self, pieces: Vec<Piece>) {
        let Some(reply) = self.replies.front_mut() else { return };
        for p in pieces {
            let pts = duration_of(reply.emitted_samples as usize, self.opts.sample_rate);
            reply.emitted_samples += p.samples.len() as u64;
            self.outq.push_back(Frame::OutputAudio(OutputAudio {
                item: reply.item.clone(),
                epoch: reply.epoch,
                chunk: AudioChunk::new(self.opts.sample_rate, pts, p.samples),
                text: p.text,
            }));
        }
    }

    /// The session's event stream closed: the provider task has returned.
    async fn session_ended(&mut self) -> Result<(), Error> {
        self.events = None;
        self.text_tx = None;
        let Some(active) = self.active.take() else { return Ok(()) };
        match active.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) if e.is_fatal() => return Err(e),
            Ok(Err(e)) => {
                warn!(error = %e, "reply session ended with an error");
                let ev = EventKind::ProviderError {
                    stage: self.synth.name().into(),
                    code: None,
                    message: e.to_string(),
                };
                self.ctx.events.emit(ev).await;
            }
            Err(join) if join.is_cancelled() => return Ok(()),
            Err(join) => {
                return Err(Error::Protocol {
                    provider: self.synth.name(),
                    detail: format!("synthesis task panicked: {join}"),
                });
            }
        }
        if self.replies.front().is_some_and(|r| r.text_done && r.ready.is_empty()) {
            let done = self.replies.pop_front().expect("front exists");
            debug!(item = %done.item, "reply spoken");
        }
        Ok(())
    }
}
