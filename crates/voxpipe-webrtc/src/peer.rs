//! The peer connection: answering the browser's offer, and the task that drives str0m with the
//! call's UDP socket, its timers and the audio and messages of the call.

use crate::audio::{WebRtcSink, WebRtcSource};
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use str0m::change::SdpOffer;
use str0m::channel::ChannelId;
use str0m::format::Codec;
use str0m::media::{Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Opus packets queued from the socket to the source: 2 s of 20 ms frames.
const INBOUND_QUEUE: usize = 100;
/// Frames and messages queued from the sink and the server to the socket task.
const OUTBOUND_QUEUE: usize = 256;
/// Messages to the page kept until the data channel opens.
const PENDING_MESSAGES: usize = 256;
/// The largest SDP offer accepted.
pub const MAX_OFFER_BYTES: usize = 64 * 1024;

/// Settings of the browser transport.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebRtcOptions {
    /// The address the call's UDP socket binds and announces as its host candidate: loopback
    /// for a page on this machine, a LAN address for other machines. Default: `127.0.0.1`.
    pub host: IpAddr,
    /// The connection must be up (ICE and DTLS) within this long of the answer, ms.
    pub connect_timeout_ms: u64,
}

impl Default for WebRtcOptions {
    fn default() -> Self {
        Self { host: IpAddr::V4(Ipv4Addr::LOCALHOST), connect_timeout_ms: 15_000 }
    }
}

/// The offer could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum WebRtcError {
    /// Not an SDP offer this peer can parse.
    #[error("malformed SDP offer: {0}")]
    Sdp(String),
    /// An offer without an audio track, or whose audio is not Opus.
    #[error("the offer has no Opus audio track")]
    NoAudio,
    /// The offer was refused (no common codec, bad fingerprint…).
    #[error("offer refused: {0}")]
    Refused(String),
    /// The call's socket could not be bound.
    #[error("cannot bind a UDP socket on {0}: {1}")]
    Bind(IpAddr, String),
}

/// How the peer connection ended, as the transport saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEnd {
    /// The page sent `end` (the caller pressed hang up).
    PageEnded,
    /// The connection was never established in time.
    NotConnected,
    /// ICE lost the browser (tab closed, network gone).
    Disconnected,
    /// The connection failed.
    Failed(String),
}

impl CallEnd {
    /// A short outcome name for metrics and the call summary.
    pub fn outcome(&self) -> &'static str {
        match self {
            CallEnd::PageEnded => "hangup",
            CallEnd::NotConnected => "not_connected",
            CallEnd::Disconnected => "disconnected",
            CallEnd::Failed(_) => "transport_error",
        }
    }
}

/// Shared by the transport's halves and the server.
#[derive(Debug, Default)]
pub struct CallState {
    end: Mutex<Option<CallEnd>>,
    /// Opus packets that did not decode, and page messages that did not parse.
    pub bad_packets: std::sync::atomic::AtomicU64,
    /// Opus packets received.
    pub packets_in: std::sync::atomic::AtomicU64,
    /// Opus packets sent.
    pub packets_out: std::sync::atomic::AtomicU64,
    /// RTP time of the next frame the sink will send (48 kHz ticks).
    pub(crate) sent_rtp: std::sync::atomic::AtomicU64,
    /// The page's playout reports: sent minus played, ms (the listener's lag), the first
    /// [`MAX_DELAYS_KEPT`].
    delays: Mutex<Vec<u32>>,
}

/// Playout reports kept per call (ten minutes at four a second).
const MAX_DELAYS_KEPT: usize = 2400;

/// Playout delay over a call: how far the page's ear lagged what the server had sent
/// (network, jitter buffer, decoding, output), from the page's reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PlayoutDelay {
    /// Reports received.
    pub reports: usize,
    /// Median, ms.
    pub p50_ms: u32,
    /// 95th percentile, ms.
    pub p95_ms: u32,
}

impl CallState {
    /// How the connection ended, once it has.
    pub fn end(&self) -> Option<CallEnd> {
        self.end.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    pub(crate) fn set_end(&self, end: CallEnd) {
        self.end.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(end);
    }

    pub(crate) fn record_delay(&self, ms: u32) {
        let mut d = self.delays.lock().unwrap_or_else(|e| e.into_inner());
        if d.len() < MAX_DELAYS_KEPT {
            d.push(ms);
        }
    }

    /// The page's playout delay so far, if it reported any (WebRTC only).
    pub fn playout_delay(&self) -> Option<PlayoutDelay> {
        let mut d = self.delays.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if d.is_empty() {
            return None;
        }
        d.sort_unstable();
        let at = |q: f64| d[((d.len() - 1) as f64 * q).round() as usize];
        Some(PlayoutDelay { reports: d.len(), p50_ms: at(0.5), p95_ms: at(0.95) })
    }
}

/// What the connection hands its owner (the call's source, or a server of another protocol
/// such as the Realtime fake).
#[derive(Debug)]
pub enum Inbound {
    /// One Opus packet and its RTP time.
    Audio {
        /// RTP time, 48 kHz ticks, unwrapped to 64 bits.
        rtp: u64,
        /// The Opus payload.
        packet: Arc<[u8]>,
    },
    /// PCM16 samples at 16 kHz (the WebSocket fallback).
    Pcm16(Vec<i16>),
    /// A text message from the page.
    Page(String),
}

/// What the owner hands the connection to send.
#[derive(Debug)]
pub enum Outbound {
    /// One encoded frame (Opus, or PCM16LE on the WebSocket fallback) and its RTP time.
    Audio {
        /// RTP time, 48 kHz ticks (unused on the fallback).
        rtp: u64,
        /// The encoded frame.
        packet: Arc<[u8]>,
    },
    /// A text message to the page.
    Page(String),
}

/// Sends JSON text to the page over the data channel. Never waits: when the call's queue is
/// full the message is dropped (the page's view is best effort; the event log is the record).
#[derive(Debug, Clone)]
pub struct PageEvents {
    tx: mpsc::Sender<Outbound>,
}

impl PageEvents {
    pub(crate) fn new(tx: mpsc::Sender<Outbound>) -> Self {
        Self { tx }
    }

    /// Queues `text` for the page.
    pub fn send(&self, text: String) {
        if self.tx.try_send(Outbound::Page(text)).is_err() {
            debug!("page message dropped: the call's queue is full or closed");
        }
    }
}

/// An answered offer: the SDP answer for the browser and the call's transport.
#[derive(Debug)]
pub struct WebRtcCall {
    /// The SDP answer.
    pub answer: String,
    /// The caller's audio and the page's controls.
    pub source: WebRtcSource,
    /// The assistant's audio.
    pub sink: WebRtcSink,
    /// Messages to the page.
    pub page: PageEvents,
    /// How it ended, and counters.
    pub state: Arc<CallState>,
    /// Cancel to close the connection (done when the call's pipeline ends).
    pub close: CancellationToken,
}

/// An answered offer as raw channels: Opus packets and data-channel text in, the same out.
/// [`accept`] builds a voxpipe call on it; other servers (the Realtime fake) use it directly.
#[derive(Debug)]
pub struct Peer {
    /// The SDP answer.
    pub answer: String,
    /// Caller audio (Opus, with its RTP time) and page messages. Ends when the connection does.
    pub inbound: mpsc::Receiver<Inbound>,
    /// Audio frames (Opus, RTP time in 48 kHz ticks) and messages to send.
    pub outbound: mpsc::Sender<Outbound>,
    /// How it ended, and counters.
    pub state: Arc<CallState>,
    /// Cancel to close the connection.
    pub close: CancellationToken,
}

/// Answers `offer` (SDP text) and starts the peer connection on a task of its own.
///
/// # Errors
/// A malformed or unusable offer, or a socket that cannot be bound.
pub async fn accept(offer: &str, opts: &WebRtcOptions) -> Result<WebRtcCall, WebRtcError> {
    let peer = answer(offer, opts).await?;
    Ok(WebRtcCall {
        answer: peer.answer,
        source: WebRtcSource::new(peer.inbound, peer.state.clone()),
        sink: WebRtcSink::new(peer.outbound.clone(), peer.state.clone(), crate::audio::Codec::Opus),
        page: PageEvents::new(peer.outbound),
        state: peer.state,
        close: peer.close,
    })
}

/// Answers `offer` and starts the connection's task; the caller owns the channels.
///
/// # Errors
/// A malformed or unusable offer, or a socket that cannot be bound.
pub async fn answer(offer: &str, opts: &WebRtcOptions) -> Result<Peer, WebRtcError> {
    if offer.len() > MAX_OFFER_BYTES {
        return Err(WebRtcError::Sdp(format!("{} bytes (at most {MAX_OFFER_BYTES})", offer.len())));
    }
    let offer = SdpOffer::from_sdp_string(offer).map_err(|e| WebRtcError::Sdp(e.to_string()))?;
    let socket = UdpSocket::bind(SocketAddr::new(opts.host, 0))
        .await
        .map_err(|e| WebRtcError::Bind(opts.host, e.to_string()))?;
    let local = socket.local_addr().map_err(|e| WebRtcError::Bind(opts.host, e.to_string()))?;
    let mut rtc = RtcConfig::new()
        .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
        .clear_codecs()
        .enable_opus(true)
        .build(Instant::now());
    let candidate = Candidate::host(local, "udp").map_err(|e| WebRtcError::Refused(e.to_string()))?;
    rtc.add_local_candidate(candidate);
    let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| WebRtcError::Refused(e.to_string()))?;
    let answer = answer.to_sdp_string();
    if !answer.contains("m=audio") || !answer.to_ascii_lowercase().contains("opus/48000") {
        return Err(WebRtcError::NoAudio);
    }
    let state = Arc::new(CallState::default());
    let (in_tx, in_rx) = mpsc::channel(INBOUND_QUEUE);
    let (out_tx, out_rx) = mpsc::channel(OUTBOUND_QUEUE);
    let close = CancellationToken::new();
    let driver = Driver {
        rtc,
        socket,
        local,
        inbound: in_tx,
        outbound: out_rx,
        state: state.clone(),
        audio: None,
        channel: None,
        pending: VecDeque::new(),
        connected: false,
        rtp_unwrap: None,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(opts.connect_timeout_ms);
    tokio::spawn(driver.run(close.clone(), deadline));
    info!(%local, "WebRTC offer answered");
    Ok(Peer { answer, inbound: in_rx, outbound: out_tx, state, close })
}

/// The socket task of one call.
struct Driver {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    inbound: mpsc::Sender<Inbound>,
    outbound: mpsc::Receiver<Outbound>,
    state: Arc<CallState>,
    /// The audio track and the Opus payload type to send with.
    audio: Option<(Mid, Option<Pt>)>,
    channel: Option<ChannelId>,
    /// Page messages waiting for the data channel.
    pending: VecDeque<String>,
    connected: bool,
    /// The last RTP timestamp seen and its unwrapped value.
    rtp_unwrap: Option<(u32, u64)>,
}

impl Driver {
    async fn run(mut self, close: CancellationToken, connect_deadline: tokio::time::Instant) {
        let mut buf = vec![0u8; 2048];
        let end = 'call: loop {
            // Everything str0m wants to send or report, until it asks for a timer.
            let timeout = loop {
                match self.rtc.poll_output() {
                    Ok(Output::Timeout(t)) => break t,
                    Ok(Output::Transmit(t)) => {
                        if let Err(e) = self.socket.send_to(&t.contents, t.destination).await {
                            debug!(error = %e, "UDP send failed");
                        }
                    }
                    Ok(Output::Event(e)) => {
                        if let Some(end) = self.on_event(e).await {
                            break 'call Some(end);
                        }
                    }
                    Err(e) => break 'call Some(CallEnd::Failed(e.to_string())),
                }
            };
            let wake = tokio::time::Instant::from_std(timeout);
            tokio::select! {
                biased;
                () = close.cancelled() => break None,
                () = tokio::time::sleep_until(connect_deadline), if !self.connected => {
                    warn!("WebRTC: not connected in time");
                    break Some(CallEnd::NotConnected);
                }
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, source)) => {
                        let Ok(receive) = Receive::new(Protocol::Udp, source, self.local, &buf[..n]) else {
                            continue; // not STUN, DTLS or (S)RTP: not for us
                        };
                        let input = Input::Receive(Instant::now(), receive);
                        if self.rtc.accepts(&input)
                            && let Err(e) = self.rtc.handle_input(input)
                        {
                            debug!(error = %e, "WebRTC input rejected");
                        }
                    }
                    Err(e) => debug!(error = %e, "UDP receive failed"),
                },
                () = tokio::time::sleep_until(wake) => {
                    if let Err(e) = self.rtc.handle_input(Input::Timeout(Instant::now())) {
                        break Some(CallEnd::Failed(e.to_string()));
                    }
                }
                out = self.outbound.recv() => match out {
                    Some(Outbound::Audio { rtp, packet }) => self.send_audio(rtp, packet),
                    Some(Outbound::Page(text)) => self.send_page(text),
                    None => break None,
                },
            }
        };
        if self.rtc.is_alive() {
            self.rtc.disconnect();
        }
        // Let the goodbye (DTLS close alert) go out.
        while let Ok(Output::Transmit(t)) = self.rtc.poll_output() {
            let _ = self.socket.send_to(&t.contents, t.destination).await;
        }
        if let Some(end) = end {
            info!(?end, "WebRTC connection ended");
            self.state.set_end(end);
        }
        // Dropping the driver closes the source's queue: it ends the call.
    }

    async fn on_event(&mut self, event: Event) -> Option<CallEnd> {
        match event {
            Event::Connected => {
                info!("WebRTC connected");
                self.connected = true;
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                return Some(CallEnd::Disconnected);
            }
            Event::MediaAdded(m) if m.kind == MediaKind::Audio => {
                let pt = self
                    .rtc
                    .writer(m.mid)
                    .and_then(|w| w.payload_params().find(|p| p.spec().codec == Codec::Opus).map(|p| p.pt()));
                self.audio = Some((m.mid, pt));
            }
            Event::MediaData(d) => {
                let rtp = self.unwrap_rtp(d.time.numer() as u32);
                self.state.packets_in.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if self.inbound.try_send(Inbound::Audio { rtp, packet: d.data }).is_err() {
                    debug!("caller audio dropped: the pipeline is not keeping up");
                }
            }
            Event::ChannelOpen(id, label) => {
                debug!(%label, "data channel open");
                self.channel = Some(id);
                while let Some(text) = self.pending.pop_front() {
                    self.send_page(text);
                }
            }
            Event::ChannelData(d) if !d.binary => {
                let text = String::from_utf8_lossy(&d.data).into_owned();
                if self.inbound.send(Inbound::Page(text)).await.is_err() {
                    return None;
                }
            }
            Event::ChannelClose(id) if Some(id) == self.channel => self.channel = None,
            _ => {}
        }
        None
    }

    /// RTP timestamps are 32 bits and wrap after 24.8 hours at 48 kHz: keep a 64-bit count.
    fn unwrap_rtp(&mut self, ts: u32) -> u64 {
        let v = match self.rtp_unwrap {
            None => u64::from(ts),
            Some((last, acc)) => acc.wrapping_add_signed(i64::from(ts.wrapping_sub(last) as i32)),
        };
        self.rtp_unwrap = Some((ts, v));
        v
    }

    fn send_audio(&mut self, rtp: u64, packet: Arc<[u8]>) {
        let Some((mid, Some(pt))) = self.audio else { return };
        let Some(writer) = self.rtc.writer(mid) else { return };
        let time = MediaTime::new(rtp, Frequency::FORTY_EIGHT_KHZ);
        match writer.write(pt, Instant::now(), time, packet) {
            Ok(()) => {
                self.state.packets_out.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) => debug!(error = %e, "audio frame not sent"),
        }
    }

    fn send_page(&mut self, text: String) {
        let sent =
            self.channel.and_then(|id| self.rtc.channel(id)).map(|mut c| c.write(false, text.as_bytes()));
        match sent {
            Some(Ok(_)) => {}
            Some(Err(e)) => debug!(error = %e, "page message not sent"),
            None => {
                if self.pending.len() < PENDING_MESSAGES {
                    self.pending.push_back(text);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn malformed_and_audio_less_offers_are_refused_clearly() {
        let opts = WebRtcOptions::default();
        let e = accept("hello", &opts).await.unwrap_err();
        assert!(matches!(e, WebRtcError::Sdp(_)), "{e}");
        assert!(e.to_string().starts_with("malformed SDP offer"), "{e}");
        let huge = "v=0\r\n".repeat(MAX_OFFER_BYTES);
        assert!(matches!(accept(&huge, &opts).await.unwrap_err(), WebRtcError::Sdp(_)));
    }
}
