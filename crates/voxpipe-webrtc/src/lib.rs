//! voxpipe's browser transport: one WebRTC peer per call.
//!
//! The browser sends an SDP offer (an Opus audio track and a data channel); [`accept`] answers
//! it with a host candidate on a UDP socket of its own and drives the connection with
//! [`str0m`] (ICE, DTLS-SRTP, SCTP) on a task of the call. The call's pipeline sees:
//!
//! - a [`WebRtcSource`]: the caller's Opus packets decoded at 16 kHz mono (the rate the VAD and
//!   ASR want; Opus decodes at it natively), gaps in the RTP timeline filled with silence, and
//!   the page's controls (mute, push-to-talk, end) turned into the call's controls;
//! - a [`WebRtcSink`]: the shared playout engine (`voxpipe_transport::playout`) paced on the
//!   call clock at 48 kHz, each 20 ms encoded to Opus and sent as RTP. The playout tracker
//!   advances as frames are sent, so a barge-in cuts history to what was sent; the browser's
//!   jitter buffer (tens of ms on a LAN) is the error of that estimate;
//! - a [`PageEvents`] handle: JSON messages to the page over the data channel (captions, tool
//!   calls, latency per turn), queued until the channel opens.
//!
//! [`socket`] is the fallback for networks without UDP: the same call over one WebSocket,
//! PCM16 at 16 kHz both ways.
//!
//! # Why str0m
//! str0m is sans-IO: the connection is a value the call's own task drives with its socket and
//! timers, so a call is one task and a few buffers (hundreds per process), shuts down with
//! the call's cancellation, and tests can drive it deterministically. webrtc-rs brings its own
//! task tree per peer connection, a much larger dependency graph and its own runtime
//! assumptions; voxpipe needs a single audio track and a data channel, which str0m does well.

mod audio;
pub mod messages;
mod peer;
pub mod socket;

pub use audio::{WebRtcSink, WebRtcSource, record_to};
pub use messages::PageMessage;
pub use peer::{
    CallEnd, CallState, Inbound, MAX_OFFER_BYTES, Outbound, PageEvents, Peer, PlayoutDelay, WebRtcCall,
    WebRtcError, WebRtcOptions, accept, answer,
};

/// The caller's audio as the pipeline receives it.
pub const INPUT_RATE: u32 = 16_000;
/// The rate Opus is encoded at (the RTP clock of Opus is always 48 kHz).
pub const OPUS_RATE: u32 = 48_000;
/// Samples of one 20 ms Opus frame at 48 kHz.
pub const FRAME_48K: usize = 960;
