//! Sending a request with bounded retries, raced against interruption and cancellation.
//!
//! Retries happen only before the response body starts: 429 (honouring `Retry-After`, in
//! seconds), 5xx and transport errors. 401/403 are fatal. Once the body has started, nothing is
//! retried, since the text may already have been spoken.

use crate::Error;
use crate::driver::Provider;
use crate::error::excerpt;
use std::future::Future;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use voxpipe_core::time::{backoff, retry_after};
use voxpipe_core::{CallContext, Control, Frame, Outbox};

/// Longest `Retry-After` honoured; a provider asking for more gets a reported error sooner.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Retries and timeouts of an HTTP LLM provider: the `[stages.http]` table of `llm.openai` and
/// `llm.anthropic`.
///
/// ```toml
/// [[stages]]
/// kind = "llm.openai"
/// [stages.http]
/// max_retries = 4
/// stall_timeout_ms = 5000
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Retries of a request answered 429, 5xx (Anthropic's 529 overloaded included) or not at
    /// all; never once the body started. Default: 2.
    pub max_retries: u32,
    /// First retry delay in ms, doubled each retry (up to 32 times); a `Retry-After` header
    /// wins. Default: 500.
    pub retry_backoff_ms: u64,
    /// Time allowed to connect and receive the response headers, ms. Default: 10000.
    pub request_timeout_ms: u64,
    /// Longest gap between two SSE events before the response fails, ms. Default: 10000.
    pub stall_timeout_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { max_retries: 2, retry_backoff_ms: 500, request_timeout_ms: 10_000, stall_timeout_ms: 10_000 }
    }
}

/// Why a wait ended early.
#[derive(Debug)]
pub(crate) enum Abort {
    /// `Control::Interrupt` arrived, with what the caller had heard of the item playing.
    Interrupted(Option<voxpipe_core::PlayedItem>),
    /// The call was cancelled or downstream is gone.
    Stop,
    /// The request failed for good.
    Failed(Error),
}

/// The call's cancellation token and this stage's control-bus subscription.
#[derive(Debug)]
pub(crate) struct Signals {
    pub cancel: CancellationToken,
    pub control: broadcast::Receiver<Control>,
}

impl Signals {
    pub fn new(ctx: &CallContext) -> Self {
        Self { cancel: ctx.cancel.clone(), control: ctx.control.subscribe() }
    }

    /// Awaits `fut` unless the call is cancelled (`Abort::Stop`) or an interrupt arrives
    /// (`Abort::Interrupted`; `fut` is dropped). Other control messages are skipped.
    pub async fn race<F: Future>(&mut self, fut: F) -> Result<F::Output, Abort> {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => return Err(Abort::Stop),
                msg = self.control.recv() => match msg {
                    Ok(Control::Interrupt { played, .. }) => return Err(Abort::Interrupted(played)),
                    Err(broadcast::error::RecvError::Closed) => return Err(Abort::Stop),
                    _ => {}
                },
                out = &mut fut => return Ok(out),
            }
        }
    }

    /// Sends a frame that interruption does not discard, unless the call is cancelled.
    pub async fn send(&self, out: &Outbox, frame: Frame) -> Result<(), Abort> {
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => Err(Abort::Stop),
            r = out.send(frame) => r.map_err(|_| Abort::Stop),
        }
    }
}

/// Sends `body`, retrying what may succeed later, and returns a successful response whose
/// body has not been read yet.
pub(crate) async fn send_with_retries<P: Provider>(
    provider: &P,
    client: &reqwest::Client,
    body: &serde_json::Value,
    sig: &mut Signals,
) -> Result<reqwest::Response, Abort> {
    let s = provider.settings();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let request = provider.request(client, body).send();
        let error = match sig.race(tokio::time::timeout(s.request_timeout, request)).await? {
            Ok(Ok(response)) if response.status().is_success() => return Ok(response),
            Ok(Ok(response)) => {
                let (error, retry_after) = status_error(provider, response, attempt, sig).await?;
                if error.is_fatal() || !error.is_retryable() || attempt > s.max_retries {
                    return Err(Abort::Failed(error));
                }
                let wait = retry_after.unwrap_or_else(|| backoff(s.retry_backoff, attempt));
                Some((error, wait))
            }
            Ok(Err(e)) => {
                Some((connect_error::<P>(e.to_string(), attempt), backoff(s.retry_backoff, attempt)))
            }
            Err(_) => {
                let message = format!("no response headers within {:?}", s.request_timeout);
                Some((connect_error::<P>(message, attempt), backoff(s.retry_backoff, attempt)))
            }
        };
        if let Some((error, wait)) = error {
            if attempt > s.max_retries {
                return Err(Abort::Failed(error));
            }
            warn!(%error, ?wait, attempt, "request failed; retrying");
            sig.race(tokio::time::sleep(wait)).await?;
        }
    }
}

fn connect_error<P: Provider>(message: String, attempts: u32) -> Error {
    Error::Connect { provider: P::NAME, attempts, message }
}

/// Reads an error response into an [`Error`] and its `Retry-After`, if any.
async fn status_error<P: Provider>(
    provider: &P,
    response: reqwest::Response,
    attempts: u32,
    sig: &mut Signals,
) -> Result<(Error, Option<Duration>), Abort> {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry_after(v, MAX_RETRY_AFTER));
    let timeout = provider.settings().request_timeout;
    let text = match sig.race(tokio::time::timeout(timeout, response.text())).await? {
        Ok(Ok(text)) => Some(text),
        _ => None,
    };
    let retry_after = retry_after.or_else(|| {
        let hinted = provider.retry_delay(text.as_deref()?)?;
        Some(hinted.min(MAX_RETRY_AFTER))
    });
    let refused = provider.key_refused(status, text.as_deref().unwrap_or_default());
    let body = text.as_deref().map_or_else(|| String::from("(body unreadable)"), excerpt);
    debug!(status, ?retry_after, "error response");
    let error = match status {
        _ if refused => Error::Auth { provider: P::NAME, status, body, api_key_env: provider.key_hint() },
        429 => Error::RateLimited { provider: P::NAME, attempts, body },
        _ => Error::Status { provider: P::NAME, status, attempts, body },
    };
    Ok((error, retry_after))
}
