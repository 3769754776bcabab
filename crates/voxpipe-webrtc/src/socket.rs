//! The WebSocket fallback, for networks without UDP: the same call over one WebSocket.
//!
//! Binary messages carry PCM16LE, 16 kHz mono: the caller's audio in (any length up to a
//! second), the assistant's out (20 ms each, paced on the call clock). Text messages carry the
//! page's controls in and the call's events out, as on the data channel. The server owns the
//! socket and moves messages through [`SocketIo`]; the call's halves are the same source and
//! playout engine as over WebRTC.

use crate::INPUT_RATE;
use crate::audio::{Codec, WebRtcSink, WebRtcSource};
use crate::peer::{CallEnd, CallState, Inbound, Outbound, PageEvents};
use std::sync::Arc;
use tokio::sync::mpsc;

/// The largest binary message accepted from the page: one second of audio.
pub const MAX_AUDIO_BYTES: usize = INPUT_RATE as usize * 2;

/// A call over the fallback socket.
#[derive(Debug)]
pub struct SocketCall {
    /// The caller's audio and the page's controls.
    pub source: WebRtcSource,
    /// The assistant's audio.
    pub sink: WebRtcSink,
    /// Messages to the page.
    pub page: PageEvents,
    /// How it ended, and counters.
    pub state: Arc<CallState>,
    /// The server's side of the socket.
    pub io: SocketIo,
}

/// What the server's socket loop hands the call, and takes from it.
#[derive(Debug)]
pub struct SocketIo {
    tx: mpsc::Sender<Inbound>,
    rx: mpsc::Receiver<Outbound>,
    state: Arc<CallState>,
}

/// A message for the page.
#[derive(Debug)]
pub enum SocketOut {
    /// 20 ms of the assistant's audio, PCM16LE at 16 kHz.
    Audio(Arc<[u8]>),
    /// An event or caption, JSON.
    Text(String),
}

impl SocketIo {
    /// A binary message from the page; false when the call is over. Odd lengths and oversize
    /// messages are counted and dropped.
    pub async fn audio(&self, bytes: &[u8]) -> bool {
        if bytes.len() > MAX_AUDIO_BYTES || !bytes.len().is_multiple_of(2) {
            self.state.bad_packets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return !self.tx.is_closed();
        }
        self.state.packets_in.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let samples = bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
        self.tx.send(Inbound::Pcm16(samples)).await.is_ok()
    }

    /// A text message from the page; false when the call is over.
    pub async fn text(&self, text: String) -> bool {
        self.tx.send(Inbound::Page(text)).await.is_ok()
    }

    /// The next message for the page; `None` once the call has ended.
    pub async fn next(&mut self) -> Option<SocketOut> {
        Some(match self.rx.recv().await? {
            Outbound::Audio { packet, .. } => {
                self.state.packets_out.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                SocketOut::Audio(packet)
            }
            Outbound::Page(text) => SocketOut::Text(text),
        })
    }

    /// The socket closed: the call ends (the source sees the closed queue).
    pub fn closed(self, end: CallEnd) {
        self.state.set_end(end);
    }
}

/// A call over a fallback socket the server has accepted.
pub fn accept_socket() -> SocketCall {
    let state = Arc::new(CallState::default());
    let (in_tx, in_rx) = mpsc::channel(100);
    let (out_tx, out_rx) = mpsc::channel(256);
    SocketCall {
        source: WebRtcSource::new(in_rx, state.clone()),
        sink: WebRtcSink::new(out_tx.clone(), state.clone(), Codec::Pcm16),
        page: PageEvents::new(out_tx),
        state: state.clone(),
        io: SocketIo { tx: in_tx, rx: out_rx, state },
    }
}
