//! The call's halves: the caller's Opus audio decoded into the pipeline, and the assistant's
//! audio paced, encoded and sent.

use crate::messages::PageMessage;
use crate::peer::{CallEnd, CallState, Inbound, Outbound, PageEvents};
use crate::{FRAME_48K, INPUT_RATE, OPUS_RATE};
use async_trait::async_trait;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use voxpipe_core::audio::{AudioChunk, duration_of};
use voxpipe_core::{CallContext, Control, Frame, Inbox, Outbox, Samples, Sink, Source, StageError};
use voxpipe_transport::playout::{AudioOut, run_playout};
use voxpipe_transport::recording::CallRecorder;

/// Opus's RTP clock ticks per input sample (48 kHz / 16 kHz).
const TICKS_PER_SAMPLE: u64 = (OPUS_RATE / INPUT_RATE) as u64;
/// The longest Opus frame (120 ms) at 16 kHz.
const MAX_DECODED: usize = 1920;
/// A gap longer than this in the caller's RTP timeline is filled with silence (the pipeline's
/// timeline stays the caller's); shorter jitter is not.
const GAP_FILL_SAMPLES: u64 = 2 * 320;
/// The longest gap filled at once: 5 s.
const MAX_GAP_SAMPLES: u64 = 5 * INPUT_RATE as u64;
/// A page reporting its ear more than 2 s behind the sink is confused, not slow.
const MAX_LAG_TICKS: i32 = 2 * OPUS_RATE as i32;

fn report(state: &CallState, what: &str, detail: &str) {
    let n = state.bad_packets.fetch_add(1, Ordering::Relaxed) + 1;
    if n <= 5 || n.is_multiple_of(100) {
        warn!(count = n, detail, "WebRTC: {what}; ignored");
    }
}

/// The caller's audio from the browser, 16 kHz mono, and the page's controls.
pub struct WebRtcSource {
    inbound: mpsc::Receiver<Inbound>,
    state: Arc<CallState>,
    recorder: Option<CallRecorder>,
}

impl std::fmt::Debug for WebRtcSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcSource").finish_non_exhaustive()
    }
}

impl WebRtcSource {
    pub(crate) fn new(inbound: mpsc::Receiver<Inbound>, state: Arc<CallState>) -> Self {
        Self { inbound, state, recorder: None }
    }
}

/// Records both sides of a browser call into `recorder` (16 kHz): the caller as received, on
/// the left; the agent as sent, on the right.
pub fn record_to(source: &mut WebRtcSource, sink: &mut WebRtcSink, recorder: CallRecorder) {
    source.recorder = Some(recorder.clone());
    sink.recorder = Some(recorder);
}

#[async_trait]
impl Source for WebRtcSource {
    fn name(&self) -> &str {
        "webrtc"
    }

    async fn run(mut self: Box<Self>, ctx: CallContext, out: Outbox) -> Result<(), StageError> {
        let mut decoder = opus::Decoder::new(INPUT_RATE, opus::Channels::Mono)
            .map_err(|e| StageError::new("webrtc", std::io::Error::other(e.to_string())))?;
        let mut pcm = vec![0i16; MAX_DECODED];
        // Samples delivered, and the RTP time of sample 0.
        let mut position: u64 = 0;
        let mut origin: Option<u64> = None;
        let mut muted = false;
        loop {
            let msg = tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => return Ok(()),
                m = self.inbound.recv() => m,
            };
            match msg {
                Some(Inbound::Audio { rtp, packet }) => {
                    let at = (rtp - *origin.get_or_insert(rtp)) / TICKS_PER_SAMPLE;
                    if at + GAP_FILL_SAMPLES < position {
                        continue; // late or repeated: its time has been delivered already
                    }
                    if at > position + GAP_FILL_SAMPLES {
                        let gap = (at - position).min(MAX_GAP_SAMPLES) as usize;
                        if !self.deliver(&ctx, &out, vec![0; gap], &mut position).await {
                            return Ok(());
                        }
                    }
                    let n = match decoder.decode(&packet, &mut pcm, false) {
                        Ok(n) => n,
                        Err(e) => {
                            report(&self.state, "undecodable Opus packet", &e.to_string());
                            continue;
                        }
                    };
                    let samples = if muted { vec![0; n] } else { pcm[..n].to_vec() };
                    if !self.deliver(&ctx, &out, samples, &mut position).await {
                        return Ok(());
                    }
                }
                Some(Inbound::Pcm16(samples)) => {
                    let samples = if muted { vec![0; samples.len()] } else { samples };
                    if !self.deliver(&ctx, &out, samples, &mut position).await {
                        return Ok(());
                    }
                }
                Some(Inbound::Page(text)) => match PageMessage::parse(&text) {
                    Ok(PageMessage::Mute { muted: m }) => {
                        info!(muted = m, "page: microphone");
                        muted = m;
                    }
                    Ok(PageMessage::Ptt { down: true }) => {
                        ctx.control.send(Control::UserTurnStart { at: None })
                    }
                    Ok(PageMessage::Ptt { down: false }) => {
                        ctx.control.send(Control::UserTurnEnd { at: None })
                    }
                    Ok(PageMessage::Playout { rtp }) => {
                        // Sent minus played, on the 32-bit RTP clock: the listener's lag.
                        let sent = self.state.sent_rtp.load(Ordering::Relaxed) as u32;
                        let lag = sent.wrapping_sub(rtp) as i32;
                        if (0..=MAX_LAG_TICKS).contains(&lag) {
                            let ms = lag as u32 / (OPUS_RATE / 1000);
                            ctx.playout.set_output_delay_ms(u64::from(ms));
                            self.state.record_delay(ms);
                        } else {
                            report(&self.state, "implausible playout report", &format!("{lag} ticks behind"));
                        }
                    }
                    Ok(PageMessage::End) => {
                        info!("page: the caller ended the call");
                        self.state.set_end(CallEnd::PageEnded);
                        ctx.cancel.cancel();
                        return Ok(());
                    }
                    Err(e) => report(&self.state, "bad page message", &e),
                },
                None => {
                    // The connection is gone: nobody is listening any more.
                    debug!("WebRTC connection closed; ending the call");
                    ctx.cancel.cancel();
                    return Ok(());
                }
            }
        }
    }
}

impl WebRtcSource {
    /// Sends caller audio downstream (and to the recording); false when the pipeline has gone.
    async fn deliver(&self, ctx: &CallContext, out: &Outbox, samples: Vec<i16>, position: &mut u64) -> bool {
        if let Some(r) = &self.recorder {
            r.caller(*position, &samples);
            // Once a second, write out what both sides have passed (the agent lags by the
            // playout engine's queue at most).
            let second = u64::from(INPUT_RATE);
            if (*position + samples.len() as u64) / second != *position / second {
                r.flush_before(position.saturating_sub(2 * second));
            }
        }
        deliver(ctx, out, samples, position).await
    }
}

/// Sends caller audio downstream; false when the pipeline has gone.
async fn deliver(ctx: &CallContext, out: &Outbox, samples: Vec<i16>, position: &mut u64) -> bool {
    let pts = duration_of(*position as usize, INPUT_RATE);
    *position += samples.len() as u64;
    let frame = Frame::InputAudio(AudioChunk::new(INPUT_RATE, pts, Samples::from_vec(samples)));
    tokio::select! {
        biased;
        () = ctx.cancel.cancelled() => false,
        r = out.send(frame) => r.is_ok(),
    }
}

/// How the sink encodes each 20 ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    /// Opus at 48 kHz, one RTP packet per frame.
    Opus,
    /// PCM16LE at 16 kHz, one WebSocket message per frame (the fallback).
    Pcm16,
}

impl Codec {
    fn rate(self) -> u32 {
        match self {
            Codec::Opus => OPUS_RATE,
            Codec::Pcm16 => INPUT_RATE,
        }
    }
}

/// The assistant's audio to the browser: the shared playout engine on the call clock, each
/// 20 ms encoded (Opus at 48 kHz over WebRTC, PCM16 at 16 kHz over the WebSocket fallback)
/// and sent as one packet.
pub struct WebRtcSink {
    outbound: mpsc::Sender<Outbound>,
    state: Arc<CallState>,
    codec: Codec,
    recorder: Option<CallRecorder>,
}

impl std::fmt::Debug for WebRtcSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcSink").finish_non_exhaustive()
    }
}

impl WebRtcSink {
    pub(crate) fn new(outbound: mpsc::Sender<Outbound>, state: Arc<CallState>, codec: Codec) -> Self {
        Self { outbound, state, codec, recorder: None }
    }
}

#[async_trait]
impl Sink for WebRtcSink {
    fn name(&self) -> &str {
        "webrtc"
    }

    async fn run(self: Box<Self>, ctx: CallContext, input: Inbox) -> Result<(), StageError> {
        let encoder = match self.codec {
            Codec::Opus => Some(
                opus::Encoder::new(OPUS_RATE, opus::Channels::Mono, opus::Application::Voip)
                    .map_err(|e| StageError::new("webrtc", std::io::Error::other(e.to_string())))?,
            ),
            Codec::Pcm16 => None,
        };
        let rate = self.codec.rate();
        let frame_len = voxpipe_core::audio::samples_for_ms(rate, 20);
        let mut out = RtpOut {
            encoder,
            frame_len,
            frame: Vec::with_capacity(frame_len),
            packet: vec![0u8; 1500],
            rtp: 0,
            page: PageEvents::new(self.outbound.clone()),
            outbound: self.outbound,
            state: self.state,
            recording: match self.recorder {
                Some(r) => Some(Recording::new(r, rate)?),
                None => None,
            },
        };
        run_playout("webrtc", ctx, input, rate, &mut out).await
    }
}

/// Played samples to packets: Opus RTP, or PCM16LE (no encoder).
struct RtpOut {
    encoder: Option<opus::Encoder>,
    /// Samples per 20 ms packet.
    frame_len: usize,
    /// Samples of the frame being filled.
    frame: Vec<i16>,
    /// Encoder output buffer.
    packet: Vec<u8>,
    /// RTP time of the next frame, 48 kHz ticks.
    rtp: u64,
    outbound: mpsc::Sender<Outbound>,
    state: Arc<CallState>,
    /// Live captions to the page.
    page: PageEvents,
    recording: Option<Recording>,
}

/// The agent's side of the recording: what was sent, at the recording's 16 kHz.
struct Recording {
    recorder: CallRecorder,
    resampler: voxpipe_core::audio::StreamResampler,
    buf: Vec<i16>,
    /// Samples written, at the recording's rate.
    at: u64,
}

impl Recording {
    fn new(recorder: CallRecorder, rate: u32) -> Result<Self, StageError> {
        let resampler = voxpipe_core::audio::StreamResampler::new(rate, recorder.rate())
            .map_err(|e| StageError::new("webrtc", std::io::Error::other(e.to_string())))?;
        Ok(Self { recorder, resampler, buf: Vec::with_capacity(1024), at: 0 })
    }

    fn agent(&mut self, samples: &[i16]) {
        self.buf.clear();
        if self.resampler.push(samples, &mut self.buf).is_ok() {
            self.recorder.agent(self.at, &self.buf);
            self.at += self.buf.len() as u64;
        }
    }
}

#[async_trait]
impl AudioOut for RtpOut {
    /// Interim captions: the caller's words as the recogniser hears them, the assistant's as
    /// they are generated (native) or handed to the voice (cascade). Finals come from the
    /// event log.
    fn observe(&mut self, frame: &Frame) {
        let msg = match frame {
            Frame::UserTranscript(t) if !t.is_final => {
                serde_json::json!({ "type": "user_interim", "text": t.text })
            }
            Frame::AssistantTranscript(t) if !t.is_final => {
                serde_json::json!({ "type": "assistant_interim", "item": t.item.as_deref(), "text": t.text })
            }
            Frame::OutputAudio(a) => match &a.text {
                Some(words) => {
                    serde_json::json!({ "type": "assistant_interim", "item": &*a.item, "text": format!("{words} ") })
                }
                None => return,
            },
            _ => return,
        };
        self.page.send(msg.to_string());
    }

    async fn write(&mut self, mut samples: &[i16]) -> Result<(), voxpipe_transport::Error> {
        if let Some(r) = self.recording.as_mut() {
            r.agent(samples);
        }
        while !samples.is_empty() {
            let n = (self.frame_len - self.frame.len()).min(samples.len());
            self.frame.extend_from_slice(&samples[..n]);
            samples = &samples[n..];
            if self.frame.len() == self.frame_len {
                // One allocation per packet: str0m keeps the payload for retransmission, the
                // WebSocket owns its message.
                let packet: Option<Arc<[u8]>> = match &mut self.encoder {
                    Some(encoder) => match encoder.encode(&self.frame, &mut self.packet) {
                        Ok(len) => Some(Arc::from(&self.packet[..len])),
                        Err(e) => {
                            report(&self.state, "Opus encoding failed", &e.to_string());
                            None
                        }
                    },
                    None => Some(self.frame.iter().flat_map(|s| s.to_le_bytes()).collect()),
                };
                if let Some(packet) = packet {
                    // The connection gone means the source ends the call.
                    let _ = self.outbound.send(Outbound::Audio { rtp: self.rtp, packet }).await;
                }
                self.rtp += FRAME_48K as u64;
                self.state.sent_rtp.store(self.rtp, Ordering::Relaxed);
                self.frame.clear();
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), voxpipe_transport::Error> {
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), voxpipe_transport::Error> {
        Ok(())
    }
}
