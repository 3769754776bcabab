//! Twilio for voxpipe: how phone calls reach a pipeline through Twilio Media Streams.
//!
//! # Layout
//! - [`signature`]: `X-Twilio-Signature` (webhooks and stream upgrades), constant-time.
//! - [`twiml`]: the TwiML voxpipe answers with, and a reader for the fake carrier.
//! - [`media`]: Media Streams messages.
//! - [`transport`]: the stream as a pipeline [`Source`](voxpipe_core::Source) and
//!   [`Sink`](voxpipe_core::Sink), playout confirmed by marks.
//! - [`rest`]: call control (hang up, redirect to `<Dial>`) through the REST API.
//! - [`carrier`]: a Twilio-shaped fake carrier: callers that dial a webhook and stream a WAV
//!   in real time, and the REST API that controls their calls (`voxpipe call twilio`,
//!   `voxpipe fake twilio`).

pub mod carrier;
pub mod media;
pub mod rest;
pub mod signature;
pub mod transport;
pub mod twiml;
