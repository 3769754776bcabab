//! Sources and sinks for voxpipe: where the caller's audio comes from and where the
//! assistant's audio and the event log go.
//!
//! # Layout
//! - [`wav`]: WAV file source (any common rate and bit depth, G.711 telephone recordings, one
//!   channel or the mix, resampled, paced on the call clock)
//!   and WAV file sink (the assistant's audio on the conversation timeline).
//! - [`pcm`]: raw PCM16 on stdin/stdout.
//! - [`playout`]: the playout engine both audio sinks share: 20 ms ticks on the call clock,
//!   interruption, played-position reporting, per-turn latency metrics.
//! - [`jsonl`]: the JSONL event log writer.
//! - [`recording`]: stereo call recordings (caller left, agent right) on the call's timeline.

pub mod jsonl;
#[cfg(feature = "mic")]
pub mod mic;
pub mod pcm;
pub mod playout;
pub mod recording;
mod riff;
pub mod wav;

use std::path::PathBuf;

/// Errors of sources and sinks.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The WAV file is malformed or in a format voxpipe cannot decode.
    #[error("{path}: unsupported or malformed WAV ({reason})")]
    BadWav {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The WAV file ends before the length its header declares.
    #[error("{path}: truncated WAV: header declares {declared} samples but only {found} are present")]
    TruncatedWav {
        /// The file.
        path: PathBuf,
        /// Samples the header promises.
        declared: u64,
        /// Samples present.
        found: u64,
    },
    /// The file has no such channel.
    #[error(
        "{path}: channel {channel} asked for, but the file has {channels} channel(s) (channels count from 0)"
    )]
    NoSuchChannel {
        /// The file.
        path: PathBuf,
        /// The channel asked for.
        channel: u16,
        /// Channels in the file.
        channels: u16,
    },
    /// An output file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Resampling failed.
    #[error(transparent)]
    Resample(#[from] voxpipe_core::audio::ResampleError),
    /// Standard input/output failed.
    #[error("stdio: {0}")]
    Stdio(std::io::Error),
}
