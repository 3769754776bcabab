//! Azure OpenAI's URL shapes for the Realtime WebSocket, checked as strictly as Azure does:
//!
//! - preview: `/openai/realtime?api-version=2025-04-01-preview&deployment=NAME` (beta events);
//! - v1 (GA): `/openai/v1/realtime?model=NAME` (the deployment's name as the model).
//!
//! The key goes in an `api-key` header, or a Microsoft Entra token in `Authorization: Bearer`
//! (the fake compares either with [`RealtimeFakeConfig::api_key`] when one is set). Refusals
//! use Azure's error body, `{"error": {"code", "message"}}`, not OpenAI's: a missing or wrong
//! key is 401 with code `"401"`, a missing `api-version` on the preview path is Azure's bare
//! 404 `Resource not found`, a missing deployment is 404 `DeploymentNotFound`.

use http::{HeaderValue, StatusCode};
use serde_json::json;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request};

use super::config::RealtimeFakeConfig;
use super::session::Dialect;
use super::{Upgrade, query_param};

/// Which of Azure's Realtime paths was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `/openai/realtime` with `api-version` and `deployment`: the preview (beta) API.
    Preview,
    /// `/openai/v1/realtime` with `model`: the v1 (GA) API.
    V1,
}

const ACCESS_DENIED: &str = "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.";
const NO_DEPLOYMENT: &str = "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again.";

/// Checks an upgrade on an Azure path: key, `api-version`, deployment.
#[expect(
    clippy::result_large_err,
    reason = "tungstenite's header callback returns its ErrorResponse by value"
)]
pub(crate) fn check(req: &Request, shape: Shape, cfg: &RealtimeFakeConfig) -> Result<Upgrade, ErrorResponse> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").trim();
    let key = Some(header("api-key"))
        .filter(|k| !k.is_empty())
        .or_else(|| header("authorization").strip_prefix("Bearer ").map(str::trim).filter(|t| !t.is_empty()));
    let allowed = match (key, &cfg.api_key) {
        (None, _) => false,
        (Some(k), Some(expected)) => k == expected.0,
        (Some(_), None) => true,
    };
    if !allowed {
        return Err(refuse(StatusCode::UNAUTHORIZED, "401", ACCESS_DENIED));
    }
    let beta_header = header("openai-beta").split(',').any(|v| v.trim() == "realtime=v1");
    let (dialect, deployment) = match shape {
        Shape::Preview => {
            if query_param(req, "api-version").is_none() {
                return Err(refuse(StatusCode::NOT_FOUND, "404", "Resource not found"));
            }
            (Dialect::Beta, query_param(req, "deployment"))
        }
        Shape::V1 => {
            let dialect = if beta_header { Dialect::Beta } else { Dialect::Ga };
            (dialect, query_param(req, "model"))
        }
    };
    let Some(deployment) = deployment else {
        return Err(refuse(StatusCode::NOT_FOUND, "DeploymentNotFound", NO_DEPLOYMENT));
    };
    Ok(Upgrade { dialect, model: deployment.to_string(), preset: None })
}

fn refuse(status: StatusCode, code: &str, message: &str) -> ErrorResponse {
    let body = json!({"error": {"code": code, "message": message}});
    let mut resp = ErrorResponse::new(Some(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
