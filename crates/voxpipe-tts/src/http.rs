//! What the HTTP providers share: one streaming request per chunk, retries before audio, and
//! decoding a chunked raw-audio body.

use crate::Error;
use crate::codec::AudioDecoder;
use crate::error::excerpt;
use crate::synth::{SynthEvent, TextChunk};
use futures_util::StreamExt;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, trace, warn};
use voxpipe_core::time::{backoff, retry_after};

/// Longest `Retry-After` honoured; a longer one is cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);
/// Back-off before the first retry when the server gives no `Retry-After`; doubles each time.
const BASE_BACKOFF: Duration = Duration::from_millis(200);

/// A provider that makes one streaming HTTP request per text chunk.
pub(crate) trait ChunkRequests: Send + Sync {
    /// Provider name for messages.
    fn provider(&self) -> &'static str;
    /// The environment variable the key came from, for messages.
    fn key_env(&self) -> &str;
    /// Retries after the first attempt for 429, 5xx and network errors.
    fn max_retries(&self) -> u32;
    /// Time allowed until the response headers arrive.
    fn request_timeout(&self) -> Duration;
    /// The request speaking `text`; `previous` is the reply's previous chunk, if any.
    fn build(&self, text: &str, previous: Option<&str>) -> reqwest::RequestBuilder;
    /// A decoder for one response body.
    fn decoder(&self) -> AudioDecoder;
}

/// Speaks a reply chunk by chunk, one request each, in order.
pub(crate) async fn speak_chunks<R: ChunkRequests>(
    req: &R,
    mut text: mpsc::Receiver<TextChunk>,
    events: mpsc::Sender<SynthEvent>,
) -> Result<(), Error> {
    let mut previous: Option<String> = None;
    while let Some(chunk) = text.recv().await {
        if !chunk.text.is_empty() {
            let start =
                SynthEvent::SegmentStart { requested_at: Instant::now(), text: Some(chunk.text.clone()) };
            if events.send(start).await.is_err() {
                return Ok(());
            }
            let outcome = match send_with_retries(req, &chunk.text, previous.as_deref()).await {
                Ok(resp) => stream_body(req.provider(), resp, req.decoder(), &events).await,
                Err(e) => Err(e),
            };
            let ev = match outcome {
                Ok(()) => SynthEvent::SegmentEnd,
                Err(e) if e.is_fatal() => return Err(e),
                Err(e) => SynthEvent::Failed(e),
            };
            if events.send(ev).await.is_err() {
                return Ok(());
            }
            previous = Some(chunk.text);
        }
        if chunk.is_last {
            break;
        }
    }
    Ok(())
}

/// Sends the request, retrying 429, 5xx and network errors with back-off (honouring
/// `Retry-After`). 401/403 and other 4xx fail at once.
async fn send_with_retries<R: ChunkRequests>(
    req: &R,
    text: &str,
    previous: Option<&str>,
) -> Result<reqwest::Response, Error> {
    let provider = req.provider();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let sent = tokio::time::timeout(req.request_timeout(), req.build(text, previous).send()).await;
        let (detail, retry_after) = match sent {
            Err(_) => (format!("no response within {:?}", req.request_timeout()), None),
            Ok(Err(e)) => (format!("request failed: {}", without_url(&e)), None),
            Ok(Ok(resp)) if resp.status().is_success() => return Ok(resp),
            Ok(Ok(resp)) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry_after(v, MAX_RETRY_AFTER));
                let body = excerpt(&resp.text().await.unwrap_or_default());
                match status {
                    401 | 403 => {
                        let key_env = req.key_env().to_string();
                        return Err(Error::Unauthorized { provider, status, body, key_env });
                    }
                    429 | 500..=599 => (format!("HTTP {status}: {body}"), retry_after),
                    _ => return Err(Error::Rejected { provider, status, body }),
                }
            }
        };
        if attempt > req.max_retries() {
            return Err(Error::Unavailable { provider, attempts: attempt, detail });
        }
        let wait = retry_after.unwrap_or_else(|| backoff(BASE_BACKOFF, attempt)).min(MAX_RETRY_AFTER);
        warn!(provider, attempt, ?wait, %detail, "TTS request failed; retrying");
        tokio::time::sleep(wait).await;
    }
}

/// Streams a raw audio body to `events`, decoded.
async fn stream_body(
    provider: &'static str,
    resp: reqwest::Response,
    mut decoder: AudioDecoder,
    events: &mpsc::Sender<SynthEvent>,
) -> Result<(), Error> {
    // A 200 with a text body (an HTML page from a proxy, a JSON error) is not audio: decoding
    // it would play its bytes as noise.
    let content_type = resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    if let Some(ct) = content_type.filter(|ct| not_audio(ct)) {
        let detail = format!("expected audio, got Content-Type {ct:?}");
        return Err(Error::Protocol { provider, detail });
    }
    let mut body = resp.bytes_stream();
    let mut received = 0usize;
    while let Some(next) = body.next().await {
        let bytes = next.map_err(|e| Error::StreamCut {
            provider,
            detail: format!("after {received} bytes: {}", without_url(&e)),
        })?;
        received += bytes.len();
        trace!(provider, bytes = bytes.len(), "audio bytes");
        let mut samples = Vec::with_capacity(decoder.max_samples(bytes.len()));
        decoder.push(&bytes, &mut samples);
        if !samples.is_empty() && events.send(SynthEvent::Audio { samples, alignment: None }).await.is_err() {
            return Ok(());
        }
    }
    debug!(provider, bytes = received, "audio stream complete");
    Ok(())
}

/// Whether a response's content type says its body is not audio (text, HTML, JSON).
fn not_audio(content_type: &str) -> bool {
    let ct = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    ct.starts_with("text/") || ct == "application/json" || ct.ends_with("+json") || ct.ends_with("/xml")
}

/// A reqwest error's message without its URL (URLs go last or not at all).
fn without_url(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    if let Some(url) = e.url() {
        msg = msg.replace(&format!(" for url ({url})"), "");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// Checks that `base` is an http(s) URL, for config validation.
pub(crate) fn check_base_url(field: &'static str, base: &str) -> Result<url::Url, Error> {
    let url = url::Url::parse(base).map_err(|e| Error::Config { field, detail: format!("{base:?}: {e}") })?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => {
            Err(Error::Config { field, detail: format!("expected an http(s) URL, got scheme {other:?}") })
        }
    }
}

/// An HTTP client for streaming audio: bounded connect and stall times, no overall timeout
/// (a long reply streams for as long as it needs).
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, Error> {
    let settings = voxpipe_http::Settings {
        connect_timeout: Some(timeout),
        read_timeout: Some(timeout),
        ..Default::default()
    };
    voxpipe_http::client(settings).map_err(|e| Error::Config {
        field: "request_timeout_ms",
        detail: format!("cannot build HTTP client: {e}"),
    })
}
