//! Local fakes of every remote API voxpipe speaks to, on loopback, as strict as the real
//! services: same URLs, headers, event names, field shapes, chunking and error bodies, with
//! knobs for latency and faults. They back the tests and `voxpipe fake …` for offline
//! development.
//!
//! The fakes depend on `voxpipe-core` only, never on the clients: each side is written from the
//! published protocol, so a misreading cannot pass both.

pub mod anthropic;
pub mod elevenlabs;
pub mod elevenlabs_agent;
pub mod fault;
pub mod gemini;
pub mod gemini_live;
pub mod openai_chat;
pub mod openai_speech;
pub mod realtime;
mod server;
pub mod tool_server;
pub mod transcription;
mod vad;
mod voice;
