//! The provider side of a TTS stage: a [`Synthesizer`] turns the text chunks of one reply into
//! a stream of decoded audio events.
//!
//! One trait fits both provider shapes: HTTP providers make one streaming request per chunk,
//! the ElevenLabs WebSocket opens one socket per reply and pushes every chunk into it. Either
//! way the stage hands a reply's chunks over a channel as they are cut and reads
//! [`SynthEvent`]s back; audio events are already decoded to PCM16 at
//! [`Synthesizer::sample_rate`].

use crate::Error;
use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::time::Instant;
use voxpipe_core::SampleRate;

/// Capacity of the text channel into a reply session: 32 chunks, far more than a reply has in
/// flight (the stage waits when it is full).
pub const TEXT_CAPACITY: usize = 32;
/// Capacity of the event channel out of a reply session: 16 network reads (a few hundred ms of
/// audio); the provider stops reading the network while it is full.
pub const EVENT_CAPACITY: usize = 16;

/// A chunk of reply text to speak.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextChunk {
    /// Trimmed text; empty only on the end-of-reply marker when the last chunk went out before
    /// the reply was known to end.
    pub text: String,
    /// True on the reply's last chunk: nothing follows it.
    pub is_last: bool,
}

/// Per-character timing of one audio event, relative to that event's first sample (the
/// ElevenLabs WebSocket `alignment` shape).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Alignment {
    /// The characters, in order (each a one-character string, as on the wire).
    pub chars: Vec<String>,
    /// Start of each character, ms from the event's first sample.
    pub char_start_ms: Vec<u32>,
}

/// What a reply session reports.
#[derive(Debug)]
pub enum SynthEvent {
    /// A continuous audio segment begins: HTTP: the request for one chunk was sent; WebSocket:
    /// the socket for the reply was opened.
    SegmentStart {
        /// When the request started (for `tts_first_audio_ms`).
        requested_at: Instant,
        /// The text the segment speaks when the provider gives no alignment (its words are
        /// spread over the audio by character count); `None` when audio events carry
        /// [`Alignment`].
        text: Option<String>,
    },
    /// Decoded audio at the synthesizer's rate.
    Audio {
        /// PCM16 mono samples.
        samples: Vec<i16>,
        /// Character timing, when the provider sends it.
        alignment: Option<Alignment>,
    },
    /// The segment's audio is complete.
    SegmentEnd,
    /// A non-fatal failure: the segment (or the part of it not yet received) is lost; the
    /// session goes on with the next chunk. Reported as a `provider_error` event.
    Failed(Error),
}

/// A TTS provider.
///
/// # Contract
/// [`speak_reply`](Self::speak_reply) reads the chunks of one reply from `text` in order
/// until a chunk with `is_last` arrives or the channel closes, and sends, for each segment, a
/// [`SynthEvent::SegmentStart`], its audio, and a [`SynthEvent::SegmentEnd`] (or
/// [`SynthEvent::Failed`]). It returns once all audio was sent.
///
/// # Errors
/// Returns only fatal errors ([`Error::is_fatal`]); the stage then fails. Everything else goes
/// out as [`SynthEvent::Failed`].
///
/// # Cancellation
/// The stage aborts the task running the future on interruption: dropping it must drop the
/// request body stream or socket at once, sending nothing more.
#[async_trait]
pub trait Synthesizer: Send + Sync + 'static {
    /// Stage name: `tts.openai`, `tts.elevenlabs`.
    fn name(&self) -> &'static str;
    /// Rate of the samples in [`SynthEvent::Audio`].
    fn sample_rate(&self) -> SampleRate;
    /// Speaks one reply.
    async fn speak_reply(
        &self,
        text: mpsc::Receiver<TextChunk>,
        events: mpsc::Sender<SynthEvent>,
    ) -> Result<(), Error>;
}
