//! Browser-direct native calls: the page talks to OpenAI Realtime over WebRTC itself, and the
//! operator's API key never leaves the server.
//!
//! 1. The page, holding a session token, asks `POST /web/realtime/session` for a pipeline.
//! 2. The server mints a Realtime client secret (`POST {api}/realtime/client_secrets` with the
//!    pipeline's API key), attaching the pipeline's session: instructions, voice, tools, turn
//!    detection, transcription, with a lifetime of `web.direct_secret_ttl_secs`. It answers
//!    the page with the secret (`ek_…`), its expiry, the calls URL and a direct-session id
//!    bound to the page's token.
//! 3. The page posts its SDP offer to `{api}/realtime/calls` with `Authorization: Bearer ek_…`
//!    and talks to the model; events come on the `oai-events` data channel.
//! 4. When the model calls a tool, the page relays it to `POST /web/realtime/tool` (same token,
//!    the direct-session id, the call): the pipeline's tool runtime runs it here and the page
//!    sends the output back to the model.
//!
//! Only a single-stage `realtime.openai` pipeline speaking the GA protocol can go direct.

use crate::App;
use crate::web::{json_error, unix_now};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{info, warn};
use voxpipe_core::{ToolCall, ToolRuntime};
use voxpipe_realtime::{Protocol, RealtimeConfig};

/// Direct sessions kept at most (expired ones are pruned first).
const MAX_SESSIONS: usize = 10_000;
/// The largest tool relay body accepted.
const MAX_TOOL_BODY: usize = 64 * 1024;

/// The native stage of `pipeline` when it can go direct.
pub fn direct_stage(pipeline: &voxpipe_config::PipelineConfig) -> Option<&RealtimeConfig> {
    match pipeline.stages.as_slice() {
        // OpenAI's client secrets only: an Azure resource's sessions go through the server.
        [voxpipe_config::StageConfig::RealtimeOpenAi(c)]
            if c.protocol == Protocol::Ga && c.azure.is_none() =>
        {
            Some(c)
        }
        _ => None,
    }
}

/// The REST base of a Realtime WebSocket URL: `wss://api.openai.com/v1/realtime` →
/// `https://api.openai.com/v1`.
pub fn rest_base(ws_url: &str) -> Option<String> {
    let (scheme, rest) = ws_url.split_once("://")?;
    let scheme = match scheme {
        "wss" | "https" => "https",
        "ws" | "http" => "http",
        _ => return None,
    };
    let rest = rest.trim_end_matches('/');
    let rest = rest.strip_suffix("/realtime").unwrap_or(rest);
    Some(format!("{scheme}://{rest}"))
}

/// The origin (`scheme://host:port`) of a URL, for the page's Content-Security-Policy.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split('/').next()?;
    Some(format!("{scheme}://{host}"))
}

/// One page's direct session.
struct DirectSession {
    /// The nonce of the session token that opened it.
    owner: String,
    pipeline: String,
    tools: Arc<voxpipe_tools::Tools>,
    expires_at: u64,
}

/// The direct sessions in progress and the HTTP client that mints secrets.
pub struct Direct {
    sessions: Mutex<HashMap<String, DirectSession>>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.sessions.lock().map(|s| s.len()).unwrap_or(0);
        f.debug_struct("Direct").field("sessions", &n).finish_non_exhaustive()
    }
}

impl Default for Direct {
    fn default() -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { sessions: Mutex::default(), http }
    }
}

impl Direct {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, DirectSession>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionRequest {
    pipeline: String,
}

/// `POST /web/realtime/session` (bearer: a page session token): a client secret for a
/// direct call to the pipeline's Realtime model.
pub async fn session(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    const KIND: &str = "web/realtime/session";
    if let Err(r) = crate::web::admit(&app, &headers, KIND) {
        return r;
    }
    let owner = match crate::web::session(&app, &headers, KIND) {
        Ok(nonce) => nonce,
        Err(r) => return r,
    };
    let web = &app.loaded.config.web;
    if !web.direct {
        return json_error(StatusCode::NOT_FOUND, "browser-direct calls are disabled (web.direct)");
    }
    let req: SessionRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return json_error(StatusCode::BAD_REQUEST, &format!("expected {{\"pipeline\": \"...\"}}: {e}"));
        }
    };
    let Some((_, pipeline)) = app.loaded.pipelines.iter().find(|(e, _)| e.name == req.pipeline) else {
        return json_error(StatusCode::NOT_FOUND, &format!("no pipeline `{}` on this server", req.pipeline));
    };
    let Some(stage) = direct_stage(pipeline) else {
        let why = format!(
            "pipeline `{}` cannot go browser-direct: only a single realtime.openai stage with protocol \"ga\" can; call it through the server instead",
            req.pipeline
        );
        return json_error(StatusCode::BAD_REQUEST, &why);
    };
    let Some(base) = rest_base(&stage.url) else {
        return json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the pipeline's Realtime URL has no http(s) form",
        );
    };
    let Some(key) = app.env.var(&stage.api_key_env).filter(|k| !k.is_empty()) else {
        warn!(var = %stage.api_key_env, "browser-direct: the pipeline's API key is not set");
        return json_error(StatusCode::SERVICE_UNAVAILABLE, "the pipeline's provider key is not configured");
    };
    let tools = match voxpipe_config::registry::build_tools(pipeline, &app.env) {
        Ok(t) => Arc::new(t),
        Err(e) => {
            warn!(error = %e, "browser-direct: tools not built");
            return json_error(StatusCode::INTERNAL_SERVER_ERROR, "the pipeline's tools cannot be built");
        }
    };
    let mut session = voxpipe_realtime::session::session_update(stage, tools.specs())["session"].take();
    session["model"] = stage.model.clone().into();
    let ttl = web.direct_secret_ttl_secs.clamp(10, 7200);
    let request = serde_json::json!({
        "expires_after": { "anchor": "created_at", "seconds": ttl },
        "session": session,
    });
    let sent = app
        .direct
        .http
        .post(format!("{base}/realtime/client_secrets"))
        .bearer_auth(&key)
        .json(&request)
        .send()
        .await;
    let reply = match sent {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e.without_url(), "browser-direct: client secret request failed");
            app.metrics.error("realtime_client_secret");
            return json_error(StatusCode::BAD_GATEWAY, "the Realtime provider could not be reached");
        }
    };
    let status = reply.status();
    let body: serde_json::Value = reply.json().await.unwrap_or_default();
    if !status.is_success() {
        let msg = body.pointer("/error/message").and_then(|m| m.as_str()).unwrap_or("no message");
        warn!(%status, provider_error = msg, "browser-direct: client secret refused");
        app.metrics.error("realtime_client_secret");
        return json_error(
            StatusCode::BAD_GATEWAY,
            &format!("the Realtime provider refused a client secret ({status}): {msg}"),
        );
    }
    let (Some(secret), Some(expires_at)) =
        (body.get("value").and_then(|v| v.as_str()), body.get("expires_at").and_then(|v| v.as_u64()))
    else {
        return json_error(
            StatusCode::BAD_GATEWAY,
            "the Realtime provider's client secret reply has no value",
        );
    };
    let id = format!("DS{:016x}", rand::random::<u64>());
    {
        let mut sessions = app.direct.lock();
        if sessions.len() >= MAX_SESSIONS {
            let now = unix_now();
            sessions.retain(|_, s| s.expires_at > now);
        }
        // The relay outlives the secret by the page token's lifetime: a call opened just before
        // the secret expired goes on after it.
        let expires_at = unix_now() + web.token_ttl_secs.max(ttl);
        sessions
            .insert(id.clone(), DirectSession { owner, pipeline: req.pipeline.clone(), tools, expires_at });
    }
    info!(session = %id, pipeline = %req.pipeline, client = %peer.ip(), "browser-direct session");
    app.metrics.direct_sessions_total.inc();
    axum::Json(serde_json::json!({
        "session_id": id,
        "client_secret": secret,
        "expires_at": expires_at,
        "calls_url": format!("{base}/realtime/calls"),
        "model": stage.model,
    }))
    .into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolRequest {
    session_id: String,
    call_id: String,
    name: String,
    arguments: String,
}

/// `POST /web/realtime/tool` (bearer: the session token that opened the direct session): runs
/// one of the pipeline's tools for the page and returns its output for the model.
pub async fn tool(State(app): State<Arc<App>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    const KIND: &str = "web/realtime/tool";
    if let Err(r) = crate::web::admit(&app, &headers, KIND) {
        return r;
    }
    let nonce = match crate::web::session(&app, &headers, KIND) {
        Ok(n) => n,
        Err(r) => return r,
    };
    if body.len() > MAX_TOOL_BODY {
        return json_error(StatusCode::PAYLOAD_TOO_LARGE, "tool call too large");
    }
    let req: ToolRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let why = format!("expected {{\"session_id\", \"call_id\", \"name\", \"arguments\"}}: {e}");
            return json_error(StatusCode::BAD_REQUEST, &why);
        }
    };
    let (tools, pipeline) = {
        let sessions = app.direct.lock();
        let Some(s) = sessions.get(&req.session_id).filter(|s| s.expires_at > unix_now()) else {
            return json_error(StatusCode::NOT_FOUND, "no such browser-direct session (or it has expired)");
        };
        if s.owner != nonce {
            drop(sessions);
            return crate::web::refuse(
                &app,
                KIND,
                StatusCode::FORBIDDEN,
                "this session belongs to another token",
            );
        }
        (s.tools.clone(), s.pipeline.clone())
    };
    if !tools.specs().iter().any(|t| t.name == req.name) {
        return json_error(
            StatusCode::NOT_FOUND,
            &format!("pipeline `{pipeline}` has no tool `{}`", req.name),
        );
    }
    let call = ToolCall { call_id: req.call_id, name: req.name, arguments: req.arguments };
    let result = tools.call(&call).await;
    info!(session = %req.session_id, tool = %call.name, is_error = result.is_error, ms = result.duration.as_millis() as u64, "browser-direct tool call");
    axum::Json(serde_json::json!({
        "call_id": result.call_id,
        "output": result.output,
        "is_error": result.is_error,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_base_and_origin() {
        assert_eq!(
            rest_base("wss://api.openai.com/v1/realtime").as_deref(),
            Some("https://api.openai.com/v1")
        );
        assert_eq!(rest_base("ws://127.0.0.1:9/v1/realtime/").as_deref(), Some("http://127.0.0.1:9/v1"));
        assert_eq!(rest_base("ftp://x"), None);
        assert_eq!(origin_of("http://127.0.0.1:9/v1").as_deref(), Some("http://127.0.0.1:9"));
    }
}
