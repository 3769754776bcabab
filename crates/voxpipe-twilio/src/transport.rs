//! The Media Streams transport: a [`Source`] of the caller's audio and a [`Sink`] that plays
//! the assistant's to the phone, over one bidirectional stream.
//!
//! The socket itself belongs to the server; it hands the transport its text messages as
//! [`SocketIn`] and takes outbound text from a channel, so the transport is the protocol alone.
//!
//! **Playout is what Twilio confirms.** The sink sends 20 ms μ-law frames, paced so Twilio's
//! buffer holds at most `lead_ms` (never a whole reply at once), and a `mark` after each
//! segment (at most `mark_interval_ms` of audio, and at the end of every chunk of words). The
//! [`PlayoutTracker`](voxpipe_core::PlayoutTracker) advances only when a mark comes back, so
//! barge-in truncation is what the caller heard on the phone. An interruption sends `clear`;
//! held playout (uncertain caller speech) sends `clear` too and queues the unconfirmed audio
//! again, so resuming continues where the caller stopped hearing.

use crate::media::{Inbound, MediaView, OutboundWriter, StartInfo};
use async_trait::async_trait;
use base64::Engine;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn};
use voxpipe_core::audio::{AudioChunk, CHUNK_MS, StreamResampler, g711};
use voxpipe_core::time::sleep_until;
use voxpipe_core::{
    CallContext, Control, EventKind, Frame, Inbox, ItemId, Outbox, OutputAudio, Samples, Sink, Source,
    StageError, Transcript,
};
use voxpipe_transport::playout::{TurnMetrics, at_rate, finished, started};
use voxpipe_transport::recording::CallRecorder;

/// Media Streams audio: μ-law, 8 kHz, mono.
pub const RATE: u32 = 8000;
/// Samples in one 20 ms frame.
const FRAME: usize = 160;
/// Mark echoes queued between the source (which reads the socket) and the sink: at one mark
/// per 20 ms this is 5 s of them, far more than Twilio ever holds.
const MARK_QUEUE: usize = 256;
/// The largest `media` payload accepted from the carrier (1 s of audio; Twilio sends 20 ms).
const MAX_PAYLOAD_BYTES: usize = 8000;

/// What the server's socket reader hands the transport.
#[derive(Debug)]
pub enum SocketIn {
    /// A text message.
    Text(String),
    /// A binary message (Twilio never sends one).
    Binary(usize),
    /// The socket closed or failed; the text says how.
    Closed(String),
}

/// Settings of one stream.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StreamOptions {
    /// Audio kept queued at Twilio ahead of what is playing, ms.
    pub lead_ms: u64,
    /// A mark after at most this much audio, ms (and at the end of every chunk). Truncation
    /// after a barge-in is exact to this (plus one mark in flight): 20 ms is a mark per frame.
    pub mark_interval_ms: u64,
    /// How long to wait for the `start` message after the socket opens, ms.
    pub start_timeout_ms: u64,
    /// After the last audio was sent, how long to wait for its marks before giving up, ms.
    pub mark_timeout_ms: u64,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self { lead_ms: 300, mark_interval_ms: 20, start_timeout_ms: 10_000, mark_timeout_ms: 5_000 }
    }
}

/// What DTMF key presses do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DtmfMode {
    /// Collect digits (until the terminator or a pause) and give them to the model as the
    /// caller's words.
    #[default]
    Text,
    /// Log them only.
    Ignore,
}

/// `[dtmf]`: key presses on the phone.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DtmfConfig {
    /// What to do with them.
    pub mode: DtmfMode,
    /// The key that ends an entry at once (`#`; empty: none).
    pub terminator: String,
    /// An entry ends after this long without a key, ms.
    pub timeout_ms: u64,
    /// How the digits reach the model; `{digits}` is replaced.
    pub template: String,
}

impl Default for DtmfConfig {
    fn default() -> Self {
        Self {
            mode: DtmfMode::Text,
            terminator: "#".into(),
            timeout_ms: 2000,
            template: "(The caller typed on the keypad: {digits})".into(),
        }
    }
}

/// What the source loop does after a message.
enum Flow {
    /// Read the next one.
    Next,
    /// Stop: how the stream ended, or `None` when the call was cancelled or the pipeline went.
    End(Option<StreamEnd>),
}

/// How the stream ended, as the transport saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// Twilio sent `stop` (the caller hung up, or the call was redirected or completed).
    Stop,
    /// The socket closed or failed without a `stop`.
    SocketLost(String),
}

/// Counters of one stream (for metrics and the call summary).
#[derive(Debug, Default)]
pub struct StreamStats {
    /// Malformed or unexpected messages from the carrier.
    pub bad_messages: std::sync::atomic::AtomicU64,
    /// Marks confirmed.
    pub marks_confirmed: std::sync::atomic::AtomicU64,
}

/// Shared between the source, the sink and the server.
#[derive(Debug, Default)]
pub struct StreamState {
    end: Mutex<Option<StreamEnd>>,
    /// Counters.
    pub stats: StreamStats,
}

impl StreamState {
    /// How the stream ended, once it has.
    pub fn end(&self) -> Option<StreamEnd> {
        self.end.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    fn set_end(&self, end: StreamEnd) {
        self.end.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(end);
    }
}

/// The stream could not start.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// No `start` in time.
    #[error("no `start` message within {0} ms")]
    NoStart(u64),
    /// The socket closed before `start`.
    #[error("the socket closed before `start`: {0}")]
    Closed(String),
    /// The first messages were not Media Streams messages.
    #[error("expected `connected`/`start`, got: {0}")]
    Protocol(String),
    /// The stream is not μ-law 8 kHz mono.
    #[error("unsupported media format {0}")]
    Format(String),
}

/// A started stream: its metadata and the two halves of the transport.
#[derive(Debug)]
pub struct MediaStream {
    /// `start.start`.
    pub start: StartInfo,
    /// The caller's audio.
    pub source: TwilioSource,
    /// The assistant's audio.
    pub sink: TwilioSink,
    /// How it ended, and counters.
    pub state: Arc<StreamState>,
}

impl MediaStream {
    /// Records both sides of the call (caller left, agent as confirmed played right).
    pub fn record_to(&mut self, recorder: CallRecorder) {
        self.source.recorder = Some(recorder.clone());
        self.sink.recorder = Some(recorder);
    }
}

/// Waits for `connected` and `start` and splits the stream into a source and a sink.
pub async fn accept(
    mut inbound: mpsc::Receiver<SocketIn>,
    outbound: mpsc::Sender<String>,
    opts: StreamOptions,
    dtmf: DtmfConfig,
) -> Result<MediaStream, StreamError> {
    let deadline = Instant::now() + Duration::from_millis(opts.start_timeout_ms);
    let start = loop {
        let msg = tokio::time::timeout_at(deadline, inbound.recv())
            .await
            .map_err(|_| StreamError::NoStart(opts.start_timeout_ms))?;
        match msg {
            Some(SocketIn::Text(t)) => match serde_json::from_str::<Inbound>(&t) {
                Ok(Inbound::Connected { .. }) => continue,
                Ok(Inbound::Start { start, .. }) => break start,
                Ok(other) => {
                    return Err(StreamError::Protocol(format!("{other:?}").chars().take(80).collect()));
                }
                Err(e) => return Err(StreamError::Protocol(e.to_string())),
            },
            Some(SocketIn::Binary(n)) => {
                return Err(StreamError::Protocol(format!("a binary message of {n} bytes")));
            }
            Some(SocketIn::Closed(why)) => return Err(StreamError::Closed(why)),
            None => return Err(StreamError::Closed("reader ended".into())),
        }
    };
    let f = &start.media_format;
    if f.encoding != "audio/x-mulaw" || f.sample_rate != RATE || f.channels != 1 {
        return Err(StreamError::Format(format!("{} {} Hz × {}", f.encoding, f.sample_rate, f.channels)));
    }
    let state = Arc::new(StreamState::default());
    let (mark_tx, mark_rx) = mpsc::channel(MARK_QUEUE);
    let writer = OutboundWriter::new(&start.stream_sid);
    let source = TwilioSource {
        inbound,
        marks: mark_tx,
        dtmf,
        state: state.clone(),
        recorder: None,
        stream_sid: start.stream_sid.clone(),
    };
    let sink = TwilioSink { outbound, writer, marks: mark_rx, opts, recorder: None, state: state.clone() };
    Ok(MediaStream { start, source, sink, state })
}

/// The caller's audio from the stream, as 20 ms 8 kHz chunks; also routes mark echoes to the
/// sink and key presses to the model.
#[derive(Debug)]
pub struct TwilioSource {
    inbound: mpsc::Receiver<SocketIn>,
    marks: mpsc::Sender<String>,
    dtmf: DtmfConfig,
    state: Arc<StreamState>,
    recorder: Option<CallRecorder>,
    stream_sid: String,
}

/// Logs the first few problems of a kind, then every hundredth, so a broken carrier cannot
/// flood the log.
fn report(state: &StreamState, what: &str, detail: &str) {
    let n = state.stats.bad_messages.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    if n <= 5 || n.is_multiple_of(100) {
        warn!(count = n, detail, "media stream: {what}; ignored");
    }
}

#[async_trait]
impl Source for TwilioSource {
    fn name(&self) -> &str {
        "twilio media stream"
    }

    async fn run(mut self: Box<Self>, ctx: CallContext, out: Outbox) -> Result<(), StageError> {
        let mut position: u64 = 0; // samples of caller audio delivered
        let mut raw: Vec<u8> = Vec::with_capacity(FRAME);
        let mut digits = String::new();
        let mut digits_due: Option<Instant> = None;
        let mut flush_tick = tokio::time::interval(Duration::from_secs(1));
        flush_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let end = loop {
            let msg = tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => break None,
                () = sleep_until(digits_due) => {
                    digits_due = None;
                    if !self.send_digits(&ctx, &out, &mut digits).await { break None }
                    continue;
                }
                _ = flush_tick.tick() => {
                    if let Some(r) = &self.recorder {
                        r.flush_before(position.saturating_sub(RATE as u64));
                    }
                    continue;
                }
                m = self.inbound.recv() => m,
            };
            let text = match msg {
                Some(SocketIn::Text(t)) => t,
                Some(SocketIn::Binary(n)) => {
                    report(
                        &self.state,
                        "binary message (Twilio sends JSON text only)",
                        &format!("{n} bytes"),
                    );
                    continue;
                }
                Some(SocketIn::Closed(why)) => break Some(StreamEnd::SocketLost(why)),
                None => break Some(StreamEnd::SocketLost("reader ended".into())),
            };
            // Media, 50 times a second, is read in place; everything else takes the full parser.
            let flow = match MediaView::parse(&text) {
                Some(media) => self.on_media(media, &ctx, &out, &mut raw, &mut position).await,
                None => match serde_json::from_str::<Inbound>(&text) {
                    Ok(Inbound::Media { media, stream_sid, .. }) => {
                        let media = MediaView::of(&stream_sid, &media);
                        self.on_media(media, &ctx, &out, &mut raw, &mut position).await
                    }
                    Ok(other) => self.on_control(other, &ctx, &out, &mut digits, &mut digits_due).await,
                    Err(e) => {
                        report(&self.state, "malformed message", &e.to_string());
                        Flow::Next
                    }
                },
            };
            if let Flow::End(end) = flow {
                break end;
            }
        };
        if let Some(end) = end {
            match &end {
                StreamEnd::Stop => info!("media stream stopped by the carrier"),
                StreamEnd::SocketLost(why) => warn!(reason = %why, "media stream socket lost mid-call"),
            }
            self.state.set_end(end);
            // Nobody is listening any more: the call ends now, not after the pipeline drains.
            ctx.cancel.cancel();
        }
        Ok(())
    }
}

impl TwilioSource {
    /// One frame of caller audio: checked, decoded and delivered (gaps filled with silence).
    async fn on_media(
        &self,
        media: MediaView<'_>,
        ctx: &CallContext,
        out: &Outbox,
        raw: &mut Vec<u8>,
        position: &mut u64,
    ) -> Flow {
        if media.stream_sid != self.stream_sid {
            report(&self.state, "media for another stream", media.stream_sid);
            return Flow::Next;
        }
        if media.payload.len() > MAX_PAYLOAD_BYTES * 4 / 3 + 4 {
            report(
                &self.state,
                "oversize media payload",
                &format!("{} base64 characters", media.payload.len()),
            );
            return Flow::Next;
        }
        raw.clear();
        if let Err(e) = base64::engine::general_purpose::STANDARD.decode_vec(media.payload.as_bytes(), raw) {
            report(&self.state, "media payload is not base64", &e.to_string());
            return Flow::Next;
        }
        // A frame that arrives after a gap (lost packets) lands at its own time: the
        // gap is filled with silence so the pipeline's timeline stays the caller's.
        if let Ok(ts) = media.timestamp.parse::<u64>() {
            // Saturating: the timestamp is the carrier's, and may be anything up to u64::MAX.
            let at = ts.saturating_mul(RATE as u64) / 1000;
            if at > *position + 2 * FRAME as u64 {
                let gap = (at - *position).min(RATE as u64 * 5) as usize;
                if !self.deliver(ctx, out, vec![0; gap], position).await {
                    return Flow::End(None);
                }
            }
        }
        let mut samples = Vec::with_capacity(raw.len());
        g711::decode_ulaw(raw, &mut samples);
        if !self.deliver(ctx, out, samples, position).await {
            return Flow::End(None);
        }
        Flow::Next
    }

    /// A message other than media: a mark confirmed, a key pressed, the stream stopped.
    async fn on_control(
        &self,
        msg: Inbound,
        ctx: &CallContext,
        out: &Outbox,
        digits: &mut String,
        digits_due: &mut Option<Instant>,
    ) -> Flow {
        match msg {
            Inbound::Mark { mark, .. } => {
                tokio::select! {
                    biased;
                    () = ctx.cancel.cancelled() => return Flow::End(None),
                    _ = self.marks.send(mark.name) => {}
                }
            }
            Inbound::Dtmf { dtmf, .. } => {
                info!(digit = %dtmf.digit, "DTMF");
                if self.dtmf.mode == DtmfMode::Ignore {
                    return Flow::Next;
                }
                if !self.dtmf.terminator.is_empty() && dtmf.digit == self.dtmf.terminator {
                    *digits_due = None;
                    if !self.send_digits(ctx, out, digits).await {
                        return Flow::End(None);
                    }
                } else if dtmf.digit.len() == 1
                    && dtmf.digit.chars().all(|c| c.is_ascii_digit() || "*#ABCD".contains(c))
                {
                    digits.push_str(&dtmf.digit);
                    *digits_due = Some(Instant::now() + Duration::from_millis(self.dtmf.timeout_ms));
                } else {
                    report(&self.state, "unknown DTMF digit", &dtmf.digit);
                }
            }
            Inbound::Stop { .. } => return Flow::End(Some(StreamEnd::Stop)),
            Inbound::Connected { .. } | Inbound::Start { .. } => {
                report(&self.state, "a second connected/start", "");
            }
            // Media never comes here: the caller hands it to `on_media`.
            Inbound::Media { .. } => {}
        }
        Flow::Next
    }

    /// Sends caller audio downstream and to the recording; false when the pipeline has gone.
    async fn deliver(&self, ctx: &CallContext, out: &Outbox, samples: Vec<i16>, position: &mut u64) -> bool {
        if samples.is_empty() {
            return true;
        }
        if let Some(r) = &self.recorder {
            r.caller(*position, &samples);
        }
        let pts = voxpipe_core::audio::duration_of(*position as usize, RATE);
        *position += samples.len() as u64;
        let frame = Frame::InputAudio(AudioChunk::new(RATE, pts, Samples::from_vec(samples)));
        tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => false,
            r = out.send(frame) => r.is_ok(),
        }
    }

    /// Gives collected key presses to the model as the caller's words.
    async fn send_digits(&self, ctx: &CallContext, out: &Outbox, digits: &mut String) -> bool {
        if digits.is_empty() {
            return true;
        }
        let text = self.dtmf.template.replace("{digits}", digits);
        digits.clear();
        debug!(%text, "DTMF entry to the model");
        ctx.events.emit(EventKind::Dtmf { digits: text.clone() }).await;
        let frame = Frame::UserTranscript(Transcript { item: None, text, is_final: true });
        out.send(frame).await.is_ok()
    }
}

/// Audio queued for sending.
struct Queued {
    item: ItemId,
    epoch: u64,
    samples: Samples,
    offset: usize,
    text: Option<Arc<str>>,
}

/// A segment sent and not yet confirmed by its mark.
struct Pending {
    seq: u64,
    item: ItemId,
    epoch: u64,
    samples: Samples,
    /// The chunk's words, on the segment that ends the chunk.
    text: Option<Arc<str>>,
}

/// The assistant's audio to the phone, confirmed by marks.
#[derive(Debug)]
pub struct TwilioSink {
    outbound: mpsc::Sender<String>,
    writer: OutboundWriter,
    marks: mpsc::Receiver<String>,
    opts: StreamOptions,
    recorder: Option<CallRecorder>,
    state: Arc<StreamState>,
}

struct SinkState {
    queue: VecDeque<Queued>,
    pending: VecDeque<Pending>,
    /// The last mark's sequence number.
    seq: u64,
    /// When Twilio's buffer runs dry, as far as we know.
    play_end: Instant,
    /// The item whose audio was last sent, and samples of it confirmed.
    playing: Option<(ItemId, u64)>,
    /// Whether the hold (`PlayoutTracker::pause`) has been applied.
    held: bool,
    last_sent: Option<Instant>,
    resampler: Option<StreamResampler>,
    mulaw: Vec<u8>,
    metrics: TurnMetrics,
}

#[async_trait]
impl Sink for TwilioSink {
    fn name(&self) -> &str {
        "twilio media stream"
    }

    async fn run(mut self: Box<Self>, ctx: CallContext, mut input: Inbox) -> Result<(), StageError> {
        let mut control = ctx.control.subscribe();
        let mut ticker = tokio::time::interval(Duration::from_millis(CHUNK_MS));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut s = SinkState {
            queue: VecDeque::new(),
            pending: VecDeque::new(),
            seq: 0,
            play_end: Instant::now(),
            playing: None,
            held: false,
            last_sent: None,
            resampler: None,
            mulaw: Vec::with_capacity(FRAME),
            metrics: TurnMetrics::default(),
        };
        let mut end_of_stream = false;
        loop {
            tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => break,
                msg = control.recv() => match msg {
                    Ok(Control::Interrupt { onset, .. }) => {
                        s.queue.clear();
                        s.pending.clear();
                        s.held = false;
                        input.flush_interruptible();
                        // Twilio drops what it has buffered: the caller hears nothing more.
                        self.send(self.writer.clear()).await;
                        s.play_end = Instant::now();
                        if let Some((item, played)) = s.playing.take() {
                            if let Some(onset) = onset {
                                let value_ms = ctx.clock.now_ms().saturating_sub(onset.as_millis() as u64);
                                ctx.events.emit(EventKind::Metric { name: "interruption_latency_ms".into(), turn: s.metrics.turn + 1, value_ms }).await;
                            }
                            finished(&ctx, &item, played, RATE, true).await;
                        }
                        ctx.playout.set_idle();
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => {}
                },
                name = self.marks.recv() => {
                    let Some(name) = name else { continue };
                    self.confirm(&ctx, &mut s, &name).await;
                }
                frame = input.recv(), if !end_of_stream => match frame {
                    Some(Frame::OutputAudio(a)) => {
                        let idle = s.queue.is_empty();
                        self.enqueue(&ctx, &mut s, a).map_err(|e| StageError::new("twilio media stream", e))?;
                        // A reply's first audio goes out now, not at the next tick (up to 20 ms).
                        if idle {
                            self.tick(&ctx, &mut s).await;
                        }
                    }
                    Some(f @ (Frame::SpeechStarted { .. } | Frame::SpeechStopped { .. })) => s.metrics.observe(&f),
                    Some(Frame::EndOfStream) | None => end_of_stream = true,
                    Some(_) => {}
                },
                _ = ticker.tick() => {
                    self.tick(&ctx, &mut s).await;
                    if s.queue.is_empty() && s.pending.is_empty() && !s.held {
                        if let Some((item, played)) = s.playing.take() {
                            finished(&ctx, &item, played, RATE, false).await;
                        }
                        ctx.playout.set_idle();
                        if end_of_stream {
                            break;
                        }
                    }
                    // Marks that never come back (a carrier that lost them) must not keep the
                    // call "audible" forever: give up on them after the timeout.
                    if s.queue.is_empty() && !s.pending.is_empty()
                        && s.last_sent.is_some_and(|t| t.elapsed() > Duration::from_millis(self.opts.mark_timeout_ms))
                    {
                        warn!(pending = s.pending.len(), "marks not confirmed in time; treating that audio as unheard");
                        s.pending.clear();
                    }
                }
            }
        }
        if let Some((item, played)) = s.playing.take() {
            finished(&ctx, &item, played, RATE, false).await;
        }
        ctx.playout.set_idle();
        Ok(())
    }
}

impl TwilioSink {
    async fn send(&self, text: String) {
        // The socket writer going away means the socket is gone; the source sees that too.
        let _ = self.outbound.send(text).await;
    }

    fn enqueue(
        &self,
        ctx: &CallContext,
        s: &mut SinkState,
        a: OutputAudio,
    ) -> Result<(), voxpipe_core::audio::ResampleError> {
        if a.epoch != ctx.playout.epoch() {
            return Ok(());
        }
        let samples = at_rate(&mut s.resampler, a.chunk, RATE)?;
        ctx.playout.set_pending(a.epoch);
        s.queue.push_back(Queued { item: a.item, epoch: a.epoch, samples, offset: 0, text: a.text });
        Ok(())
    }

    /// Sends what the lead allows, with marks; applies a hold.
    async fn tick(&self, ctx: &CallContext, s: &mut SinkState) {
        if ctx.playout.is_paused() {
            if !s.held {
                s.held = true;
                self.hold(s).await;
            }
            return;
        }
        s.held = false;
        let lead = Duration::from_millis(self.opts.lead_ms);
        let mark_every = (self.opts.mark_interval_ms as usize * RATE as usize / 1000).max(FRAME);
        loop {
            let now = Instant::now();
            if s.play_end > now + lead {
                break;
            }
            let Some(front) = s.queue.front_mut() else { break };
            if front.epoch != ctx.playout.epoch() {
                s.queue.clear();
                break;
            }
            // One segment: up to a mark's worth of this chunk, sent as 20 ms frames.
            let seg_start = front.offset;
            let seg_end = (seg_start + mark_every).min(front.samples.len());
            let mut at = seg_start;
            while at < seg_end {
                let n = FRAME.min(seg_end - at);
                s.mulaw.clear();
                g711::encode_ulaw(&front.samples[at..at + n], &mut s.mulaw);
                let msg = self.writer.media(&s.mulaw);
                let _ = self.outbound.send(msg).await;
                at += n;
            }
            front.offset = seg_end;
            let seg_len = seg_end - seg_start;
            s.play_end = s.play_end.max(now) + voxpipe_core::audio::duration_of(seg_len, RATE);
            s.last_sent = Some(now);
            s.seq += 1;
            let done = front.offset == front.samples.len();
            let pending = Pending {
                seq: s.seq,
                item: front.item.clone(),
                epoch: front.epoch,
                samples: front.samples.slice(seg_start..seg_end),
                text: if done { front.text.clone() } else { None },
            };
            let item = front.item.clone();
            if done {
                s.queue.pop_front();
            }
            self.send(self.writer.mark(&format!("vx{}", pending.seq))).await;
            s.pending.push_back(pending);
            if s.playing.as_ref().map(|(i, _)| i) != Some(&item) {
                if let Some((prev, played)) = s.playing.take() {
                    finished(ctx, &prev, played, RATE, false).await;
                }
                s.playing = Some((item.clone(), 0));
                // Twilio starts playing on arrival when its buffer is empty: this is the
                // moment the caller starts to hear the reply (plus the network).
                started(ctx, &item, &mut s.metrics).await;
            }
        }
    }

    /// A mark came back: everything sent before it has played.
    async fn confirm(&self, ctx: &CallContext, s: &mut SinkState, name: &str) {
        let Some(seq) = name.strip_prefix("vx").and_then(|n| n.parse::<u64>().ok()) else {
            debug!(%name, "a mark that is not ours");
            return;
        };
        while s.pending.front().is_some_and(|p| p.seq <= seq) {
            let Some(p) = s.pending.pop_front() else { break };
            if !ctx.playout.record_played(&p.item, p.epoch, p.samples.len(), RATE) {
                // Confirmed after an interruption closed its epoch (or echoed by a `clear`).
                continue;
            }
            self.state.stats.marks_confirmed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Some(words) = &p.text {
                ctx.playout.record_heard(&p.item, p.epoch, words);
            }
            if let Some(r) = &self.recorder {
                let end = ctx.clock.elapsed().as_nanos() as u64 * RATE as u64 / 1_000_000_000;
                r.agent(end.saturating_sub(p.samples.len() as u64), &p.samples);
            }
            if let Some((item, played)) = s.playing.as_mut()
                && *item == p.item
            {
                *played += p.samples.len() as u64;
            }
        }
    }

    /// Held playout: Twilio drops its buffer, and what it had not confirmed is queued again
    /// in front, so resuming continues where the caller stopped hearing.
    async fn hold(&self, s: &mut SinkState) {
        self.send(self.writer.clear()).await;
        s.play_end = Instant::now();
        while let Some(p) = s.pending.pop_back() {
            s.queue.push_front(Queued {
                item: p.item,
                epoch: p.epoch,
                samples: p.samples,
                offset: 0,
                text: p.text,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Outbound;

    const START: &str = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound"],"customParameters":{},"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;

    fn mark(name: &str) -> SocketIn {
        SocketIn::Text(format!(
            r#"{{"event":"mark","sequenceNumber":"9","streamSid":"MZ1","mark":{{"name":"{name}"}}}}"#
        ))
    }

    /// Everything the sink has sent so far.
    fn drain(rx: &mut mpsc::Receiver<String>) -> Vec<Outbound> {
        let mut v = Vec::new();
        while let Ok(t) = rx.try_recv() {
            v.push(serde_json::from_str(&t).unwrap());
        }
        v
    }

    /// Paced sending, mark-confirmed playout, and a hold that clears Twilio's buffer and sends
    /// the unconfirmed audio again from the first sample the caller did not hear.
    #[tokio::test(start_paused = true)]
    async fn pacing_marks_and_a_hold_resend_from_what_was_confirmed() {
        let (in_tx, in_rx) = mpsc::channel(64);
        let (out_tx, mut out_rx) = mpsc::channel(1024);
        in_tx.send(SocketIn::Text(START.into())).await.unwrap();
        let stream = accept(in_rx, out_tx, StreamOptions::default(), DtmfConfig::default()).await.unwrap();
        let (ctx, mut events) = CallContext::new(Arc::new(voxpipe_core::NoTools));
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        let (src_out, _src_in) = voxpipe_core::channel();
        let (sink_out, sink_in) = voxpipe_core::channel();
        tokio::spawn(Box::new(stream.source).run(ctx.clone(), src_out));
        tokio::spawn(Box::new(stream.sink).run(ctx.clone(), sink_in));

        // One second of a ramp, so every frame's bytes are distinct.
        let samples: Vec<i16> = (0..8000).map(|i| (i * 3 - 12000) as i16).collect();
        let item: ItemId = "item_1".into();
        let chunk = AudioChunk::new(RATE, Duration::ZERO, Samples::from_vec(samples.clone()));
        sink_out
            .send(Frame::OutputAudio(OutputAudio { item: item.clone(), epoch: 0, chunk, text: None }))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        let first = drain(&mut out_rx);
        let media = first.iter().filter(|m| matches!(m, Outbound::Media { .. })).count();
        let marks: Vec<String> = first
            .iter()
            .filter_map(|m| if let Outbound::Mark { mark, .. } = m { Some(mark.name.clone()) } else { None })
            .collect();
        // Paced: about lead_ms (300 ms) of 20 ms frames, not the whole second.
        assert!((15..=17).contains(&media), "{media} frames sent at once");
        assert_eq!(marks.len(), media, "a mark per frame");
        assert_eq!(ctx.playout.played_ms("item_1"), None, "nothing confirmed yet");

        // Twilio confirms the first 5 frames (100 ms).
        in_tx.send(mark(&marks[4])).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(ctx.playout.played_ms("item_1"), Some(100));

        // Hold: a clear, then nothing until resumed.
        assert!(ctx.playout.pause());
        tokio::time::sleep(Duration::from_millis(40)).await;
        let held = drain(&mut out_rx);
        assert!(matches!(held.first(), Some(Outbound::Clear { .. })), "{held:?}");
        assert_eq!(held.iter().filter(|m| matches!(m, Outbound::Media { .. })).count(), 0, "{held:?}");
        // An echo of a cleared mark changes nothing.
        in_tx.send(mark(&marks[10])).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(drain(&mut out_rx).is_empty());
        assert_eq!(ctx.playout.played_ms("item_1"), Some(100));

        // Resume: sending starts again at sample 800, the first one not confirmed.
        assert!(ctx.playout.resume());
        tokio::time::sleep(Duration::from_millis(30)).await;
        let resumed = drain(&mut out_rx);
        let Some(Outbound::Media { media, .. }) = resumed.first() else { panic!("{resumed:?}") };
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD.decode(&media.payload).unwrap();
        let mut expected = Vec::new();
        g711::encode_ulaw(&samples[800..960], &mut expected);
        assert_eq!(bytes, expected);

        // Barge-in: a clear, and later echoes are not counted.
        let played = ctx.interrupt(voxpipe_core::InterruptReason::BargeIn, None).await.unwrap();
        assert_eq!(played.played_ms, 100);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(drain(&mut out_rx).iter().any(|m| matches!(m, Outbound::Clear { .. })));
        in_tx.send(mark("vx40")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(ctx.playout.played_ms("item_1"), Some(100));
        ctx.cancel.cancel();
    }
}
