//! OpenAI speech fake: `POST /v1/audio/speech`, validated like the real endpoint, answering
//! `response_format: "pcm"` with a chunked raw 24 kHz PCM16 body of deterministic,
//! syllable-like audio whose length is proportional to the text ([`speech_waveform`]).
//!
//! Only `pcm` is synthesised: `mp3`, `opus`, `aac`, `flac` and `wav` are valid requests that
//! this fake answers with 400 "unsupported by fake", and so is `stream_format: "sse"`.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Rate of the `pcm` format.
pub const PCM_RATE: u32 = 24_000;

/// Built-in voices the endpoint accepts.
pub const VOICES: &[&str] = &[
    "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse", "marin",
    "cedar",
];
/// Models the endpoint accepts.
pub const MODELS: &[&str] = &["tts-1", "tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-12-15"];
const FIELDS: &[&str] =
    &["model", "input", "voice", "instructions", "response_format", "speed", "stream_format"];

/// The fake's deterministic speech: per character, a `ms_per_char` syllable (a tone whose
/// pitch depends on the character, under a raised-sine envelope; spaces are quiet), at `rate`.
pub fn speech_waveform(text: &str, ms_per_char: u64, rate: u32) -> Vec<i16> {
    let per_char = (rate as u64 * ms_per_char / 1000) as usize;
    let mut out = Vec::with_capacity(per_char * text.chars().count());
    for c in text.chars() {
        let hz = 140.0 + (c as u32 % 16) as f64 * 15.0;
        let amp = if c.is_whitespace() { 800.0 } else { 9000.0 };
        for i in 0..per_char {
            let t = i as f64 / rate as f64;
            let env = (std::f64::consts::PI * i as f64 / per_char as f64).sin();
            out.push((amp * env * (2.0 * std::f64::consts::PI * hz * t).sin()).round() as i16);
        }
    }
    out
}

/// Knobs of the speech fake.
#[derive(Clone, Debug)]
pub struct SpeechFakeConfig {
    /// The Bearer token accepted. Default: `sk-test`.
    pub api_key: String,
    /// Audio length per input character, ms. Default: 60.
    pub ms_per_char: u64,
    /// Delay before the first body byte, ms. Default: 0.
    pub time_to_first_byte_ms: u64,
    /// Audio seconds streamed per wall second; 0 streams as fast as possible. Default: 5.0.
    pub real_time_factor: f64,
    /// Body chunk sizes in bytes, cycled; odd sizes split samples. Default: `[4801, 1999, 3333]`.
    pub chunk_bytes: Vec<usize>,
    /// Fault: answer request number `n` (0-based) with this status and an OpenAI error body.
    pub fail_requests: Vec<(usize, u16)>,
    /// `Retry-After` seconds sent with injected 429/503 faults. Default: none.
    pub retry_after_secs: Option<u64>,
    /// Fault: cut request `n`'s body abruptly after this many bytes.
    pub cut_after_bytes: Vec<(usize, usize)>,
    /// Faults by request index (0-based), of the kinds in [`SUPPORTED_FAULTS`]; a chunk is
    /// one piece of the audio body. `fail_requests` and `cut_after_bytes` still apply.
    pub faults: crate::fault::Faults,
}

/// The fault kinds the speech fake implements (its body is raw PCM: nothing to malform).
pub const SUPPORTED_FAULTS: &[&str] = &["status", "stall-after", "cut-after", "slow", "wrong-content-type"];

impl Default for SpeechFakeConfig {
    fn default() -> Self {
        Self {
            api_key: "sk-test".into(),
            ms_per_char: 60,
            time_to_first_byte_ms: 0,
            real_time_factor: 5.0,
            chunk_bytes: vec![4801, 1999, 3333],
            fail_requests: Vec::new(),
            retry_after_secs: None,
            cut_after_bytes: Vec::new(),
            faults: Default::default(),
        }
    }
}

/// How a request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamOutcome {
    /// Still streaming.
    Streaming,
    /// Every byte was sent.
    Completed,
    /// The client went away before the end.
    Dropped,
    /// Cut on purpose (fault knob).
    Cut,
    /// Answered with an error status.
    Rejected(u16),
}

/// One request as the fake saw it. Times are on the tokio clock, from the fake's start.
#[derive(Clone, Debug)]
pub struct SpeechRequest {
    /// Arrival time.
    pub at: Duration,
    /// The JSON body (`Null` if it was not JSON).
    pub body: Value,
    /// When the first body byte was handed to the server.
    pub first_byte_at: Option<Duration>,
    /// When the stream completed, was cut, or was dropped.
    pub ended_at: Option<Duration>,
    /// Bytes of audio sent.
    pub bytes_sent: usize,
    /// How it ended.
    pub outcome: StreamOutcome,
}

struct Shared {
    config: SpeechFakeConfig,
    start: Instant,
    requests: Mutex<Vec<SpeechRequest>>,
}

impl Shared {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }
    fn update(&self, index: usize, f: impl FnOnce(&mut SpeechRequest)) {
        let mut reqs = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = reqs.get_mut(index) {
            f(r);
        }
    }
}

/// A running speech fake; stops when dropped.
#[derive(Debug)]
pub struct SpeechFake {
    server: crate::server::Running,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("config", &self.config).finish()
    }
}

impl SpeechFake {
    /// Starts the fake on `127.0.0.1:0`.
    pub async fn start(config: SpeechFakeConfig) -> std::io::Result<Self> {
        Self::start_on(crate::server::any_port(), config).await
    }

    /// Starts the fake on `addr`.
    pub async fn start_on(addr: std::net::SocketAddr, config: SpeechFakeConfig) -> std::io::Result<Self> {
        let shared = Arc::new(Shared { config, start: Instant::now(), requests: Mutex::new(Vec::new()) });
        let app = Router::new().route("/v1/audio/speech", post(speech)).with_state(shared.clone());
        let server = crate::server::Running::start(addr, app, CancellationToken::new()).await?;
        Ok(Self { server, shared })
    }

    /// `http://127.0.0.1:port/v1`, the client's `base_url`.
    pub fn base_url(&self) -> String {
        self.server.v1_url()
    }

    /// Now on the fake's clock (the clock request times are on).
    pub fn now(&self) -> Duration {
        self.shared.now()
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<SpeechRequest> {
        self.shared.requests.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

use crate::server::openai_error;

fn invalid(message: &str, param: Option<&str>) -> Response {
    openai_error(StatusCode::BAD_REQUEST, message, "invalid_request_error", param, None)
}

/// Checks auth and body like the real endpoint; returns the input text on success.
#[allow(clippy::result_large_err, reason = "fake request path: the error is the HTTP response to send")]
fn validate(config: &SpeechFakeConfig, headers: &HeaderMap, body: &Value) -> Result<String, Response> {
    crate::server::openai_bearer(headers, Some(&config.api_key))?;
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(obj) = body.as_object().filter(|_| ct.starts_with("application/json")) else {
        return Err(invalid(
            "We could not parse the JSON body of your request. Send a JSON object with Content-Type: application/json.",
            None,
        ));
    };
    if let Some(extra) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(invalid(&format!("Unrecognized request argument supplied: {extra}"), Some(extra)));
    }
    let model = match obj.get("model") {
        Some(Value::String(m)) => m.as_str(),
        Some(_) => return Err(invalid("Invalid type for 'model': expected a string.", Some("model"))),
        None => return Err(invalid("Missing required parameter: 'model'.", Some("model"))),
    };
    if !MODELS.contains(&model) {
        return Err(crate::server::openai_model_not_found(model));
    }
    let input = match obj.get("input") {
        Some(Value::String(s)) if s.is_empty() => {
            return Err(invalid("Input must not be empty.", Some("input")));
        }
        Some(Value::String(s)) if s.chars().count() > 4096 => {
            return Err(invalid("'input' is too long: the maximum is 4096 characters.", Some("input")));
        }
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(invalid("Invalid type for 'input': expected a string.", Some("input"))),
        None => return Err(invalid("Missing required parameter: 'input'.", Some("input"))),
    };
    match obj.get("voice") {
        Some(Value::String(v)) if VOICES.contains(&v.as_str()) => {}
        Some(Value::Object(o)) if o.len() == 1 && o.get("id").is_some_and(Value::is_string) => {}
        Some(v) => {
            let msg = format!("Invalid value for 'voice': {v}. Supported values are: {}.", VOICES.join(", "));
            return Err(invalid(&msg, Some("voice")));
        }
        None => return Err(invalid("Missing required parameter: 'voice'.", Some("voice"))),
    }
    let tts1 = model.starts_with("tts-1");
    if let Some(i) = obj.get("instructions") {
        if tts1 {
            return Err(invalid(
                &format!("Instructions are not supported for model {model}."),
                Some("instructions"),
            ));
        }
        if i.as_str().is_none_or(|s| s.chars().count() > 4096) {
            return Err(invalid(
                "Invalid 'instructions': expected a string of at most 4096 characters.",
                Some("instructions"),
            ));
        }
    }
    if let Some(s) = obj.get("speed")
        && !s.as_f64().is_some_and(|s| (0.25..=4.0).contains(&s))
    {
        return Err(invalid("Invalid 'speed': expected a number from 0.25 to 4.0.", Some("speed")));
    }
    match obj.get("stream_format").map(|v| v.as_str()) {
        None | Some(Some("audio")) => {}
        Some(Some("sse")) if tts1 => {
            return Err(invalid(
                "stream_format 'sse' is not supported for tts-1 models.",
                Some("stream_format"),
            ));
        }
        Some(Some("sse")) => {
            return Err(invalid("stream_format 'sse' is unsupported by fake.", Some("stream_format")));
        }
        Some(_) => {
            return Err(invalid(
                "Invalid 'stream_format': expected 'sse' or 'audio'.",
                Some("stream_format"),
            ));
        }
    }
    match obj.get("response_format").map(|v| v.as_str()) {
        Some(Some("pcm")) => Ok(input),
        None | Some(Some("mp3" | "opus" | "aac" | "flac" | "wav")) => {
            Err(invalid("response_format other than 'pcm' is unsupported by fake.", Some("response_format")))
        }
        Some(_) => Err(invalid(
            "Invalid 'response_format': expected one of mp3, opus, aac, flac, wav, pcm.",
            Some("response_format"),
        )),
    }
}

async fn speech(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let index = {
        let mut reqs = shared.requests.lock().unwrap_or_else(|e| e.into_inner());
        reqs.push(SpeechRequest {
            at: shared.now(),
            body: json.clone(),
            first_byte_at: None,
            ended_at: None,
            bytes_sent: 0,
            outcome: StreamOutcome::Streaming,
        });
        reqs.len() - 1
    };
    let config = &shared.config;
    let reject = |resp: Response| {
        let status = resp.status().as_u16();
        shared.update(index, |r| {
            r.outcome = StreamOutcome::Rejected(status);
            r.ended_at = Some(shared.now());
        });
        resp
    };
    let fault = config.faults.get(&index);
    let status_fault = match fault {
        Some(crate::fault::Fault::Status { status, retry_after_s }) => Some((*status, *retry_after_s)),
        _ => {
            config.fail_requests.iter().find(|(n, _)| *n == index).map(|&(_, s)| (s, config.retry_after_secs))
        }
    };
    if let Some((status, retry_after)) = status_fault {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = openai_error(
            status,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
            None,
        );
        if let Some(secs) = retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, secs.into());
        }
        return reject(resp);
    }
    if fault == Some(&crate::fault::Fault::WrongContentType) {
        shared.update(index, |r| {
            r.outcome = StreamOutcome::Completed;
            r.ended_at = Some(shared.now());
        });
        return crate::fault::html_response();
    }
    let input = match validate(config, &headers, &json) {
        Ok(input) => input,
        Err(resp) => return reject(resp),
    };
    let samples = speech_waveform(&input, config.ms_per_char, PCM_RATE);
    let mut bytes = Vec::with_capacity(samples.len() * 2);
    for s in samples {
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    let cut = config.cut_after_bytes.iter().find(|(n, _)| *n == index).map(|&(_, b)| b);
    let body = pacing::paced_body(
        bytes,
        pacing::Pacing {
            chunk_bytes: config.chunk_bytes.clone(),
            bytes_per_sec: PCM_RATE as f64 * 2.0,
            ttfb: Duration::from_millis(config.time_to_first_byte_ms),
            real_time_factor: config.real_time_factor,
            cut_after: cut,
            fault: fault.cloned(),
        },
        {
            let shared = shared.clone();
            move |ev| record(&shared, index, ev)
        },
    );
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/octet-stream")], Body::from_stream(body))
        .into_response()
}

fn record(shared: &Shared, index: usize, ev: pacing::BodyEvent) {
    use pacing::BodyEvent;
    let now = shared.now();
    shared.update(index, |r| match ev {
        BodyEvent::Sent(n) => {
            r.first_byte_at.get_or_insert(now);
            r.bytes_sent += n;
        }
        BodyEvent::Completed => {
            r.outcome = StreamOutcome::Completed;
            r.ended_at = Some(now);
        }
        BodyEvent::Cut => {
            r.outcome = StreamOutcome::Cut;
            r.ended_at = Some(now);
        }
        BodyEvent::Dropped => {
            r.outcome = StreamOutcome::Dropped;
            r.ended_at = Some(now);
        }
    });
}

/// Paced, chunked bodies shared by the audio fakes.
pub(crate) mod pacing {
    use axum::body::Bytes;
    use futures_util::Stream;
    use std::time::Duration;
    use tokio::time::Instant;

    /// How a body is paced.
    pub(crate) struct Pacing {
        /// Chunk sizes, cycled.
        pub chunk_bytes: Vec<usize>,
        /// Bytes per second of audio.
        pub bytes_per_sec: f64,
        /// Delay before the first chunk.
        pub ttfb: Duration,
        /// Audio seconds per wall second; 0 = no pacing.
        pub real_time_factor: f64,
        /// Cut the body abruptly after this many bytes.
        pub cut_after: Option<usize>,
        /// A fault: stall, cut after chunks, slow drip ([`crate::fault::Fault`]).
        pub fault: Option<crate::fault::Fault>,
    }

    /// What happened to the body.
    #[derive(Debug, Clone, Copy)]
    pub(crate) enum BodyEvent {
        Sent(usize),
        Completed,
        Cut,
        Dropped,
    }

    struct Guard<F: Fn(BodyEvent)> {
        on: F,
        finished: bool,
    }

    impl<F: Fn(BodyEvent)> Guard<F> {
        fn finish(&mut self, ev: BodyEvent) {
            if !self.finished {
                self.finished = true;
                (self.on)(ev);
            }
        }
    }

    impl<F: Fn(BodyEvent)> Drop for Guard<F> {
        fn drop(&mut self) {
            self.finish(BodyEvent::Dropped);
        }
    }

    struct State<F: Fn(BodyEvent)> {
        bytes: Bytes,
        pos: usize,
        index: usize,
        /// A cut-after-chunks fault sent its half chunk: the next poll fails.
        cutting: bool,
        next_at: Option<Instant>,
        pacing: Pacing,
        guard: Guard<F>,
    }

    /// `bytes` as a stream of chunks paced like real-time synthesis; `on` hears every send and
    /// how the body ended (`Dropped` when the client went away first).
    pub(crate) fn paced_body<F>(
        bytes: Vec<u8>,
        pacing: Pacing,
        on: F,
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static
    where
        F: Fn(BodyEvent) + Send + Sync + 'static,
    {
        let state = State {
            bytes: Bytes::from(bytes),
            pos: 0,
            index: 0,
            cutting: false,
            next_at: None,
            pacing,
            guard: Guard { on, finished: false },
        };
        futures_util::stream::unfold(state, |mut s| async move {
            use crate::fault::Fault;
            if s.cutting {
                s.guard.finish(BodyEvent::Cut);
                s.pos = s.bytes.len();
                s.cutting = false;
                return Some((Err(std::io::Error::other("body cut by the fake's fault knob")), s));
            }
            if s.pos >= s.bytes.len() {
                s.guard.finish(BodyEvent::Completed);
                return None;
            }
            match s.next_at {
                None => {
                    tokio::time::sleep(s.pacing.ttfb).await;
                    s.next_at = Some(Instant::now());
                }
                Some(at) => tokio::time::sleep_until(at).await,
            }
            match s.pacing.fault {
                Some(Fault::Slow { interval_ms }) => {
                    tokio::time::sleep(Duration::from_millis(interval_ms)).await;
                    // The drip sets the pace from here on.
                    s.next_at = s.next_at.map(|t| t.max(Instant::now()));
                }
                Some(Fault::StallAfter { chunks }) if s.index == chunks => {
                    // Hang with the connection open until the client gives up.
                    std::future::pending::<()>().await;
                }
                _ => {}
            }
            let limit = s.pacing.cut_after.unwrap_or(usize::MAX).min(s.bytes.len());
            if s.pos >= limit {
                s.guard.finish(BodyEvent::Cut);
                s.pos = s.bytes.len();
                return Some((Err(std::io::Error::other("body cut by the fake's fault knob")), s));
            }
            let sizes = &s.pacing.chunk_bytes;
            let size = if sizes.is_empty() { 4096 } else { sizes[s.index % sizes.len()].max(1) };
            s.index += 1;
            let mut end = (s.pos + size).min(limit);
            if matches!(s.pacing.fault, Some(Fault::CutAfter { chunks }) if s.index == chunks + 1) {
                // Half of this chunk, then the connection drops.
                end = s.pos + (end - s.pos) / 2;
                s.cutting = true;
            }
            let chunk = s.bytes.slice(s.pos..end);
            s.pos = end;
            if s.pacing.real_time_factor > 0.0 {
                let secs = chunk.len() as f64 / s.pacing.bytes_per_sec / s.pacing.real_time_factor;
                s.next_at = s.next_at.map(|t| t + Duration::from_secs_f64(secs));
            }
            (s.guard.on)(BodyEvent::Sent(chunk.len()));
            Some((Ok(chunk), s))
        })
    }
}
