//! A Realtime session over WebRTC (PROTOCOLS.md 1.1): the same client and server events on the
//! `oai-events` data channel, the caller's audio on the Opus track, and the model's audio sent
//! back on it in real time instead of `response.output_audio.delta` events.
//!
//! Here the server owns the output buffer: it announces `output_audio_buffer.started` when a
//! response's audio starts playing and `.stopped` when it has all been sent; on a barge-in (or
//! the client's `output_audio_buffer.clear`) it drops what is queued, says
//! `output_audio_buffer.cleared` and truncates the assistant item to the audio sent so far,
//! by itself (`conversation.item.truncated`).

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use voxpipe_webrtc::{Inbound, Outbound, Peer};

use super::Shared;
use super::calls::ClientSecret;
use super::config::RealtimeFakeConfig;
use super::conn::{Conn, Out};
use super::session::Dialect;

/// The model's audio and the Opus codec run at 24 kHz (the RTP clock stays 48 kHz).
const RATE: u32 = 24_000;
/// Samples of one 20 ms frame at 24 kHz.
const FRAME: usize = 480;
/// RTP ticks per 20 ms frame (48 kHz clock).
const FRAME_TICKS: u64 = 960;

/// The output buffer of a WebRTC session: the model's audio queued for real-time sending.
pub(crate) struct Media {
    outbound: mpsc::Sender<Outbound>,
    encoder: opus::Encoder,
    decoder: opus::Decoder,
    queue: VecDeque<i16>,
    /// The response and item whose audio is playing, and samples of it sent.
    playing: Option<(String, String, u64)>,
    rtp: u64,
    frame: Vec<i16>,
    packet: Vec<u8>,
    decoded: Vec<i16>,
}

impl std::fmt::Debug for Media {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Media").field("queued", &self.queue.len()).field("playing", &self.playing).finish()
    }
}

/// What a media tick found.
pub(crate) enum Tick {
    /// Nothing to say.
    Quiet,
    /// The queue ran dry while `response_id` was playing.
    Drained { response_id: String },
}

impl Media {
    fn new(outbound: mpsc::Sender<Outbound>) -> Result<Self, opus::Error> {
        Ok(Self {
            outbound,
            encoder: opus::Encoder::new(RATE, opus::Channels::Mono, opus::Application::Voip)?,
            decoder: opus::Decoder::new(RATE, opus::Channels::Mono)?,
            queue: VecDeque::new(),
            playing: None,
            rtp: 0,
            frame: Vec::with_capacity(FRAME),
            packet: vec![0; 1500],
            decoded: vec![0; 5760],
        })
    }

    /// The model's audio for `item_id` of `response_id` (24 kHz); true when it starts playing.
    pub(crate) fn push(&mut self, response_id: &str, item_id: &str, pcm: &[i16]) -> bool {
        self.queue.extend(pcm);
        let starts = self.playing.as_ref().is_none_or(|(r, i, _)| r != response_id || i != item_id);
        if starts {
            self.playing = Some((response_id.to_string(), item_id.to_string(), 0));
        }
        starts
    }

    /// True while audio is queued or a response is still playing.
    pub(crate) fn playing(&self) -> bool {
        self.playing.is_some()
    }

    /// Drops what is queued; returns the response and item that were playing and ms sent of it.
    pub(crate) fn clear(&mut self) -> Option<(String, String, u64)> {
        self.queue.clear();
        self.playing.take().map(|(r, i, n)| (r, i, n * 1000 / u64::from(RATE)))
    }

    /// Forgets the playing response (it was announced stopped).
    pub(crate) fn stop(&mut self) {
        self.playing = None;
    }

    /// Sends the next 20 ms, if any.
    pub(crate) fn tick(&mut self) -> Tick {
        if self.queue.is_empty() {
            return match &self.playing {
                Some((r, ..)) => Tick::Drained { response_id: r.clone() },
                None => Tick::Quiet,
            };
        }
        let n = self.queue.len().min(FRAME);
        self.frame.clear();
        self.frame.extend(self.queue.drain(..n));
        self.frame.resize(FRAME, 0);
        if let Some((.., sent)) = self.playing.as_mut() {
            *sent += n as u64;
        }
        match self.encoder.encode(&self.frame, &mut self.packet) {
            Ok(len) => {
                let packet: Arc<[u8]> = Arc::from(&self.packet[..len]);
                // A full queue means the connection is gone or stuck: the frame is lost, as on
                // the network.
                let _ = self.outbound.try_send(Outbound::Audio { rtp: self.rtp, packet });
            }
            Err(e) => tracing::warn!(error = %e, "realtime fake: Opus encoding failed"),
        }
        self.rtp += FRAME_TICKS;
        Tick::Quiet
    }

    /// Decodes one of the caller's Opus packets at 24 kHz.
    pub(crate) fn decode(&mut self, packet: &[u8]) -> Option<&[i16]> {
        match self.decoder.decode(packet, &mut self.decoded, false) {
            Ok(n) => Some(&self.decoded[..n]),
            Err(e) => {
                tracing::debug!(error = %e, "realtime fake: undecodable Opus packet");
                None
            }
        }
    }
}

/// Runs one WebRTC session until the peer goes, the call is hung up or the server stops.
pub(crate) async fn run(
    mut peer: Peer,
    id: usize,
    secret: ClientSecret,
    cfg: Arc<RealtimeFakeConfig>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let media = match Media::new(peer.outbound.clone()) {
        Ok(m) => m,
        Err(e) => return tracing::warn!(error = %e, "realtime fake: no Opus codec"),
    };
    let (tx, mut rx) = mpsc::channel::<Out>(super::conn::OUT_QUEUE);
    // Events go out on the data channel (queued by the peer until it opens).
    let events = peer.outbound.clone();
    let writer = tokio::spawn(async move {
        while let Some(Out::Text(text)) = rx.recv().await {
            if events.send(Outbound::Page(text)).await.is_err() {
                return;
            }
        }
    });
    let mut conn = Conn::new(id, Dialect::Ga, &secret.model, cfg, shared, tx);
    conn.media = Some(media);
    conn.preset(&secret.session);
    conn.send(json!({"type": "session.created", "session": conn.session.json()})).await;
    let mut ticker = tokio::time::interval(std::time::Duration::from_millis(20));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    while !conn.aborted {
        let deadline = conn.active.as_ref().map(|r| r.next_at);
        let step = async move {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            () = peer.close.cancelled() => break,
            msg = peer.inbound.recv() => match msg {
                Some(Inbound::Page(text)) => conn.on_text(&text).await,
                Some(Inbound::Audio { packet, .. }) => conn.on_rtp_audio(&packet).await,
                Some(Inbound::Pcm16(_)) => {}
                None => break,
            },
            _ = ticker.tick() => conn.media_tick().await,
            () = step => conn.step_response().await,
        }
    }
    peer.close.cancel();
    drop(conn);
    let _ = writer.await;
    tracing::debug!(connection = id, "realtime fake: WebRTC session ended");
}

impl Conn {
    /// Caller audio from the track: into the input buffer and the VAD like an append.
    async fn on_rtp_audio(&mut self, packet: &[u8]) {
        let Some(media) = self.media.as_mut() else { return };
        let Some(pcm) = media.decode(packet) else { return };
        self.shared.record_pcm(self.id, pcm);
        self.samples.clear();
        self.samples.extend_from_slice(pcm);
        self.on_samples(RATE).await;
    }

    /// One 20 ms of output; `output_audio_buffer.stopped` once a finished response has played.
    async fn media_tick(&mut self) {
        let Some(media) = self.media.as_mut() else { return };
        if let Tick::Drained { response_id } = media.tick() {
            let still_generating = self.active.as_ref().is_some_and(|r| r.id == response_id);
            if !still_generating {
                media.stop();
                self.send(json!({"type": "output_audio_buffer.stopped", "response_id": response_id})).await;
            }
        }
    }
}
