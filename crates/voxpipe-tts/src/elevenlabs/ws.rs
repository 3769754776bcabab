//! The ElevenLabs `stream-input` WebSocket: one socket per reply.
//!
//! `→ {"text":" ", voice_settings, generation_config}` (exactly one space), then each chunk as
//! `{"text":"<chunk> "}` with `"flush":true` on the reply's last, then `{"text":""}`;
//! `← {"audio", "alignment", "normalizedAlignment"}…` until `{"isFinal":true}`.

use super::{ElevenLabs, ElevenLabsConfig};
use crate::Error;
use crate::error::excerpt;
use crate::synth::{Alignment, SynthEvent, TextChunk};
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{debug, trace, warn};

const PROVIDER: &str = "tts.elevenlabs";
/// A space is sent when no text went out for this long, so the service's inactivity timeout
/// (20 s by default) does not close the socket while the LLM pauses mid-reply.
const KEEPALIVE: Duration = Duration::from_secs(10);

/// The largest WebSocket message (and frame) accepted from the service: 4 MiB. An audio
/// message carries one generated chunk (base64 audio and its alignment, rarely above a few
/// hundred KB; 4 MiB of base64 is half a minute of 44.1 kHz PCM), so this is far above what the
/// service sends, and far below tungstenite's default (64 MiB) that a broken or hostile server
/// could otherwise make this client buffer, per message, per reply.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The socket's limits: [`MAX_MESSAGE_BYTES`] per message and per frame.
fn ws_config() -> tungstenite::protocol::WebSocketConfig {
    tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
}

/// `{ws_url}/text-to-speech/{voice_id}/stream-input?model_id=…&output_format=…&sync_alignment=true`.
pub(super) fn stream_input_url(c: &ElevenLabsConfig) -> Result<url::Url, Error> {
    let field = "ws_url";
    let mut url = url::Url::parse(&c.ws_url).map_err(|e| Error::Config { field, detail: format!("{e}") })?;
    if !matches!(url.scheme(), "ws" | "wss") {
        let detail = format!("expected a ws(s) URL, got scheme {:?}", url.scheme());
        return Err(Error::Config { field, detail });
    }
    url.path_segments_mut()
        .map_err(|()| Error::Config { field, detail: "cannot be a base URL".into() })?
        .pop_if_empty()
        .extend(["text-to-speech", c.voice_id.trim(), "stream-input"]);
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("model_id", &c.model_id);
        q.append_pair("output_format", c.output_format.as_str());
        q.append_pair("sync_alignment", "true");
        if let Some(lang) = &c.language_code {
            q.append_pair("language_code", lang);
        }
    }
    Ok(url)
}

/// An audio or final message from the server.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServerMessage {
    #[serde(default)]
    audio: Option<String>,
    #[serde(default)]
    is_final: Option<bool>,
    #[serde(default)]
    alignment: Option<WireAlignment>,
    #[serde(default)]
    normalized_alignment: Option<WireAlignment>,
    #[serde(default)]
    error: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireAlignment {
    chars: Vec<String>,
    char_start_times_ms: Vec<f64>,
}

impl From<WireAlignment> for Alignment {
    fn from(w: WireAlignment) -> Self {
        let char_start_ms = w.char_start_times_ms.iter().map(|&t| t.max(0.0).round() as u32).collect();
        Alignment { chars: w.chars, char_start_ms }
    }
}

/// What one server message says, decoded ([`decode_server_message`]).
#[derive(Debug, Default, PartialEq)]
pub struct ServerReply {
    /// Audio samples (PCM16 at the output format's rate), empty when the message has none.
    pub samples: Vec<i16>,
    /// Character timing of the audio, when sent.
    pub alignment: Option<Alignment>,
    /// `isFinal`: the reply is complete.
    pub is_final: bool,
}

/// Decodes one text message from the `stream-input` socket with a fresh decoder (the session
/// keeps one across messages, so a PCM16 sample split between two messages is carried over).
///
/// # Errors
/// [`Error::Protocol`] for a message that is not the documented JSON, an `error` message, or
/// audio that is not base64.
pub fn decode_server_message(text: &str, format: super::OutputFormat) -> Result<ServerReply, Error> {
    decode(text, &mut format.decoder())
}

fn decode(text: &str, decoder: &mut crate::codec::AudioDecoder) -> Result<ServerReply, Error> {
    let msg: ServerMessage = serde_json::from_str(text).map_err(|e| Error::Protocol {
        provider: PROVIDER,
        detail: format!("unreadable message ({e}): {}", excerpt(text)),
    })?;
    if msg.error.is_some() {
        let detail = msg.message.unwrap_or_else(|| excerpt(text));
        return Err(Error::Protocol { provider: PROVIDER, detail });
    }
    let mut reply = ServerReply { is_final: msg.is_final == Some(true), ..ServerReply::default() };
    if let Some(b64) = msg.audio.as_deref().filter(|a| !a.is_empty()) {
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| Error::Protocol {
            provider: PROVIDER,
            detail: format!("audio is not base64: {e}"),
        })?;
        reply.samples.reserve(decoder.max_samples(bytes.len()));
        decoder.push(&bytes, &mut reply.samples);
        reply.alignment = msg.alignment.or(msg.normalized_alignment).map(Alignment::from);
    }
    Ok(reply)
}

/// Speaks one reply over one socket.
pub(super) async fn speak_reply(
    el: &ElevenLabs,
    mut text: mpsc::Receiver<TextChunk>,
    events: mpsc::Sender<SynthEvent>,
) -> Result<(), Error> {
    let Some(first) = text.recv().await else { return Ok(()) };
    if first.text.is_empty() && first.is_last {
        return Ok(());
    }
    let requested_at = Instant::now();
    let socket = match connect(el).await {
        Ok(s) => s,
        Err(e) if e.is_fatal() => return Err(e),
        Err(e) => {
            let _ = events.send(SynthEvent::Failed(e)).await;
            return Ok(());
        }
    };
    if events.send(SynthEvent::SegmentStart { requested_at, text: None }).await.is_err() {
        return Ok(());
    }
    let (mut tx, mut rx) = socket.split();
    let mut session = Session {
        decoder: el.config.output_format.decoder(),
        got_audio: false,
        key_env: &el.config.api_key_env,
    };
    let outcome: Result<(), Error> = async {
        tx.send(Message::text(init_message(&el.config).to_string())).await.map_err(ws_cut)?;
        let mut input_done = send_chunk(&mut tx, &first).await?;
        let mut last_sent = Instant::now();
        // Once all the text is sent the server owes audio and `isFinal`: a server silent for
        // the request timeout has stalled (without this the reply would hang for good).
        let stall = Duration::from_millis(el.config.request_timeout_ms);
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                biased;
                msg = rx.next() => {
                    last_heard = Instant::now();
                    match session.on_message(msg, &events).await? {
                        Flow::Continue => {}
                        Flow::Done => return Ok(()),
                    }
                },
                () = tokio::time::sleep_until(last_heard.max(last_sent) + stall), if input_done => {
                    let detail = format!("no message for {stall:?} after the text ended (stalled)");
                    return Err(Error::StreamCut { provider: PROVIDER, detail });
                }
                chunk = text.recv(), if !input_done => {
                    input_done = match chunk {
                        Some(c) => send_chunk(&mut tx, &c).await?,
                        None => {
                            send_json(&mut tx, serde_json::json!({ "text": "" })).await?;
                            true
                        }
                    };
                    last_sent = Instant::now();
                }
                () = tokio::time::sleep_until(last_sent + KEEPALIVE), if !input_done => {
                    send_json(&mut tx, serde_json::json!({ "text": " " })).await?;
                    last_sent = Instant::now();
                }
            }
        }
    }
    .await;
    let ev = match outcome {
        Ok(()) => {
            let _ = tx.send(Message::Close(None)).await;
            SynthEvent::SegmentEnd
        }
        Err(e) if e.is_fatal() => return Err(e),
        Err(e) => SynthEvent::Failed(e),
    };
    let _ = events.send(ev).await;
    Ok(())
}

fn init_message(c: &ElevenLabsConfig) -> serde_json::Value {
    let mut init = serde_json::json!({ "text": " " });
    if let Some(vs) = &c.voice_settings {
        init["voice_settings"] = serde_json::to_value(vs).unwrap_or_default();
    }
    if let Some(schedule) = &c.chunk_length_schedule {
        init["generation_config"] = serde_json::json!({ "chunk_length_schedule": schedule });
    }
    init
}

/// Sends a chunk (and, after the last, the end of input). Returns whether input is done.
async fn send_chunk<S>(tx: &mut S, chunk: &TextChunk) -> Result<bool, Error>
where
    S: SinkExt<Message, Error = tungstenite::Error> + Unpin,
{
    let msg = match (chunk.text.is_empty(), chunk.is_last) {
        // The reply ended after its last chunk went out: flush what the service buffered.
        (true, true) => serde_json::json!({ "text": " ", "flush": true }),
        (true, false) => return Ok(false),
        (false, true) => serde_json::json!({ "text": format!("{} ", chunk.text), "flush": true }),
        (false, false) => serde_json::json!({ "text": format!("{} ", chunk.text) }),
    };
    send_json(tx, msg).await?;
    if chunk.is_last {
        send_json(tx, serde_json::json!({ "text": "" })).await?;
    }
    Ok(chunk.is_last)
}

async fn send_json<S>(tx: &mut S, v: serde_json::Value) -> Result<(), Error>
where
    S: SinkExt<Message, Error = tungstenite::Error> + Unpin,
{
    trace!(message = %v, "→ elevenlabs");
    tx.send(Message::text(v.to_string())).await.map_err(ws_cut)
}

fn ws_cut(e: tungstenite::Error) -> Error {
    Error::StreamCut { provider: PROVIDER, detail: e.to_string() }
}

enum Flow {
    Continue,
    Done,
}

struct Session<'a> {
    decoder: crate::codec::AudioDecoder,
    got_audio: bool,
    key_env: &'a str,
}

impl Session<'_> {
    async fn on_message(
        &mut self,
        msg: Option<Result<Message, tungstenite::Error>>,
        events: &mpsc::Sender<SynthEvent>,
    ) -> Result<Flow, Error> {
        let cut = |detail: String| Error::StreamCut { provider: PROVIDER, detail };
        let text = match msg {
            None => return Err(cut("socket closed before isFinal".into())),
            Some(Err(tungstenite::Error::Capacity(e))) => {
                let detail = format!("{e}: the limit is {MAX_MESSAGE_BYTES} bytes");
                return Err(Error::Protocol { provider: PROVIDER, detail });
            }
            Some(Err(e)) => return Err(cut(e.to_string())),
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(frame))) => return Err(closed(frame, self.got_audio, self.key_env)),
            Some(Ok(_)) => return Ok(Flow::Continue),
        };
        let ServerReply { samples, alignment, is_final } = decode(&text, &mut self.decoder)?;
        if !samples.is_empty() {
            trace!(samples = samples.len(), "← elevenlabs audio");
            self.got_audio = true;
            if events.send(SynthEvent::Audio { samples, alignment }).await.is_err() {
                return Ok(Flow::Done);
            }
        }
        if is_final {
            debug!("elevenlabs: isFinal");
            return Ok(Flow::Done);
        }
        Ok(Flow::Continue)
    }
}

/// The error a close frame before `isFinal` means.
fn closed(frame: Option<tungstenite::protocol::CloseFrame>, got_audio: bool, key_env: &str) -> Error {
    let (code, reason) = frame.map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.to_string()));
    let body = excerpt(&reason);
    if code == u16::from(CloseCode::Policy) && !got_audio {
        if body.to_lowercase().contains("key") || body.to_lowercase().contains("auth") {
            let key_env = key_env.to_string();
            return Error::Unauthorized { provider: PROVIDER, status: code, body, key_env };
        }
        return Error::Rejected { provider: PROVIDER, status: code, body };
    }
    Error::StreamCut { provider: PROVIDER, detail: format!("closed with code {code} before isFinal: {body}") }
}

/// Opens the socket, retrying 429, 5xx and network errors.
async fn connect(el: &ElevenLabs) -> Result<Socket, Error> {
    let mut attempt = 0u32;
    let timeout = Duration::from_millis(el.config.request_timeout_ms);
    loop {
        attempt += 1;
        let mut request = el
            .ws_url
            .as_str()
            .into_client_request()
            .map_err(|e| Error::Config { field: "ws_url", detail: e.to_string() })?;
        let key = http::HeaderValue::from_str(el.key.expose()).map_err(|_| Error::Config {
            field: "api_key_env",
            detail: "the key is not a valid header value".into(),
        })?;
        request.headers_mut().insert("xi-api-key", key);
        let detail = match tokio::time::timeout(
            timeout,
            tokio_tungstenite::connect_async_with_config(request, Some(ws_config()), false),
        )
        .await
        {
            Ok(Ok((socket, _))) => return Ok(socket),
            Err(_) => format!("no handshake within {timeout:?}"),
            Ok(Err(tungstenite::Error::Http(resp))) => {
                let status = resp.status().as_u16();
                let body = excerpt(&String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()));
                match status {
                    401 | 403 => {
                        let key_env = el.config.api_key_env.clone();
                        return Err(Error::Unauthorized { provider: PROVIDER, status, body, key_env });
                    }
                    429 | 500..=599 => format!("HTTP {status}: {body}"),
                    _ => return Err(Error::Rejected { provider: PROVIDER, status, body }),
                }
            }
            Ok(Err(e)) => format!("connect failed: {e}"),
        };
        if attempt > el.config.max_retries {
            return Err(Error::Unavailable { provider: PROVIDER, attempts: attempt, detail });
        }
        let wait = retry_wait(attempt);
        warn!(attempt, ?wait, %detail, "elevenlabs connect failed; retrying");
        tokio::time::sleep(wait).await;
    }
}

/// The pause before connection attempt `attempt + 1`: 200 ms doubling, at most 6.4 s (no
/// overflow however many retries a pipeline allows).
fn retry_wait(attempt: u32) -> Duration {
    voxpipe_core::time::backoff(Duration::from_millis(200), attempt)
}

#[cfg(test)]
mod retry_tests {
    use super::*;

    #[test]
    fn the_retry_wait_doubles_and_never_overflows() {
        assert_eq!(retry_wait(1), Duration::from_millis(200));
        assert_eq!(retry_wait(3), Duration::from_millis(800));
        // `2u64.pow(attempt - 1)` overflowed here (max_retries = 64 and up).
        assert_eq!(retry_wait(65), Duration::from_millis(6400));
        assert_eq!(retry_wait(u32::MAX), Duration::from_millis(6400));
    }
}
