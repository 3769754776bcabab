//! Process-wide HTTP clients for the providers' stages.
//!
//! A `reqwest::Client` carries a TLS configuration (the root store, parsed) and a connection
//! pool. Built per stage per call, that was three clients a cascade call, a large share of its
//! memory, and no connection was ever reused between calls. Here every stage asking for the
//! same [`Settings`] gets a clone of one client (a reference count): the TLS setup is done once
//! per process and keep-alive connections to a provider serve every call.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// How a client behaves; stages with equal settings share a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Settings {
    /// Whole-request limit (none: a stream may last as long as it needs).
    pub timeout: Option<Duration>,
    /// Limit on connecting.
    pub connect_timeout: Option<Duration>,
    /// Limit on the gap between two reads of the body.
    pub read_timeout: Option<Duration>,
    /// `User-Agent` sent (none: reqwest's default, which is none).
    pub user_agent: Option<&'static str>,
    /// Follow redirects only within one origin (scheme, host, port). For clients that send
    /// custom secret headers: reqwest strips only `Authorization`, `Cookie` and their kin when
    /// a redirect leaves the host, so an `X-Api-Key` would follow it anywhere.
    pub same_origin_redirects: bool,
}

/// The process's client for `settings`, built on first use.
///
/// # Errors
/// The TLS backend could not be initialised.
pub fn client(settings: Settings) -> Result<reqwest::Client, reqwest::Error> {
    let mut clients = cache().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = clients.get(&settings) {
        return Ok(c.clone());
    }
    let mut b = reqwest::Client::builder();
    if let Some(t) = settings.timeout {
        b = b.timeout(t);
    }
    if let Some(t) = settings.connect_timeout {
        b = b.connect_timeout(t);
    }
    if let Some(t) = settings.read_timeout {
        b = b.read_timeout(t);
    }
    if let Some(ua) = settings.user_agent {
        b = b.user_agent(ua);
    }
    if settings.same_origin_redirects {
        b = b.redirect(reqwest::redirect::Policy::custom(|attempt| {
            let same = attempt.previous().last().is_none_or(|prev| prev.origin() == attempt.url().origin());
            if same && attempt.previous().len() < 10 { attempt.follow() } else { attempt.stop() }
        }));
    }
    let c = b.build()?;
    clients.insert(settings, c.clone());
    Ok(c)
}

fn cache() -> &'static Mutex<HashMap<Settings, reqwest::Client>> {
    static CLIENTS: OnceLock<Mutex<HashMap<Settings, reqwest::Client>>> = OnceLock::new();
    CLIENTS.get_or_init(Mutex::default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_settings_share_a_client_and_others_do_not() {
        let built = || cache().lock().unwrap().len();
        let s = Settings { connect_timeout: Some(Duration::from_millis(3217)), ..Default::default() };
        let before = built();
        client(s).unwrap();
        client(s).unwrap();
        assert_eq!(built(), before + 1, "one client for one setting");
        client(Settings { timeout: Some(Duration::from_millis(1234)), ..s }).unwrap();
        assert_eq!(built(), before + 2, "another setting, another client");
    }
}
