//! Utterance segmentation shared by every ASR stage: buffer caller audio between the
//! `SpeechStarted` and `SpeechStopped` frames the turn controller puts on the data path,
//! decode the growing buffer for interim transcripts, and decode it once more for the final
//! one. What "decode" means is the [`Decode`] implementation (local whisper, a remote API).

use crate::error::Error;
use async_trait::async_trait;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tracing::{debug, trace, warn};
use voxpipe_core::audio::{StreamResampler, samples_for_ms};
use voxpipe_core::{CallContext, EventKind, Frame, Inbox, ItemId, Outbox, Stage, StageError, Transcript};

/// The rate every decoder receives: 16 kHz mono.
pub const ASR_RATE: u32 = 16_000;

/// Retries of a final transcription that failed in a way that may pass (429, 5xx, network).
const FINAL_RETRIES: u32 = 2;
/// Back-off before the first of those retries; doubles after.
const FINAL_RETRY_BACKOFF: Duration = Duration::from_millis(200);

/// Whether a decode is an interim or the final one of an utterance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// A re-decode while the caller is still speaking; its result may be dropped.
    Interim,
    /// The decode after the end of speech.
    Final,
}

/// Turns a buffer of 16 kHz mono PCM16 audio into text.
///
/// The stage runs one decode at a time per call: a final decode starts once the interim in
/// flight has finished (its result is then dropped).
///
/// # Cancellation
/// The future may be dropped at any point (end of call); work already handed to a blocking
/// thread runs to completion and its result is discarded.
#[async_trait]
pub trait Decode: Send + Sync + 'static {
    /// Transcribes `audio` (16 kHz mono).
    async fn decode(&self, audio: Arc<[i16]>, pass: Pass) -> Result<String, Error>;
}

/// Segmentation settings.
#[derive(Debug, Clone, Copy)]
pub struct SegmentOptions {
    /// How often to re-decode while speech is active; `None` disables interims.
    pub interim_interval: Option<Duration>,
    /// Audio kept from before the speech onset.
    pub prefix: Duration,
}

/// How late a `SpeechStarted` may arrive after its onset with no audio lost: the turn
/// controller confirms speech that began in a reply's echo warm-up only once it outlasts it.
pub const MAX_LATE_ONSET: Duration = Duration::from_secs(2);

/// A [`Stage`] that segments caller audio by the turn controller's speech frames and
/// transcribes each utterance with a [`Decode`].
///
/// Consumes [`Frame::InputAudio`] (any rate; resampled to 16 kHz) and does not forward it.
/// Forwards `SpeechStarted`, `SpeechStopped` and every other frame; emits
/// [`Frame::UserTranscript`] interims (`is_final: false`, the whole hypothesis so far, not a
/// delta) and one final per utterance after its `SpeechStopped` frame (with empty text when
/// nothing was recognised: consumers skip those).
/// Logs metric `asr_final_ms` (end of speech → final transcript).
///
/// # Interruption
/// Ignores `Control::Interrupt`: the caller's speech is always transcribed.
///
/// # Cancellation
/// Returns `Ok` when `ctx.cancel` fires, abandoning any decode in flight.
pub struct SegmentingStage<D> {
    name: String,
    decoder: Arc<D>,
    opts: SegmentOptions,
}

impl<D> std::fmt::Debug for SegmentingStage<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentingStage").field("name", &self.name).field("opts", &self.opts).finish()
    }
}

impl<D: Decode> SegmentingStage<D> {
    /// A stage named `name` (for logs, e.g. `asr.whisper`) decoding with `decoder`.
    pub fn new(name: impl Into<String>, decoder: Arc<D>, opts: SegmentOptions) -> Self {
        Self { name: name.into(), decoder, opts }
    }
}

struct Decoding {
    handle: JoinHandle<Result<String, Error>>,
}

struct PendingFinal {
    decoding: Decoding,
    item: ItemId,
    turn: u32,
    stopped_at: tokio::time::Instant,
}

/// The per-call state of a segmenting stage.
struct Segmenter<D> {
    /// The stage's name, for events.
    name: String,
    decoder: Arc<D>,
    opts: SegmentOptions,
    resampler: Option<StreamResampler>,
    scratch: Vec<i16>,
    /// Recent audio outside speech: `prefix` plus [`MAX_LATE_ONSET`].
    prefix: VecDeque<i16>,
    /// Input timeline position of the end of the audio received.
    position: Duration,
    utterance: Vec<i16>,
    in_speech: bool,
    turn: u32,
    interim: Option<Decoding>,
    last_interim: String,
    next_interim: Option<tokio::time::Instant>,
    final_: Option<PendingFinal>,
    /// Frames held back while a final decode runs, so they follow the final transcript.
    held: VecDeque<Frame>,
}

/// Spawns a decode that starts once `after` (an interim still running) has finished.
fn spawn_decode<D: Decode>(
    decoder: &Arc<D>,
    audio: Arc<[i16]>,
    pass: Pass,
    after: Option<Decoding>,
) -> Decoding {
    let d = decoder.clone();
    let handle = tokio::spawn(async move {
        if let Some(prev) = after {
            let _ = prev.handle.await;
        }
        let mut attempt = 0;
        loop {
            match d.decode(audio.clone(), pass).await {
                // A final transcript is the caller's turn: a 429, 5xx or network failure is
                // retried with back-off before the turn is given up. Interims are not worth it.
                Err(e) if pass == Pass::Final && e.is_retryable() && attempt < FINAL_RETRIES => {
                    attempt += 1;
                    warn!(error = %e, attempt, "final transcription failed; retrying");
                    tokio::time::sleep(voxpipe_core::time::backoff(FINAL_RETRY_BACKOFF, attempt)).await;
                }
                r => return r,
            }
        }
    });
    Decoding { handle }
}

async fn join(d: &mut Option<Decoding>) -> Result<String, Error> {
    match d {
        Some(dec) => match (&mut dec.handle).await {
            Ok(r) => r,
            Err(e) => Err(Error::Decode(format!("decode task failed: {e}"))),
        },
        None => std::future::pending().await,
    }
}

async fn join_final(p: &mut Option<PendingFinal>) -> Result<String, Error> {
    match p {
        Some(f) => match (&mut f.decoding.handle).await {
            Ok(r) => r,
            Err(e) => Err(Error::Decode(format!("decode task failed: {e}"))),
        },
        None => std::future::pending().await,
    }
}

impl<D: Decode> Segmenter<D> {
    fn push_audio(&mut self, chunk: &voxpipe_core::AudioChunk) -> Result<(), Error> {
        if self.resampler.as_ref().is_none_or(|r| r.from_rate() != chunk.sample_rate) {
            self.resampler = Some(StreamResampler::new(chunk.sample_rate, ASR_RATE)?);
        }
        self.scratch.clear();
        let r = self.resampler.as_mut().expect("set just above");
        r.push(&chunk.samples, &mut self.scratch)?;
        self.position = chunk.pts + chunk.duration();
        if self.in_speech {
            self.utterance.extend_from_slice(&self.scratch);
        } else {
            let keep = samples_for_ms(ASR_RATE, (self.opts.prefix + MAX_LATE_ONSET).as_millis() as u64);
            self.prefix.extend(self.scratch.iter().copied());
            let excess = self.prefix.len().saturating_sub(keep);
            self.prefix.drain(..excess);
        }
        Ok(())
    }

    /// Starts an utterance with the audio from `prefix` before the onset `at` (the input
    /// timeline), however late the frame came, up to [`MAX_LATE_ONSET`].
    fn speech_started(&mut self, at: Duration) {
        if self.in_speech {
            return;
        }
        self.in_speech = true;
        self.turn += 1;
        let since = self.position.saturating_sub(at).min(MAX_LATE_ONSET) + self.opts.prefix;
        let keep = samples_for_ms(ASR_RATE, since.as_millis() as u64).min(self.prefix.len());
        self.prefix.drain(..self.prefix.len() - keep);
        self.utterance.clear();
        self.utterance.extend(self.prefix.drain(..));
        self.last_interim.clear();
        self.next_interim = self.opts.interim_interval.map(|i| tokio::time::Instant::now() + i);
    }

    /// Ends the utterance and starts its final decode (superseding any interim).
    fn speech_stopped(&mut self) {
        if !self.in_speech {
            return;
        }
        self.in_speech = false;
        self.next_interim = None;
        // The interim in flight is superseded: the final waits for it and drops its result.
        let after = self.interim.take();
        let audio: Arc<[i16]> = std::mem::take(&mut self.utterance).into();
        let item: ItemId = format!("user_{}", self.turn).into();
        debug!(turn = self.turn, samples = audio.len(), "final decode");
        self.final_ = Some(PendingFinal {
            decoding: spawn_decode(&self.decoder, audio, Pass::Final, after),
            item,
            turn: self.turn,
            stopped_at: tokio::time::Instant::now(),
        });
    }

    fn start_interim(&mut self) {
        self.next_interim = self.opts.interim_interval.map(|i| tokio::time::Instant::now() + i);
        // One decode at a time: skip this tick if the previous interim or a final still runs.
        if self.interim.is_some() || self.final_.is_some() || self.utterance.is_empty() {
            return;
        }
        trace!(samples = self.utterance.len(), "interim decode");
        self.interim =
            Some(spawn_decode(&self.decoder, self.utterance.as_slice().into(), Pass::Interim, None));
    }
}

async fn send(out: &Outbox, ctx: &CallContext, frame: Frame) -> bool {
    tokio::select! {
        biased;
        () = ctx.cancel.cancelled() => false,
        r = out.send(frame) => r.is_ok(),
    }
}

impl<D: Decode> Segmenter<D> {
    /// Emits the result of the pending final decode, then the frames held behind it. Returns
    /// false when the call is over (cancelled or downstream gone).
    async fn finish_final(
        &mut self,
        res: Result<String, Error>,
        ctx: &CallContext,
        out: &Outbox,
    ) -> Result<bool, Error> {
        let done = self.final_.take().expect("called only when a final is pending");
        let text = match res {
            Ok(text) => text.trim().to_string(),
            // A provider failure costs this turn, not the call: it is reported, the turn ends
            // with an empty transcript, and the caller can speak again.
            Err(e) if e.costs_only_the_turn() => {
                warn!(error = %e, turn = done.turn, "final transcription failed; the turn is dropped");
                ctx.events
                    .emit(EventKind::ProviderError {
                        stage: self.name.clone(),
                        code: None,
                        message: e.to_string(),
                    })
                    .await;
                String::new()
            }
            Err(e) => return Err(e),
        };
        if text.is_empty() {
            debug!(turn = done.turn, "no speech recognised; empty final transcript");
        }
        // Sent even when empty, so the turn gate knows the utterance is over.
        let recognised = !text.is_empty();
        let t = Transcript { item: Some(done.item), text, is_final: true };
        if !send(out, ctx, Frame::UserTranscript(t)).await {
            return Ok(false);
        }
        if recognised {
            let value_ms = done.stopped_at.elapsed().as_millis() as u64;
            ctx.events
                .emit(EventKind::Metric { name: "asr_final_ms".into(), turn: done.turn, value_ms })
                .await;
        }
        while let Some(f) = self.held.pop_front() {
            if !send(out, ctx, f).await {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn finish_interim(&mut self, res: Result<String, Error>, ctx: &CallContext, out: &Outbox) -> bool {
        self.interim = None;
        match res {
            Ok(text) => {
                let text = text.trim().to_string();
                if self.in_speech && !text.is_empty() && text != self.last_interim {
                    self.last_interim.clone_from(&text);
                    let t = Transcript {
                        item: Some(format!("user_{}", self.turn).into()),
                        text,
                        is_final: false,
                    };
                    return send(out, ctx, Frame::UserTranscript(t)).await;
                }
            }
            Err(e) => warn!(error = %e, "interim decode failed"),
        }
        true
    }

    /// Sends `frame` downstream, or holds it behind a pending final transcript.
    async fn forward(&mut self, frame: Frame, ctx: &CallContext, out: &Outbox) -> bool {
        if self.final_.is_some() {
            self.held.push_back(frame);
            true
        } else {
            send(out, ctx, frame).await
        }
    }

    /// Handles one input frame. Returns Ok(false) when the call is over.
    async fn on_frame(&mut self, frame: Frame, ctx: &CallContext, out: &Outbox) -> Result<bool, Error> {
        match frame {
            Frame::InputAudio(chunk) => {
                self.push_audio(&chunk)?;
                Ok(true)
            }
            Frame::SpeechStarted { at } => {
                self.speech_started(at);
                Ok(self.forward(frame, ctx, out).await)
            }
            Frame::SpeechStopped { .. } | Frame::EndOfStream => {
                if self.in_speech && self.final_.is_some() {
                    // Finals are decoded one at a time, in order: finish the previous one.
                    let res = tokio::select! {
                        biased;
                        () = ctx.cancel.cancelled() => return Ok(false),
                        r = join_final(&mut self.final_) => r,
                    };
                    if !self.finish_final(res, ctx, out).await? {
                        return Ok(false);
                    }
                }
                let eos = matches!(frame, Frame::EndOfStream);
                // The end of speech goes downstream before its final transcript.
                let sent = if eos { true } else { self.forward(frame, ctx, out).await };
                self.speech_stopped();
                if eos {
                    self.held.push_back(Frame::EndOfStream);
                }
                Ok(sent)
            }
            other => Ok(self.forward(other, ctx, out).await),
        }
    }
}

#[async_trait]
impl<D: Decode> Stage for SegmentingStage<D> {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(self: Box<Self>, ctx: CallContext, mut input: Inbox, out: Outbox) -> Result<(), StageError> {
        let name = self.name.clone();
        let mut s = Segmenter {
            name: self.name.clone(),
            decoder: self.decoder,
            opts: self.opts,
            resampler: None,
            scratch: Vec::with_capacity(1024),
            prefix: VecDeque::new(),
            position: Duration::ZERO,
            utterance: Vec::new(),
            in_speech: false,
            turn: 0,
            interim: None,
            last_interim: String::new(),
            next_interim: None,
            final_: None,
            held: VecDeque::new(),
        };
        let mut control = ctx.control.subscribe();
        let mut control_open = true;
        let mut ending = false;
        let fail = |e: Error| StageError::new(name.clone(), e);
        loop {
            if ending && s.final_.is_none() {
                // Everything decoded and sent: forward what was held, the end of stream last.
                while let Some(f) = s.held.pop_front() {
                    if !send(&out, &ctx, f).await {
                        break;
                    }
                }
                return Ok(());
            }
            let tick = s.next_interim;
            let keep_going = tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => return Ok(()),
                msg = control.recv(), if control_open => {
                    // Interrupts concern assistant output; the caller keeps being transcribed.
                    if let Err(tokio::sync::broadcast::error::RecvError::Closed) = msg {
                        control_open = false;
                    }
                    true
                }
                res = join_final(&mut s.final_) => s.finish_final(res, &ctx, &out).await.map_err(fail)?,
                res = join(&mut s.interim) => s.finish_interim(res, &ctx, &out).await,
                () = async { tokio::time::sleep_until(tick.expect("guarded")).await }, if tick.is_some() && !ending => {
                    s.start_interim();
                    true
                }
                frame = input.recv(), if !ending => match frame {
                    Some(frame) => {
                        ending = matches!(frame, Frame::EndOfStream);
                        s.on_frame(frame, &ctx, &out).await.map_err(fail)?
                    }
                    None => {
                        // Upstream went away without an end of stream: finish the utterance.
                        s.speech_stopped();
                        ending = true;
                        true
                    }
                },
            };
            if !keep_going {
                return Ok(());
            }
        }
    }
}
