//! OpenAI transcription fake: `POST /v1/audio/transcriptions`, a `multipart/form-data`
//! upload validated like the real endpoint (Bearer auth, `file` with a supported extension and
//! real audio content, `model`, known optional fields), answering with scripted text.
//!
//! The fake reads only WAV (RIFF PCM) content: other containers with a valid extension are
//! answered 400 "unsupported by fake"; bytes that are not audio at all (raw PCM named `.wav`)
//! get the real endpoint's "corrupted or unsupported" 400.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Models the endpoint accepts.
pub const MODELS: &[&str] = &[
    "whisper-1",
    "gpt-4o-transcribe",
    "gpt-4o-mini-transcribe",
    "gpt-4o-mini-transcribe-2025-12-15",
    "gpt-4o-transcribe-diarize",
];
/// File extensions the endpoint accepts.
pub const EXTENSIONS: &[&str] = &["flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm"];
const FIELDS: &[&str] = &[
    "file",
    "model",
    "language",
    "prompt",
    "response_format",
    "temperature",
    "timestamp_granularities[]",
    "include[]",
    "stream",
    "chunking_strategy",
    "known_speaker_names[]",
    "known_speaker_references[]",
];
/// Largest upload: 25 MB.
pub const MAX_FILE_BYTES: usize = 25 * 1024 * 1024;

/// Knobs of the transcription fake.
#[derive(Clone, Debug)]
pub struct TranscriptionFakeConfig {
    /// The Bearer token accepted. Default: `sk-test`.
    pub api_key: String,
    /// Texts returned in order, one per successful request (the last one repeats). Empty:
    /// `"<n> ms of audio"`. Default: empty.
    pub transcripts: Vec<String>,
    /// Delay before answering, ms. Default: 0.
    pub latency_ms: u64,
    /// Further delay per second of uploaded audio, ms (a longer utterance takes longer to
    /// transcribe). Default: 0.
    pub latency_per_audio_second_ms: u64,
    /// Fault: answer request number `n` (0-based) with this status and an OpenAI error body.
    pub fail_requests: Vec<(usize, u16)>,
    /// Faults by request index (0-based); every kind is implemented. The answer is one JSON
    /// body: a chunk is [`crate::fault::BODY_CHUNK_BYTES`] bytes of it.
    pub faults: crate::fault::Faults,
}

/// The fault kinds the transcription fake implements.
pub const SUPPORTED_FAULTS: &[&str] = crate::fault::ALL_KINDS;

impl Default for TranscriptionFakeConfig {
    fn default() -> Self {
        Self {
            api_key: "sk-test".into(),
            transcripts: Vec::new(),
            latency_ms: 0,
            latency_per_audio_second_ms: 0,
            fail_requests: Vec::new(),
            faults: Default::default(),
        }
    }
}

/// The audio of a request's `file` part, when it parsed as WAV.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WavInfo {
    /// Sample rate, Hz.
    pub sample_rate: u32,
    /// Channels.
    pub channels: u16,
    /// Bits per sample.
    pub bits_per_sample: u16,
    /// Samples per channel.
    pub samples: usize,
}

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct TranscriptionRequest {
    /// Arrival time on the fake's clock.
    pub at: Duration,
    /// The request's `Content-Type` header.
    pub content_type: String,
    /// Text fields by name (repeated fields joined with `,`).
    pub fields: BTreeMap<String, String>,
    /// The `file` part's file name.
    pub file_name: Option<String>,
    /// The `file` part's content type.
    pub file_content_type: Option<String>,
    /// Size of the `file` part.
    pub file_bytes: usize,
    /// The file's audio format, when WAV.
    pub wav: Option<WavInfo>,
    /// The HTTP status answered.
    pub status: u16,
}

struct Shared {
    config: TranscriptionFakeConfig,
    start: Instant,
    requests: Mutex<Vec<TranscriptionRequest>>,
    served: Mutex<usize>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("config", &self.config).finish()
    }
}

/// A running transcription fake; stops when dropped.
#[derive(Debug)]
pub struct TranscriptionFake {
    server: crate::server::Running,
    shared: Arc<Shared>,
}

impl TranscriptionFake {
    /// Starts the fake on `127.0.0.1:0`.
    pub async fn start(config: TranscriptionFakeConfig) -> std::io::Result<Self> {
        Self::start_on(crate::server::any_port(), config).await
    }

    /// Starts the fake on `addr`.
    pub async fn start_on(
        addr: std::net::SocketAddr,
        config: TranscriptionFakeConfig,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            config,
            start: Instant::now(),
            requests: Mutex::new(Vec::new()),
            served: Mutex::new(0),
        });
        let app = Router::new()
            .route("/v1/audio/transcriptions", post(transcribe))
            .layer(axum::extract::DefaultBodyLimit::max(MAX_FILE_BYTES + 1024 * 1024))
            .with_state(shared.clone());
        let server = crate::server::Running::start(addr, app, CancellationToken::new()).await?;
        Ok(Self { server, shared })
    }

    /// `http://127.0.0.1:port/v1`, the client's `base_url`.
    pub fn base_url(&self) -> String {
        self.server.v1_url()
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<TranscriptionRequest> {
        self.shared.requests.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

use crate::server::openai_error;

fn invalid(message: &str, param: Option<&str>, code: Option<&str>) -> Response {
    openai_error(StatusCode::BAD_REQUEST, message, "invalid_request_error", param, code)
}

/// One part of a multipart body.
struct Part {
    name: String,
    file_name: Option<String>,
    content_type: Option<String>,
    data: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

/// Parses a `multipart/form-data` body (RFC 7578); `None` if it is malformed.
fn parse_multipart(content_type: &str, body: &[u8]) -> Option<Vec<Part>> {
    let boundary =
        content_type.split(';').map(str::trim).find_map(|p| p.strip_prefix("boundary="))?.trim_matches('"');
    let delim = format!("--{boundary}");
    let mut pos = find(body, delim.as_bytes(), 0)? + delim.len();
    let mut parts = Vec::new();
    loop {
        if body.get(pos..pos + 2)? == b"--" {
            return Some(parts);
        }
        pos += 2; // CRLF after the delimiter
        let head_end = find(body, b"\r\n\r\n", pos)?;
        let head = std::str::from_utf8(&body[pos..head_end]).ok()?;
        let next = find(body, format!("\r\n{delim}").as_bytes(), head_end + 4)?;
        let data = body[head_end + 4..next].to_vec();
        let (mut name, mut file_name, mut content_type) = (None, None, None);
        for line in head.split("\r\n") {
            let (k, v) = line.split_once(':')?;
            if k.eq_ignore_ascii_case("content-disposition") {
                for p in v.split(';').map(str::trim) {
                    if let Some(n) = p.strip_prefix("name=") {
                        name = Some(n.trim_matches('"').to_string());
                    } else if let Some(f) = p.strip_prefix("filename=") {
                        file_name = Some(f.trim_matches('"').to_string());
                    }
                }
            } else if k.eq_ignore_ascii_case("content-type") {
                content_type = Some(v.trim().to_string());
            }
        }
        parts.push(Part { name: name?, file_name, content_type, data });
        pos = next + 2 + delim.len();
    }
}

/// Parses a RIFF/WAVE PCM file's `fmt ` and `data` chunks.
pub fn parse_wav(b: &[u8]) -> Option<WavInfo> {
    if b.len() < 12 || &b[..4] != b"RIFF" || &b[8..12] != b"WAVE" {
        return None;
    }
    let (mut pos, mut fmt, mut data_len) = (12, None, None);
    while pos + 8 <= b.len() {
        let id = &b[pos..pos + 4];
        let len = u32::from_le_bytes(b[pos + 4..pos + 8].try_into().ok()?) as usize;
        let body = b.get(pos + 8..(pos + 8 + len).min(b.len()))?;
        if id == b"fmt " && body.len() >= 16 {
            let format = u16::from_le_bytes([body[0], body[1]]);
            let channels = u16::from_le_bytes([body[2], body[3]]);
            let rate = u32::from_le_bytes(body[4..8].try_into().ok()?);
            let bits = u16::from_le_bytes([body[14], body[15]]);
            if !(format == 1 || format == 3 || format == 0xFFFE) || channels == 0 || bits == 0 {
                return None;
            }
            fmt = Some((channels, rate, bits));
        } else if id == b"data" {
            data_len = Some(body.len());
        }
        pos += 8 + len + (len & 1);
    }
    let (channels, sample_rate, bits_per_sample) = fmt?;
    let frame = channels as usize * (bits_per_sample as usize).div_ceil(8);
    Some(WavInfo { sample_rate, channels, bits_per_sample, samples: data_len? / frame })
}

#[allow(clippy::result_large_err, reason = "fake request path: the error is the HTTP response to send")]
fn validate(
    config: &TranscriptionFakeConfig,
    headers: &HeaderMap,
    rec: &mut TranscriptionRequest,
    body: &[u8],
) -> Result<(String, f64), Response> {
    crate::server::openai_bearer(headers, Some(&config.api_key))?;
    if !rec.content_type.starts_with("multipart/form-data") {
        return Err(invalid("Invalid Content-Type header (expected multipart/form-data).", None, None));
    }
    let parts = parse_multipart(&rec.content_type, body)
        .ok_or_else(|| invalid("Could not parse multipart form data.", None, None))?;
    let mut file = None;
    for p in parts {
        if !FIELDS.contains(&p.name.as_str()) {
            return Err(invalid(
                &format!("Unrecognized request argument supplied: {}", p.name),
                Some(&p.name),
                None,
            ));
        }
        if p.name == "file" {
            rec.file_name.clone_from(&p.file_name);
            rec.file_content_type.clone_from(&p.content_type);
            rec.file_bytes = p.data.len();
            file = Some(p);
        } else {
            let v = String::from_utf8_lossy(&p.data).into_owned();
            rec.fields
                .entry(p.name)
                .and_modify(|e| {
                    e.push(',');
                    e.push_str(&v)
                })
                .or_insert(v);
        }
    }
    let Some(file) = file else {
        return Err(invalid("Missing required parameter: 'file'.", Some("file"), None));
    };
    let model = rec
        .fields
        .get("model")
        .cloned()
        .ok_or_else(|| invalid("you must provide a model parameter", None, None))?;
    if !MODELS.contains(&model.as_str()) {
        return Err(crate::server::openai_model_not_found(&model));
    }
    let ext = file.file_name.as_deref().and_then(|n| n.rsplit_once('.')).map(|(_, e)| e.to_ascii_lowercase());
    if !ext.as_deref().is_some_and(|e| EXTENSIONS.contains(&e)) {
        let msg = format!("Invalid file format. Supported formats: {EXTENSIONS:?}");
        return Err(invalid(&msg, Some("file"), Some("invalid_value")));
    }
    if file.data.len() > MAX_FILE_BYTES {
        return Err(openai_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Maximum content size limit (26214400) exceeded.",
            "invalid_request_error",
            Some("file"),
            None,
        ));
    }
    match rec.fields.get("response_format").map(String::as_str) {
        None | Some("json" | "text") => {}
        Some("srt" | "vtt" | "verbose_json") if model == "whisper-1" => {
            return Err(invalid(
                "response_format other than json/text is unsupported by fake.",
                Some("response_format"),
                None,
            ));
        }
        Some(other) => {
            let msg = format!(
                "response_format '{other}' is not compatible with model '{model}'. Use 'json' or 'text'."
            );
            return Err(invalid(&msg, Some("response_format"), Some("unsupported_value")));
        }
    }
    if let Some(t) = rec.fields.get("temperature")
        && !t.parse::<f64>().is_ok_and(|t| (0.0..=1.0).contains(&t))
    {
        return Err(invalid(
            "Invalid 'temperature': expected a number from 0 to 1.",
            Some("temperature"),
            None,
        ));
    }
    if ext.as_deref() != Some("wav") {
        return Err(invalid("Only WAV audio is unsupported by fake.", Some("file"), None));
    }
    let wav = parse_wav(&file.data).ok_or_else(|| {
        invalid("Audio file might be corrupted or unsupported", Some("file"), Some("invalid_value"))
    })?;
    rec.wav = Some(wav.clone());
    let seconds = wav.samples as f64 / wav.sample_rate as f64;
    if seconds < 0.1 {
        return Err(invalid(
            "Audio file is too short. Minimum audio length is 0.1 seconds.",
            Some("file"),
            Some("audio_too_short"),
        ));
    }
    Ok((rec.fields.get("response_format").cloned().unwrap_or_else(|| "json".into()), seconds))
}

async fn transcribe(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let mut rec = TranscriptionRequest {
        at: shared.start.elapsed(),
        content_type,
        fields: BTreeMap::new(),
        file_name: None,
        file_content_type: None,
        file_bytes: 0,
        wav: None,
        status: 200,
    };
    let index = shared.requests.lock().unwrap_or_else(|e| e.into_inner()).len();
    if shared.config.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(shared.config.latency_ms)).await;
    }
    let fault = shared.config.faults.get(&index);
    let status_fault = match fault {
        Some(crate::fault::Fault::Status { status, retry_after_s }) => Some((*status, *retry_after_s)),
        _ => shared.config.fail_requests.iter().find(|(n, _)| *n == index).map(|(_, s)| (*s, None)),
    };
    let response = match (status_fault, validate(&shared.config, &headers, &mut rec, &body)) {
        (_, Err(resp)) => resp,
        (Some((status, retry_after)), Ok(_)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let (kind, msg) = match status.as_u16() {
                429 => {
                    ("requests", "Rate limit reached for requests. Please try again later. (injected fault)")
                }
                _ => (
                    "server_error",
                    "The server had an error while processing your request. Sorry about that! (injected fault)",
                ),
            };
            let body = json!({ "error": { "message": msg, "type": kind, "param": null, "code": null } });
            let mut r =
                (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
            if let Some(secs) = retry_after {
                r.headers_mut().insert(header::RETRY_AFTER, secs.into());
            }
            r
        }
        (None, Ok((format, seconds))) => {
            let per_second = shared.config.latency_per_audio_second_ms as f64 * seconds;
            if per_second >= 1.0 {
                tokio::time::sleep(Duration::from_millis(per_second.round() as u64)).await;
            }
            let text = {
                let mut served = shared.served.lock().unwrap_or_else(|e| e.into_inner());
                let t = &shared.config.transcripts;
                let text = match t.get((*served).min(t.len().saturating_sub(1))) {
                    Some(s) => s.clone(),
                    None => format!("{} ms of audio", (seconds * 1000.0).round() as u64),
                };
                *served += 1;
                text
            };
            if format == "text" {
                let body = axum::body::Bytes::from(format!("{text}\n"));
                match fault {
                    Some(crate::fault::Fault::WrongContentType) => crate::fault::html_response(),
                    _ => {
                        crate::fault::body_response(StatusCode::OK, "text/plain; charset=utf-8", body, fault)
                    }
                }
            } else {
                let body = json!({ "text": text, "usage": { "type": "duration", "seconds": seconds.ceil() as u64 } });
                crate::fault::json_response(StatusCode::OK, body, fault)
            }
        }
    };
    rec.status = response.status().as_u16();
    shared.requests.lock().unwrap_or_else(|e| e.into_inner()).push(rec);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_bodies_parse_into_parts() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF\r\n--XyZ--\r\n";
        let parts = parse_multipart("multipart/form-data; boundary=XyZ", body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].name.as_str(), parts[0].data.as_slice()), ("model", &b"whisper-1"[..]));
        assert_eq!(parts[1].file_name.as_deref(), Some("a.wav"));
        assert_eq!(parts[1].content_type.as_deref(), Some("audio/wav"));
        assert_eq!(parts[1].data, b"RIFF");
        assert!(parse_multipart("multipart/form-data; boundary=XyZ", b"--XyZ\r\nbroken").is_none());
    }

    #[test]
    fn wav_headers_are_checked() {
        let mut w = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        w.extend_from_slice(&16u32.to_le_bytes());
        w.extend_from_slice(&[1, 0, 1, 0]);
        w.extend_from_slice(&16_000u32.to_le_bytes());
        w.extend_from_slice(&32_000u32.to_le_bytes());
        w.extend_from_slice(&[2, 0, 16, 0]);
        w.extend_from_slice(b"data");
        w.extend_from_slice(&8u32.to_le_bytes());
        w.extend_from_slice(&[0; 8]);
        assert_eq!(
            parse_wav(&w),
            Some(WavInfo { sample_rate: 16_000, channels: 1, bits_per_sample: 16, samples: 4 })
        );
        assert_eq!(parse_wav(&[0u8; 64]), None);
    }
}
