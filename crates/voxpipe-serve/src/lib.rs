//! `voxpipe serve`: one process, many live phone calls, each its own pipeline instance.
//!
//! # Endpoints
//! - `POST /twilio/voice[/{pipeline}]` (signed by Twilio): picks the call's pipeline and
//!   answers `<Connect><Stream>`; busy or draining: `<Say>` + `<Hangup>` (or `<Reject>`).
//! - `GET /twilio/media` (signed upgrade): the Media Streams WebSocket; one call.
//! - `GET /healthz`, `GET /readyz` (503 while draining): open, they carry no data.
//! - `GET /metrics` (bearer: an API key or the metrics key), `GET /calls` (bearer: API key).
//! - `GET /`, `POST /web/session`, `GET /web/config`, `POST /webrtc/offer`: the voice page and
//!   browser calls over WebRTC ([`web`]).
//!
//! # Layout
//! - [`config`]: the serve file.
//! - [`routing`]: which pipeline a call gets.
//! - [`call`]: one live call, from stream start to summary.
//! - [`metrics`]: Prometheus metrics.
//! - [`webhook`]: signed post-call webhooks.
//! - [`web`]: the page, its session tokens and WebRTC calls.

pub mod call;
pub mod config;
pub mod direct;
pub mod metrics;
pub mod routing;
pub mod web;
pub mod webhook;

use axum::Router;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{Path as AxPath, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use voxpipe_core::Secret;
use voxpipe_twilio::signature;
use voxpipe_twilio::transport::SocketIn;
use voxpipe_twilio::twiml;

/// Secrets read from the environment at start.
#[derive(Debug)]
pub struct Secrets {
    /// Twilio account SID.
    pub account_sid: String,
    /// Twilio auth token.
    pub auth_token: Secret,
    /// Accepted operator keys.
    pub api_keys: Vec<Secret>,
    /// Accepted on `/metrics` too.
    pub metrics_key: Option<Secret>,
}

impl Secrets {
    /// Reads every secret the serve file names from `env`.
    pub fn from_env(c: &config::ServeConfig, env: &voxpipe_config::Env) -> anyhow::Result<Self> {
        let need = |var: &str, key: &str| -> anyhow::Result<Secret> {
            env.var(var)
                .filter(|v| !v.is_empty())
                .map(Secret::new)
                .ok_or_else(|| anyhow::anyhow!("key `{key}`: environment variable {var} is not set"))
        };
        Ok(Self {
            account_sid: need(&c.twilio.account_sid_env, "twilio.account_sid_env")?.expose().to_string(),
            auth_token: need(&c.twilio.auth_token_env, "twilio.auth_token_env")?,
            api_keys: c
                .auth
                .api_keys_env
                .iter()
                .enumerate()
                .map(|(i, v)| need(v, &format!("auth.api_keys_env[{i}]")))
                .collect::<Result<_, _>>()?,
            metrics_key: c
                .auth
                .metrics_key_env
                .as_deref()
                .map(|v| need(v, "auth.metrics_key_env"))
                .transpose()?,
        })
    }
}

/// A call in progress, as the server lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LiveCall {
    /// Twilio's call SID.
    pub call_sid: String,
    /// The pipeline.
    pub pipeline: String,
    /// How it was picked.
    pub assigned_by: String,
    /// Caller number.
    pub from: String,
    /// Unix seconds.
    pub started_at: u64,
    #[serde(skip)]
    cancel: CancellationToken,
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct App {
    /// The serve file and its pipelines.
    pub loaded: config::Loaded,
    /// Secrets.
    pub secrets: Secrets,
    /// Environment for pipeline secrets.
    pub env: voxpipe_config::Env,
    /// Metrics.
    pub metrics: Arc<metrics::Metrics>,
    /// Calls answered but not yet streaming, and calls streaming.
    active: AtomicUsize,
    calls: Mutex<HashMap<String, LiveCall>>,
    draining: AtomicBool,
    /// The Twilio REST client.
    pub rest: voxpipe_twilio::rest::RestClient,
    /// Post-call webhook.
    pub webhook: Option<webhook::Webhook>,
    router: routing::Router,
    /// Cancelled when every call has ended after a drain.
    pub stopped: CancellationToken,
    /// The browser page's tokens and limits.
    pub web: web::Web,
    /// Browser-direct Realtime sessions.
    pub direct: direct::Direct,
}

impl App {
    /// Builds the shared state; fails on a missing secret.
    pub fn new(loaded: config::Loaded, env: voxpipe_config::Env) -> anyhow::Result<Arc<Self>> {
        let secrets = Secrets::from_env(&loaded.config, &env)?;
        let rest = voxpipe_twilio::rest::RestClient::new(
            &loaded.config.twilio.api_base_url,
            &secrets.account_sid,
            secrets.auth_token.clone(),
        );
        let webhook = match &loaded.config.webhook {
            Some(w) => {
                let secret = env.var(&w.secret_env).filter(|v| !v.is_empty()).ok_or_else(|| {
                    anyhow::anyhow!(
                        "key `webhook.secret_env`: environment variable {} is not set",
                        w.secret_env
                    )
                })?;
                Some(webhook::Webhook::new(w, Secret::new(secret)))
            }
            None => None,
        };
        if let Some(dir) = &loaded.config.recordings_dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("key `recordings_dir`: cannot create {}: {e}", dir.display()))?;
        }
        let router = routing::Router::new(&loaded.config);
        let web = web::Web::new(&loaded.config.web, &env)?;
        Ok(Arc::new(Self {
            loaded,
            secrets,
            env,
            metrics: Arc::new(metrics::Metrics::default()),
            active: AtomicUsize::new(0),
            calls: Mutex::default(),
            draining: AtomicBool::new(false),
            rest,
            webhook,
            router,
            stopped: CancellationToken::new(),
            web,
            direct: direct::Direct::default(),
        }))
    }

    /// The router of every endpoint.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/twilio/voice", post(voice))
            .route("/twilio/voice/{pipeline}", post(voice_named))
            .route("/twilio/media", get(media))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics_endpoint))
            .route("/calls", get(list_calls))
            .route("/", get(web::page))
            .route("/web/session", post(web::mint))
            .route("/web/config", get(web::config))
            .route("/webrtc/offer", post(web::offer))
            .route("/web/socket", get(web::socket))
            .route("/web/realtime/session", post(direct::session))
            .route("/web/realtime/tool", post(direct::tool))
            .with_state(self.clone())
    }

    /// Calls in progress.
    pub fn active_calls(&self) -> usize {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True once a drain has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Stops taking calls, lets live ones finish up to the drain timeout, then ends the rest
    /// cleanly (recordings and logs flushed) and returns.
    pub async fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        let timeout = Duration::from_secs(self.loaded.config.drain.timeout_secs);
        info!(active = self.active_calls(), timeout_secs = timeout.as_secs(), "draining: no new calls");
        let deadline = tokio::time::Instant::now() + timeout;
        while self.active.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let left: Vec<LiveCall> =
            self.calls.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        if !left.is_empty() {
            warn!(calls = left.len(), "drain timeout: ending the remaining calls");
            for c in &left {
                c.cancel.cancel();
            }
            let grace = tokio::time::Instant::now() + Duration::from_secs(10);
            while self.active.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < grace {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        info!("drained");
        self.stopped.cancel();
    }

    fn public_url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.loaded.config.public_url.trim_end_matches('/'))
    }

    fn media_url(&self) -> String {
        let base = self.loaded.config.public_url.trim_end_matches('/');
        let ws = if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else {
            format!("ws://{}", base.trim_start_matches("http://"))
        };
        format!("{ws}/twilio/media")
    }

    /// Bearer check for operator endpoints.
    pub(crate) fn authorized(&self, headers: &HeaderMap, allow_metrics_key: bool) -> bool {
        use subtle::ConstantTimeEq;
        let Some(given) = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let mut ok = false;
        let keys =
            self.secrets.api_keys.iter().chain(self.secrets.metrics_key.iter().filter(|_| allow_metrics_key));
        for k in keys {
            ok |= bool::from(k.expose().as_bytes().ct_eq(given.as_bytes()));
        }
        ok
    }

    fn refuse(&self, kind: &str, why: &str) -> Response {
        // Logged without the body: it may be forged, and it is the caller's data.
        warn!(endpoint = kind, reason = why, "request refused");
        self.metrics.auth_failures_total.get_or_create(&metrics::KindLabel { kind: kind.into() }).inc();
        (StatusCode::FORBIDDEN, "forbidden").into_response()
    }

    /// Reserves a call slot; `None` when full or draining.
    pub(crate) fn reserve(self: &Arc<Self>) -> Option<Slot> {
        if self.is_draining() {
            return None;
        }
        let max = self.loaded.config.limits.max_calls;
        self.active
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| Slot(self.clone()))
    }
}

/// One reserved call slot; released when dropped.
#[derive(Debug)]
pub struct Slot(Arc<App>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

fn twiml_response(xml: String) -> Response {
    ([(http::header::CONTENT_TYPE, "text/xml; charset=utf-8")], xml).into_response()
}

async fn voice_named(
    State(app): State<Arc<App>>,
    AxPath(pipeline): AxPath<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    answer(app, Some(pipeline), q, headers, body).await
}

async fn voice(
    State(app): State<Arc<App>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    answer(app, None, q, headers, body).await
}

/// The voice webhook: check the signature, pick a pipeline, answer with the stream.
async fn answer(
    app: Arc<App>,
    route: Option<String>,
    query: Option<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let path = match &route {
        Some(r) => format!("/twilio/voice/{r}"),
        None => "/twilio/voice".to_string(),
    };
    let url = app.public_url(&match &query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    });
    let sig = headers.get(signature::HEADER).and_then(|v| v.to_str().ok());
    let form: Vec<(String, String)> = match serde_urlencoded::from_bytes(&body) {
        Ok(f) => f,
        Err(_) => return app.refuse("twilio/voice", "body is not a form"),
    };
    if let Err(e) = signature::validate(app.secrets.auth_token.expose(), &url, &form, sig) {
        return app.refuse("twilio/voice", &e.to_string());
    }
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).unwrap_or("");
    let query_pipeline = query
        .as_deref()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .and_then(|q| q.into_iter().find(|(k, _)| k == "pipeline").map(|(_, v)| v));
    let from = get("From").to_string();
    let Some(pick) = app.router.pick(route.as_deref().or(query_pipeline.as_deref()), &from) else {
        warn!(route = ?route, "no such pipeline");
        return (StatusCode::NOT_FOUND, "no such pipeline").into_response();
    };
    if app.is_draining() || app.active.load(Ordering::SeqCst) >= app.loaded.config.limits.max_calls {
        info!(call_sid = get("CallSid"), draining = app.is_draining(), "busy: call refused politely");
        app.metrics
            .calls_total
            .get_or_create(&metrics::OutcomeLabels {
                pipeline: pick.pipeline.clone(),
                outcome: "rejected_busy".into(),
            })
            .inc();
        let t = &app.loaded.config.twilio;
        return twiml_response(if t.reject_when_busy {
            twiml::reject_busy()
        } else {
            twiml::say_and_hang_up(&t.busy_message)
        });
    }
    info!(call_sid = get("CallSid"), pipeline = %pick.pipeline, by = %pick.by, "call answered");
    let params = vec![
        ("pipeline".to_string(), pick.pipeline),
        ("assigned_by".to_string(), pick.by),
        ("from".to_string(), from),
    ];
    twiml_response(twiml::connect_stream(&app.media_url(), &params))
}

async fn media(State(app): State<Arc<App>>, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    let sig = headers.get(signature::HEADER).and_then(|v| v.to_str().ok());
    if let Err(e) = signature::validate(app.secrets.auth_token.expose(), &app.media_url(), &[], sig) {
        return app.refuse("twilio/media", &e.to_string());
    }
    let Some(slot) = app.reserve() else {
        warn!("media stream refused: full or draining");
        return (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response();
    };
    let max = app.loaded.config.limits.max_message_bytes;
    ws.max_message_size(max).max_frame_size(max).on_upgrade(move |socket| async move {
        let (mut ws_tx, mut ws_rx) = socket.split();
        let (in_tx, in_rx) = mpsc::channel::<SocketIn>(64);
        let (out_tx, mut out_rx) = mpsc::channel::<String>(256);
        let idle = Duration::from_secs(app.loaded.config.limits.idle_timeout_secs);
        let reader = tokio::spawn(async move {
            loop {
                let msg = match tokio::time::timeout(idle, ws_rx.next()).await {
                    Err(_) => SocketIn::Closed(format!("idle: nothing for {} s", idle.as_secs())),
                    Ok(Some(Ok(Message::Text(t)))) => SocketIn::Text(t.to_string()),
                    Ok(Some(Ok(Message::Binary(b)))) => SocketIn::Binary(b.len()),
                    Ok(Some(Ok(Message::Close(_)))) | Ok(None) => {
                        SocketIn::Closed("closed by the carrier".into())
                    }
                    Ok(Some(Ok(_))) => continue,
                    Ok(Some(Err(e))) => SocketIn::Closed(e.to_string()),
                };
                let last = matches!(msg, SocketIn::Closed(_));
                if in_tx.send(msg).await.is_err() || last {
                    break;
                }
            }
        });
        let writer = tokio::spawn(async move {
            while let Some(text) = out_rx.recv().await {
                if ws_tx.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            let _ = ws_tx.send(Message::Close(None)).await;
        });
        call::run(app, slot, in_rx, out_tx).await;
        reader.abort();
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    })
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response()
    } else {
        "ready".into_response()
    }
}

async fn metrics_endpoint(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if !app.authorized(&headers, true) {
        return app.refuse("metrics", "missing or wrong bearer key");
    }
    (
        [(http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        app.metrics.encode(),
    )
        .into_response()
}

async fn list_calls(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if !app.authorized(&headers, false) {
        return app.refuse("calls", "missing or wrong bearer key");
    }
    let calls: Vec<LiveCall> =
        app.calls.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
    axum::Json(calls).into_response()
}

/// Serves until SIGTERM (or Ctrl-C, or `stop`), then drains. Returns the bound address
/// through `bound` as soon as it listens.
pub async fn serve(
    app: Arc<App>,
    stop: CancellationToken,
    bound: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&app.loaded.config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("key `listen`: cannot listen on {}: {e}", app.loaded.config.listen))?;
    serve_on(app, listener, stop, bound).await
}

/// As [`serve`], on a listener the caller bound (tests bind first to know the public URL).
pub async fn serve_on(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    stop: CancellationToken,
    bound: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    info!(%addr, public_url = %app.loaded.config.public_url, pipelines = app.loaded.pipelines.len(), "listening");
    if let Some(b) = bound {
        let _ = b.send(addr);
    }
    let router = app.router();
    let server = tokio::spawn(async move {
        let _ =
            axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>()).await;
    });
    let sigterm = async {
        #[cfg(unix)]
        {
            if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                s.recv().await;
                return;
            }
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        () = sigterm => info!("SIGTERM"),
        _ = tokio::signal::ctrl_c() => info!("interrupted"),
        () = stop.cancelled() => {}
    }
    app.drain().await;
    server.abort();
    Ok(())
}
