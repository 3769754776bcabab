//! The `http` handler: the arguments as a JSON body (or query for `GET`/`DELETE`), the response
//! body as the result, retries for idempotent tools only.

use crate::Error;
use crate::config::{HttpHandlerConfig, HttpMethod};
use crate::error::excerpt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::time::Duration;
use voxpipe_core::{MissingSecret, Secret};

/// First retry delay; doubles per attempt.
const RETRY_BASE: Duration = Duration::from_millis(200);
/// Longest delay between attempts.
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Longest `Retry-After` honoured; past it the retry waits this long (the tool's timeout may
/// end the call first, which the model hears as a timeout).
const RETRY_AFTER_MAX: Duration = Duration::from_secs(10);

/// A configured HTTP endpoint. `Debug` shows secret header names only.
pub(crate) struct HttpHandler {
    client: reqwest::Client,
    url: url::Url,
    method: HttpMethod,
    headers: HeaderMap,
    secret_headers: Vec<(HeaderName, Secret)>,
    retries: u32,
    /// Stop reading the body past this many bytes (the result is cut to it anyway).
    max_body_bytes: usize,
}

impl std::fmt::Debug for HttpHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpHandler")
            .field("method", &self.method)
            .field("url", &self.url.as_str())
            .field("headers", &self.headers)
            .field("secret_headers", &self.secret_headers)
            .field("retries", &self.retries)
            .finish()
    }
}

impl HttpHandler {
    /// Builds the handler of tool `name`, reading secret header values through `env`.
    pub(crate) fn build(
        name: &str,
        c: &HttpHandlerConfig,
        idempotent: bool,
        max_body_bytes: usize,
        client: reqwest::Client,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        let key = format!("tools.{name}.handler");
        let invalid = |k: &str, message: String| Error::InvalidConfig { key: format!("{key}.{k}"), message };
        let url =
            url::Url::parse(&c.url).map_err(|e| invalid("url", format!("not a URL ({e}): {}", c.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("url", format!("expected an http or https URL, got {}", c.url)));
        }
        if c.retries > 0 && !idempotent {
            return Err(invalid(
                "retries",
                "retries are only allowed on tools marked `idempotent = true` (a retried booking may book twice)"
                    .into(),
            ));
        }
        let mut headers = HeaderMap::new();
        for (n, v) in &c.headers {
            let hn = HeaderName::from_bytes(n.as_bytes())
                .map_err(|_| invalid("headers", format!("`{n}` is not a valid header name")))?;
            let hv = HeaderValue::from_str(v)
                .map_err(|_| invalid("headers", format!("the value of `{n}` is not a valid header value")))?;
            headers.insert(hn, hv);
        }
        // A secret over plain HTTP is readable by every hop on the way; only a loopback peer
        // (a sidecar, a test server) is exempt.
        let loopback = match url.host() {
            Some(url::Host::Ipv4(a)) => a.is_loopback(),
            Some(url::Host::Ipv6(a)) => a.is_loopback(),
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            None => false,
        };
        if !c.secret_headers.is_empty() && url.scheme() == "http" && !loopback {
            return Err(invalid(
                "url",
                format!("secret headers are sent only over https (or to a loopback address), got {}", c.url),
            ));
        }
        let mut secret_headers = Vec::new();
        for (n, var) in &c.secret_headers {
            let k = format!("{key}.secret_headers.{n}");
            let hn = HeaderName::from_bytes(n.as_bytes()).map_err(|_| Error::InvalidConfig {
                key: k.clone(),
                message: format!("`{n}` is not a valid header name"),
            })?;
            let secret = match env(var) {
                Some(v) if !v.is_empty() => Secret::new(v),
                _ => return Err(MissingSecret { var: var.clone(), key: k }.into()),
            };
            if HeaderValue::from_str(secret.expose()).is_err() {
                return Err(Error::InvalidConfig {
                    key: k,
                    message: format!("the value of environment variable `{var}` is not a valid header value"),
                });
            }
            secret_headers.push((hn, secret));
        }
        Ok(Self {
            client,
            url,
            method: c.method,
            headers,
            secret_headers,
            retries: c.retries,
            max_body_bytes,
        })
    }

    /// Calls the endpoint, retrying transient failures up to `retries` times.
    pub(crate) async fn call(&self, args: &serde_json::Value) -> Result<String, Error> {
        let mut attempt = 0;
        loop {
            match self.attempt(args).await {
                Err(e) if e.is_retryable() && attempt < self.retries => {
                    let delay = match &e {
                        // The endpoint said when; the tool's own timeout still bounds the call.
                        Error::HttpStatus { retry_after: Some(wait), .. } => *wait,
                        _ => RETRY_BASE.saturating_mul(1 << attempt.min(8)).min(RETRY_MAX),
                    };
                    tracing::debug!(url = %self.url, attempt, error = %e, "tool request failed; retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn attempt(&self, args: &serde_json::Value) -> Result<String, Error> {
        let c = &self.client;
        let req = match self.method {
            HttpMethod::Post => c.post(self.url.clone()).json(args),
            HttpMethod::Put => c.put(self.url.clone()).json(args),
            HttpMethod::Patch => c.patch(self.url.clone()).json(args),
            HttpMethod::Get => c.get(self.query_url(args)),
            HttpMethod::Delete => c.delete(self.query_url(args)),
        };
        let mut req = req.headers(self.headers.clone());
        for (name, secret) in &self.secret_headers {
            let mut value =
                HeaderValue::from_str(secret.expose()).expect("checked when the handler was built");
            value.set_sensitive(true);
            req = req.header(name.clone(), value);
        }
        let mut resp = req.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| voxpipe_core::time::retry_after(v, RETRY_AFTER_MAX));
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport_error(e))? {
            body.extend_from_slice(&chunk);
            if body.len() > self.max_body_bytes {
                break; // enough to fill (and mark as cut) the result
            }
        }
        let body = String::from_utf8_lossy(&body).into_owned();
        if !status.is_success() {
            return Err(Error::HttpStatus { status: status.as_u16(), body: excerpt(&body), retry_after });
        }
        Ok(body)
    }

    /// The URL with the top-level arguments as query parameters (strings as is, other values as
    /// JSON text).
    fn query_url(&self, args: &serde_json::Value) -> url::Url {
        let mut url = self.url.clone();
        if let Some(obj) = args.as_object().filter(|o| !o.is_empty()) {
            let mut q = url.query_pairs_mut();
            for (k, v) in obj {
                match v {
                    serde_json::Value::String(s) => q.append_pair(k, s),
                    other => q.append_pair(k, &other.to_string()),
                };
            }
        }
        url
    }

    /// A transport error with its cause chain, the URL last (without query: arguments may be
    /// personal data).
    fn transport_error(&self, e: reqwest::Error) -> Error {
        let e = e.without_url();
        let mut message = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            message.push_str(": ");
            message.push_str(&c.to_string());
            cause = c.source();
        }
        let url = format!("{}{}", self.url.origin().ascii_serialization(), self.url.path());
        Error::Http { message: format!("{message} ({url})") }
    }
}
