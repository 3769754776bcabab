//! The post-call webhook, signed per Standard Webhooks: headers `webhook-id`,
//! `webhook-timestamp` (Unix seconds) and `webhook-signature` = `v1,` + base64 of
//! HMAC-SHA256(secret, `{id}.{timestamp}.{body}`), where the secret is the base64 after
//! `whsec_` (or the raw text of a secret without that prefix). Delivered in the background
//! with exponential backoff; failures are logged and counted, never felt by a call.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};
use voxpipe_core::Secret;

/// The signing key of a Standard Webhooks secret.
pub fn key_of(secret: &str) -> Vec<u8> {
    match secret.strip_prefix("whsec_") {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap_or_else(|_| secret.as_bytes().to_vec()),
        None => secret.as_bytes().to_vec(),
    }
}

/// `v1,<signature>` of `body` sent as message `id` at `timestamp`.
pub fn sign(key: &[u8], id: &str, timestamp: u64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// Checks a delivery as a receiver would (any `v1,` signature of the space-separated list).
pub fn verify(key: &[u8], id: &str, timestamp: u64, body: &str, header: &str) -> bool {
    use subtle::ConstantTimeEq;
    let expected = sign(key, id, timestamp, body);
    header.split(' ').any(|s| bool::from(s.as_bytes().ct_eq(expected.as_bytes())))
}

/// Sends call summaries to one URL.
#[derive(Debug, Clone)]
pub struct Webhook {
    url: String,
    key: Arc<Secret>,
    attempts: u32,
    http: reqwest::Client,
}

impl Webhook {
    /// A sender for `config` with `secret`.
    pub fn new(config: &crate::config::WebhookConfig, secret: Secret) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .build()
            .unwrap_or_default();
        Self { url: config.url.clone(), key: Arc::new(secret), attempts: config.max_attempts.max(1), http }
    }

    /// Delivers `payload` in the background.
    pub fn send(&self, id: String, payload: serde_json::Value, metrics: Arc<crate::metrics::Metrics>) {
        let this = self.clone();
        tokio::spawn(async move {
            let body = payload.to_string();
            let key = key_of(this.key.expose());
            for attempt in 1..=this.attempts {
                let timestamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                let r = this
                    .http
                    .post(&this.url)
                    .header("content-type", "application/json")
                    .header("webhook-id", &id)
                    .header("webhook-timestamp", timestamp.to_string())
                    .header("webhook-signature", sign(&key, &id, timestamp, &body))
                    .body(body.clone())
                    .send()
                    .await;
                let why = match r {
                    Ok(resp) if resp.status().is_success() => {
                        info!(%id, attempt, "post-call webhook delivered");
                        return;
                    }
                    Ok(resp) => format!("HTTP {}", resp.status()),
                    Err(e) => e.without_url().to_string(),
                };
                warn!(%id, attempt, of = this.attempts, reason = %why, "post-call webhook failed");
                if attempt < this.attempts {
                    tokio::time::sleep(Duration::from_secs(1 << (attempt - 1).min(6))).await;
                }
            }
            metrics.error("webhook");
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification (and its reference libraries).
    #[test]
    fn the_specification_example_signs_and_verifies() {
        let key = key_of("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = r#"{"test": 2432232314}"#;
        let sig = sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(verify(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, &format!("v1,bogus {sig}")));
        assert!(!verify(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331, body, &sig));
    }
}
