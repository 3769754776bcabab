//! Serving a fake's router on loopback.

use axum::Router;
use axum::serve::ListenerExt;
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;

/// The address fakes bind by default: loopback, a free port.
pub(crate) fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Binds `addr` and serves `router` until `stop` is cancelled (open streams are cut then: a
/// fake that is stopped mid-call behaves like a server that went away).
///
/// Accepted sockets get `TCP_NODELAY`, like real streaming APIs: without it Nagle's algorithm
/// holds small SSE events back until the previous one is acknowledged (up to 40 ms of delayed
/// ACK on loopback), which skews measured latencies and, on a paused test clock, lets the
/// clock jump past a stall timeout while an event sits in the kernel.
pub(crate) async fn serve(
    addr: SocketAddr,
    router: Router,
    stop: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "fake server: cannot set TCP_NODELAY");
        }
    });
    let task = tokio::spawn(async move {
        tokio::select! {
            _ = axum::serve(listener, router) => {}
            () = stop.cancelled() => {}
        }
    });
    Ok((addr, task))
}

/// A fake serving on loopback: where it listens, and the means to stop it. Every HTTP fake
/// holds one; dropping it stops the server.
#[derive(Debug)]
pub(crate) struct Running {
    addr: SocketAddr,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Serves `router` on `addr` until `stop` is cancelled (by [`Running::stop`], on drop, or
    /// by whoever else holds the token).
    pub(crate) async fn start(
        addr: SocketAddr,
        router: Router,
        stop: CancellationToken,
    ) -> std::io::Result<Self> {
        let (addr, task) = serve(addr, router, stop.clone()).await?;
        Ok(Self { addr, stop, task: Some(task) })
    }

    /// The bound address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:port/v1`: the `base_url` of a client of an OpenAI-shaped API.
    pub(crate) fn v1_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Stops serving (open streams are cut).
    pub(crate) fn cancel(&self) {
        self.stop.cancel();
    }

    /// Stops serving and waits for the server task.
    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// An error response in the shape every OpenAI API uses:
/// `{"error": {"message", "type", "param", "code"}}`, as JSON.
pub(crate) fn openai_error(
    status: axum::http::StatusCode,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body =
        serde_json::json!({ "error": { "message": message, "type": kind, "param": param, "code": code } });
    (status, axum::Json(body)).into_response()
}

/// OpenAI's Bearer authentication: `Authorization: Bearer <key>` with `key` (any key when `key`
/// is `None`), refused with OpenAI's 401 bodies (no key; a wrong key).
#[allow(clippy::result_large_err, reason = "fake request path: the error is the HTTP response to send")]
pub(crate) fn openai_bearer(
    headers: &axum::http::HeaderMap,
    key: Option<&str>,
) -> Result<(), axum::response::Response> {
    let auth = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let unauthorized = axum::http::StatusCode::UNAUTHORIZED;
    match (auth.and_then(|a| a.strip_prefix("Bearer ")), key) {
        (None, _) => {
            let msg = "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).";
            Err(openai_error(unauthorized, msg, "invalid_request_error", None, None))
        }
        (Some(got), Some(want)) if got != want => {
            let msg = "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.";
            Err(openai_error(unauthorized, msg, "invalid_request_error", None, Some("invalid_api_key")))
        }
        _ => Ok(()),
    }
}

/// OpenAI's 404 for a model the service does not have.
pub(crate) fn openai_model_not_found(model: &str) -> axum::response::Response {
    let msg = format!("The model `{model}` does not exist or you do not have access to it.");
    openai_error(
        axum::http::StatusCode::NOT_FOUND,
        &msg,
        "invalid_request_error",
        None,
        Some("model_not_found"),
    )
}
