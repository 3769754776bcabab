//! The fault vocabulary every fake shares: what can go wrong with one request (HTTP fakes) or
//! one connection (WebSocket fakes), chosen by its index, and the small text form
//! (`INDEX=KIND[:ARGS]`) that `voxpipe fake … --fault` and the fakes' TOML files (`faults =
//! ["0=status:429:retry-after=2"]`) use.
//!
//! ```text
//! SPEC  = INDEX "=" KIND
//! INDEX = request number (HTTP) or connection number (WebSocket), 0 = the first
//! KIND  = "status:" CODE [":retry-after=" SECS]   answer CODE (429, 500, 503, 529, 401…) with the
//!                                                 provider's error body (and Retry-After)
//!       | "stall-after:" N                        send N chunks (events, messages), then hang
//!       | "cut-after:" N                          send N chunks and half the next, then drop
//!                                                 the connection (disconnect mid-response)
//!       | "malformed" [":" N]                     after N chunks (default 0), one that is not
//!                                                 valid JSON (a malformed body where there is
//!                                                 one JSON body)
//!       | "unknown-event" [":" N]                 after N chunks, an event of a type (or a JSON
//!                                                 field) the protocol does not define
//!       | "slow:" MS                              a delay of MS before every chunk (slow drip)
//!       | "oversize:" BYTES [":" N]               after N chunks, one of BYTES bytes
//!                                                 (suffix k or m: KiB, MiB)
//!       | "wrong-content-type"                    200 with an HTML page (text/html), as a
//!                                                 proxy in the way would answer
//! ```
//!
//! Each fake says which kinds it implements ([`check`]); a chunk is whatever the protocol
//! streams (an SSE event, a WebSocket message, an audio body piece).

use bytes::Bytes;
use futures_util::Stream;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A fault injected into one request or connection, chosen by its index (0 = the first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this HTTP status and the provider's error body (401, 429, 500, 529…),
    /// with a `Retry-After` header in seconds when given. On a WebSocket fake: refuse the
    /// upgrade with it.
    Status {
        /// HTTP status.
        status: u16,
        /// `Retry-After` seconds.
        retry_after_s: Option<u64>,
    },
    /// Send `chunks` chunks, then hang (until the fake stops or the client leaves).
    StallAfter {
        /// Chunks sent before hanging.
        chunks: usize,
    },
    /// Send `chunks` chunks and half of the next one, then drop the connection.
    CutAfter {
        /// Whole chunks sent before the cut.
        chunks: usize,
    },
    /// After `after` chunks, send one that is not valid JSON (where the answer is one JSON
    /// body, that body is cut short instead).
    Malformed {
        /// Chunks sent before the malformed one.
        after: usize,
    },
    /// After `after` chunks, send an event of a type the protocol does not define (or, where
    /// events have no type, a JSON field it does not define).
    UnknownEvent {
        /// Chunks sent before the unknown one.
        after: usize,
    },
    /// Wait `interval_ms` before every chunk (a slow drip; bodies of one piece are split into
    /// small groups of bytes).
    Slow {
        /// Delay before each chunk, ms.
        interval_ms: u64,
    },
    /// After `after` chunks, send one of `bytes` bytes (a well-formed event padded out).
    Oversize {
        /// Size of the oversize chunk, bytes.
        bytes: usize,
        /// Chunks sent before it.
        after: usize,
    },
    /// Answer 200 with an HTML page (`text/html`) instead of the protocol's content.
    WrongContentType,
}

impl Fault {
    /// The kind's keyword in the spec grammar (`status`, `cut-after`…).
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Status { .. } => "status",
            Fault::StallAfter { .. } => "stall-after",
            Fault::CutAfter { .. } => "cut-after",
            Fault::Malformed { .. } => "malformed",
            Fault::UnknownEvent { .. } => "unknown-event",
            Fault::Slow { .. } => "slow",
            Fault::Oversize { .. } => "oversize",
            Fault::WrongContentType => "wrong-content-type",
        }
    }

    /// The chunk this fault injects at position `after`, if it injects one.
    pub(crate) fn injection(&self) -> Option<(usize, Injection)> {
        match *self {
            Fault::Malformed { after } => Some((after, Injection::Malformed)),
            Fault::UnknownEvent { after } => Some((after, Injection::Unknown)),
            Fault::Oversize { bytes, after } => Some((after, Injection::Oversize(bytes))),
            _ => None,
        }
    }
}

/// Every kind of the grammar, in the order `--help` lists them.
pub const ALL_KINDS: &[&str] = &[
    "status",
    "stall-after",
    "cut-after",
    "malformed",
    "unknown-event",
    "slow",
    "oversize",
    "wrong-content-type",
];

/// The grammar in one line, for error messages.
pub const SPEC_FORM: &str = "INDEX=KIND where KIND is status:CODE[:retry-after=SECS], stall-after:N, cut-after:N, malformed[:N], unknown-event[:N], slow:MS, oversize:BYTES[:N] or wrong-content-type (e.g. 0=status:429:retry-after=2, 1=cut-after:3)";

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Status { status, retry_after_s: None } => write!(f, "status:{status}"),
            Fault::Status { status, retry_after_s: Some(s) } => write!(f, "status:{status}:retry-after={s}"),
            Fault::StallAfter { chunks } => write!(f, "stall-after:{chunks}"),
            Fault::CutAfter { chunks } => write!(f, "cut-after:{chunks}"),
            Fault::Malformed { after } => write!(f, "malformed:{after}"),
            Fault::UnknownEvent { after } => write!(f, "unknown-event:{after}"),
            Fault::Slow { interval_ms } => write!(f, "slow:{interval_ms}"),
            Fault::Oversize { bytes, after } => write!(f, "oversize:{bytes}:{after}"),
            Fault::WrongContentType => f.write_str("wrong-content-type"),
        }
    }
}

/// A fault with the index it applies to: one `--fault` value or one entry of `faults`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultSpec {
    /// Request (HTTP) or connection (WebSocket) index, 0 = the first.
    pub index: usize,
    /// What goes wrong.
    pub fault: Fault,
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.index, self.fault)
    }
}

/// A spec that does not parse: what was wrong, and the expected form.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad fault spec {spec:?}: {problem}; expected {SPEC_FORM}")]
pub struct SpecError {
    /// The text given.
    pub spec: String,
    /// What was wrong with it.
    pub problem: String,
}

fn number<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, String> {
    s.trim().parse().map_err(|_| format!("{what} must be a non-negative whole number, got {s:?}"))
}

fn size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1024),
        Some((i, 'm' | 'M')) => (&s[..i], 1024 * 1024),
        _ => (s, 1),
    };
    let n: usize = number("BYTES", digits)?;
    n.checked_mul(unit).filter(|&b| b > 0).ok_or_else(|| format!("BYTES must be from 1 to usize, got {s:?}"))
}

impl std::str::FromStr for FaultSpec {
    type Err = SpecError;

    fn from_str(spec: &str) -> Result<Self, SpecError> {
        let err = |problem: String| SpecError { spec: spec.to_string(), problem };
        let (index, kind) = spec.split_once('=').ok_or_else(|| err("no `=` after the index".into()))?;
        let index = number("INDEX", index).map_err(err)?;
        let mut parts = kind.trim().split(':');
        let name = parts.next().unwrap_or_default();
        let args: Vec<&str> = parts.collect();
        let arity = |min: usize, max: usize| {
            if args.len() < min || args.len() > max {
                let want = if min == max { format!("{min}") } else { format!("{min} to {max}") };
                Err(err(format!("`{name}` takes {want} argument(s) after `:`, got {}", args.len())))
            } else {
                Ok(())
            }
        };
        let after = |i: usize| args.get(i).map_or(Ok(0), |a| number::<usize>("N", a)).map_err(err);
        let fault = match name {
            "status" => {
                arity(1, 2)?;
                let status: u16 = number("CODE", args[0]).map_err(err)?;
                if !(100..=999).contains(&status) {
                    return Err(err(format!("CODE must be an HTTP status (100 to 999), got {status}")));
                }
                let retry_after_s = match args.get(1) {
                    None => None,
                    Some(a) => {
                        let secs = a.trim().strip_prefix("retry-after=").ok_or_else(|| {
                            err(format!("the second argument of `status` is retry-after=SECS, got {a:?}"))
                        })?;
                        Some(number("SECS", secs).map_err(err)?)
                    }
                };
                Fault::Status { status, retry_after_s }
            }
            "stall-after" => {
                arity(1, 1)?;
                Fault::StallAfter { chunks: number("N", args[0]).map_err(err)? }
            }
            "cut-after" => {
                arity(1, 1)?;
                Fault::CutAfter { chunks: number("N", args[0]).map_err(err)? }
            }
            "malformed" => {
                arity(0, 1)?;
                Fault::Malformed { after: after(0)? }
            }
            "unknown-event" => {
                arity(0, 1)?;
                Fault::UnknownEvent { after: after(0)? }
            }
            "slow" => {
                arity(1, 1)?;
                Fault::Slow { interval_ms: number("MS", args[0]).map_err(err)? }
            }
            "oversize" => {
                arity(1, 2)?;
                Fault::Oversize { bytes: size(args[0]).map_err(err)?, after: after(1)? }
            }
            "wrong-content-type" => {
                arity(0, 0)?;
                Fault::WrongContentType
            }
            other => return Err(err(format!("unknown fault kind {other:?}"))),
        };
        Ok(FaultSpec { index, fault })
    }
}

/// Faults by index.
pub type Faults = BTreeMap<usize, Fault>;

/// Builds the plan of `specs`; an index given twice is an error.
pub fn plan<'a>(specs: impl IntoIterator<Item = &'a FaultSpec>) -> Result<Faults, String> {
    let mut out = Faults::new();
    for s in specs {
        if let Some(prev) = out.insert(s.index, s.fault.clone()) {
            return Err(format!(
                "index {} has two faults ({prev} and {}): give one fault per index",
                s.index, s.fault
            ));
        }
    }
    Ok(out)
}

/// Checks that a fake implements every kind in `faults`: `supported` lists its kinds.
pub fn check(fake: &str, faults: &Faults, supported: &[&str]) -> Result<(), String> {
    for (index, fault) in faults {
        if !supported.contains(&fault.kind()) {
            return Err(format!(
                "fault {index}={fault}: the {fake} fake does not implement `{}` (it implements: {})",
                fault.kind(),
                supported.join(", ")
            ));
        }
    }
    Ok(())
}

/// Serde for a `faults` list in a fake's TOML: `faults = ["0=status:429:retry-after=2", …]`.
pub mod serde_list {
    use super::{FaultSpec, Faults};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Reads the list of specs.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Faults, D::Error> {
        let specs: Vec<String> = Vec::deserialize(d)?;
        let parsed: Vec<FaultSpec> =
            specs.iter().map(|s| s.parse()).collect::<Result<_, _>>().map_err(serde::de::Error::custom)?;
        super::plan(&parsed).map_err(serde::de::Error::custom)
    }

    /// Writes the specs.
    pub fn serialize<S: Serializer>(faults: &Faults, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(faults.iter().map(|(i, f)| format!("{i}={f}")))
    }
}

/// A chunk a fault puts into a stream, in the fake's own framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Injection {
    /// Not valid JSON.
    Malformed,
    /// A type (or field) the protocol does not define.
    Unknown,
    /// A well-formed chunk of about this many bytes.
    Oversize(usize),
}

/// Inserts the chunk `fault` injects (made by `make` in the fake's framing) into `chunks`.
pub(crate) fn inject<T>(chunks: &mut Vec<T>, fault: Option<&Fault>, make: impl FnOnce(Injection) -> T) {
    if let Some((after, what)) = fault.and_then(Fault::injection) {
        chunks.insert(after.min(chunks.len()), make(what));
    }
}

/// Padding for an oversize chunk: `n` ASCII bytes.
pub(crate) fn padding(n: usize) -> String {
    "x".repeat(n)
}

/// The HTML page of [`Fault::WrongContentType`].
pub(crate) const HTML_PAGE: &str =
    "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>\n";

/// The 200 `text/html` answer of [`Fault::WrongContentType`].
pub(crate) fn html_response() -> axum::response::Response {
    use axum::response::IntoResponse;
    (axum::http::StatusCode::OK, [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")], HTML_PAGE)
        .into_response()
}

/// How a faulted stream is paced: the delay before the first chunk and between later ones.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Pace {
    pub first: Duration,
    pub interval: Duration,
}

/// `chunks` as a body stream paced by `pace`, with `fault`'s stall, cut or slow drip applied
/// (injections are [`inject`]ed before). `on_complete` runs when the last chunk is handed over.
/// The stream ends when `stop` is cancelled (a stalled one too).
pub(crate) fn stream(
    chunks: Vec<Bytes>,
    pace: Pace,
    fault: Option<&Fault>,
    stop: CancellationToken,
    on_complete: impl Fn() + Send + Sync + 'static,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let (mut stall, mut cut, mut pace) = (None, None, pace);
    match fault {
        Some(Fault::StallAfter { chunks }) => stall = Some(*chunks),
        Some(Fault::CutAfter { chunks }) => cut = Some(*chunks),
        Some(Fault::Slow { interval_ms }) => {
            let slow = Duration::from_millis(*interval_ms);
            pace = Pace { first: pace.first.max(slow), interval: pace.interval.max(slow) };
        }
        _ => {}
    }
    let len = chunks.len();
    let on_complete = std::sync::Arc::new(on_complete);
    futures_util::stream::unfold((0usize, false), move |(i, done)| {
        let chunk = chunks.get(i).cloned();
        let (stop, on_complete) = (stop.clone(), on_complete.clone());
        async move {
            if done {
                return None;
            }
            if cut.is_some_and(|c| i > c) {
                return Some((Err(std::io::Error::other("fault injection: connection cut")), (i, true)));
            }
            let chunk = chunk?;
            let delay = if i == 0 { pace.first } else { pace.interval };
            tokio::select! {
                () = stop.cancelled() => return None,
                () = tokio::time::sleep(delay) => {}
            }
            if stall == Some(i) {
                stop.cancelled().await;
                return None;
            }
            if cut == Some(i) {
                // Half the chunk, then an error: hyper drops the connection mid-body.
                let half = chunk.slice(..chunk.len() / 2);
                return Some((Ok(half), (i + 1, false)));
            }
            if i + 1 == len {
                on_complete();
            }
            Some((Ok(chunk), (i + 1, false)))
        }
    })
}

/// Bytes per chunk of a one-piece body (a JSON answer): `cut-after:N` and `stall-after:N`
/// count groups of this many bytes.
pub const BODY_CHUNK_BYTES: usize = 16;

/// A JSON answer of one piece with `fault` applied: `malformed` cuts it short, `unknown-event`
/// adds a field the API does not define, `oversize` pads it to about `bytes`,
/// `wrong-content-type` answers HTML; stall, cut and slow drip apply to its
/// [`BODY_CHUNK_BYTES`] groups. `body` must be a JSON object for the field faults.
pub(crate) fn json_response(
    status: axum::http::StatusCode,
    mut body: serde_json::Value,
    fault: Option<&Fault>,
) -> axum::response::Response {
    let text = match fault {
        Some(Fault::WrongContentType) => return html_response(),
        Some(Fault::UnknownEvent { .. }) => {
            body["x_fake_unknown"] = serde_json::json!({"note": "a field this API does not define"});
            body.to_string()
        }
        Some(Fault::Oversize { bytes, .. }) => {
            body["x_fake_padding"] = serde_json::Value::String(padding(*bytes));
            body.to_string()
        }
        Some(Fault::Malformed { .. }) => {
            let t = body.to_string();
            t[..t.len() / 2].to_string()
        }
        _ => body.to_string(),
    };
    body_response(status, "application/json", Bytes::from(text), fault)
}

/// A body of one piece, sent in [`BODY_CHUNK_BYTES`] groups when `fault` stalls, cuts or
/// drips it, in one piece otherwise.
pub(crate) fn body_response(
    status: axum::http::StatusCode,
    content_type: &'static str,
    body: Bytes,
    fault: Option<&Fault>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let ct = [(axum::http::header::CONTENT_TYPE, content_type)];
    if !matches!(fault, Some(Fault::StallAfter { .. } | Fault::CutAfter { .. } | Fault::Slow { .. })) {
        return (status, ct, body).into_response();
    }
    let n = BODY_CHUNK_BYTES;
    let chunks = (0..body.len()).step_by(n).map(|i| body.slice(i..(i + n).min(body.len()))).collect();
    // Nothing stops a stalled body but the client leaving.
    let stream = stream(chunks, Pace::default(), fault, CancellationToken::new(), || {});
    (status, ct, axum::body::Body::from_stream(stream)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<FaultSpec, SpecError> {
        s.parse()
    }

    #[test]
    fn every_kind_parses_and_prints_back() {
        let cases = [
            ("0=status:429:retry-after=2", Fault::Status { status: 429, retry_after_s: Some(2) }),
            ("3=status:503", Fault::Status { status: 503, retry_after_s: None }),
            ("1=cut-after:3", Fault::CutAfter { chunks: 3 }),
            ("1=stall-after:0", Fault::StallAfter { chunks: 0 }),
            ("2=malformed", Fault::Malformed { after: 0 }),
            ("2=malformed:4", Fault::Malformed { after: 4 }),
            ("0=unknown-event:1", Fault::UnknownEvent { after: 1 }),
            ("0=slow:250", Fault::Slow { interval_ms: 250 }),
            ("0=oversize:5m", Fault::Oversize { bytes: 5 << 20, after: 0 }),
            ("0=oversize:64k:2", Fault::Oversize { bytes: 64 << 10, after: 2 }),
            ("7=wrong-content-type", Fault::WrongContentType),
        ];
        for (text, fault) in cases {
            let spec = parse(text).unwrap();
            assert_eq!(spec.fault, fault, "{text}");
            let again = parse(&spec.to_string()).unwrap();
            assert_eq!(again, spec, "{text} prints as {spec}");
        }
        assert_eq!(ALL_KINDS.len(), 8);
    }

    #[test]
    fn bad_specs_say_what_is_wrong_and_the_expected_form() {
        for (text, problem) in [
            ("status:429", "no `=` after the index"),
            ("x=status:429", "INDEX must be a non-negative whole number"),
            ("0=status", "`status` takes 1 to 2 argument(s)"),
            ("0=status:42", "CODE must be an HTTP status"),
            ("0=status:429:wait=2", "retry-after=SECS"),
            ("0=cut-after:-1", "N must be a non-negative whole number"),
            ("0=explode", "unknown fault kind \"explode\""),
            ("0=wrong-content-type:1", "`wrong-content-type` takes 0 argument(s)"),
            ("0=oversize:0", "BYTES must be from 1"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(problem) && e.contains("expected INDEX=KIND"), "{text}: {e}");
        }
    }

    #[test]
    fn plans_refuse_two_faults_on_one_index_and_fakes_name_what_they_lack() {
        let specs: Vec<FaultSpec> = ["0=slow:5", "0=malformed"].iter().map(|s| s.parse().unwrap()).collect();
        assert!(plan(&specs).unwrap_err().contains("index 0 has two faults"));
        let faults = plan(&specs[..1]).unwrap();
        let e = check("tools", &faults, &["status"]).unwrap_err();
        assert!(e.contains("the tools fake does not implement `slow`"), "{e}");
        assert!(check("tools", &faults, &["slow"]).is_ok());
    }

    #[test]
    fn a_toml_list_reads_into_a_plan() {
        #[derive(serde::Deserialize, serde::Serialize)]
        struct File {
            #[serde(with = "serde_list")]
            faults: Faults,
        }
        let f: File = toml::from_str("faults = [\"0=status:429:retry-after=2\", \"2=cut-after:1\"]").unwrap();
        assert_eq!(f.faults[&2], Fault::CutAfter { chunks: 1 });
        let text = toml::to_string(&f).unwrap();
        assert!(text.contains("0=status:429:retry-after=2"), "{text}");
        let e = toml::from_str::<File>("faults = [\"0=nope\"]").err().unwrap().to_string();
        assert!(e.contains("unknown fault kind"), "{e}");
    }
}
