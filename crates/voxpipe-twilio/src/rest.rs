//! Call control through Twilio's REST API: `POST /2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json`
//! with HTTP Basic auth (account SID, auth token) and a form body in PascalCase.
//! `Status=completed` hangs up a live call; `Twiml=<Response><Dial>…` redirects it (a transfer).

use std::time::Duration;
use voxpipe_core::Secret;

/// Twilio's API host.
pub const DEFAULT_API_BASE: &str = "https://api.twilio.com";
/// Twilio refuses inline TwiML longer than this (error 32018).
pub const MAX_INLINE_TWIML: usize = 4000;

/// A REST call failed.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// Twilio answered with an error body.
    #[error("Twilio error {code} (HTTP {status}): {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Twilio error code (20404, 21220…).
        code: u64,
        /// Twilio's message.
        message: String,
    },
    /// The request did not complete.
    #[error("Twilio API unreachable: {0}")]
    Transport(String),
    /// Refused before sending.
    #[error("{0}")]
    Invalid(String),
}

/// The Calls resource of one account.
#[derive(Debug, Clone)]
pub struct RestClient {
    base: String,
    account_sid: String,
    auth_token: Secret,
    http: reqwest::Client,
    retries: u32,
}

#[derive(serde::Deserialize)]
struct ApiError {
    code: Option<u64>,
    message: Option<String>,
}

impl RestClient {
    /// A client for `account_sid` at `base` (`https://api.twilio.com`, or a fake's URL).
    pub fn new(base: &str, account_sid: &str, auth_token: Secret) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self {
            base: base.trim_end_matches('/').to_string(),
            account_sid: account_sid.to_string(),
            auth_token,
            http,
            retries: 2,
        }
    }

    /// Hangs up the live call `call_sid`.
    pub async fn hang_up(&self, call_sid: &str) -> Result<(), RestError> {
        self.update(call_sid, &[("Status", "completed")]).await
    }

    /// Replaces the live call's TwiML (e.g. a `<Dial>`): Twilio ends the media stream and runs it.
    pub async fn redirect(&self, call_sid: &str, twiml: &str) -> Result<(), RestError> {
        if twiml.len() > MAX_INLINE_TWIML {
            return Err(RestError::Invalid(format!(
                "inline TwiML is {} characters; Twilio takes at most {MAX_INLINE_TWIML} (error 32018)",
                twiml.len()
            )));
        }
        self.update(call_sid, &[("Twiml", twiml)]).await
    }

    /// `POST …/Calls/{call_sid}.json` with `form`; retries 429 and 5xx with backoff.
    pub async fn update(&self, call_sid: &str, form: &[(&str, &str)]) -> Result<(), RestError> {
        let url = format!("{}/2010-04-01/Accounts/{}/Calls/{}.json", self.base, self.account_sid, call_sid);
        let mut attempt = 0;
        loop {
            let sent = self
                .http
                .post(&url)
                .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
                .form(form)
                .send()
                .await;
            let retryable = match sent {
                Ok(resp) if resp.status().is_success() => return Ok(()),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let body: Option<ApiError> = resp.json().await.ok();
                    let err = RestError::Api {
                        status,
                        code: body.as_ref().and_then(|b| b.code).unwrap_or(0),
                        message: body.and_then(|b| b.message).unwrap_or_default(),
                    };
                    if status != 429 && status < 500 {
                        return Err(err);
                    }
                    err
                }
                // Error's Display never includes the basic-auth header.
                Err(e) => RestError::Transport(e.without_url().to_string()),
            };
            if attempt >= self.retries {
                return Err(retryable);
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
        }
    }
}
