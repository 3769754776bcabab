//! `X-Twilio-Signature`: how Twilio signs its webhook requests and Media Streams upgrades, and
//! how they are checked (the algorithm of Twilio's own helper libraries).
//!
//! `signature = base64(HMAC-SHA1(auth_token, url + sorted(name + value)...))`, where `url` is
//! the full URL Twilio requested (scheme, host, port, path, query) and the parameters are the
//! decoded form fields of a `application/x-www-form-urlencoded` POST (none for a GET, a JSON
//! body or a WebSocket upgrade). A JSON body is bound instead by a `bodySHA256` query parameter
//! holding the hex SHA-256 of the raw body. Because Twilio is inconsistent about the default
//! port, a request is accepted when the URL with the default port added or with any port
//! removed matches. Comparisons are constant-time.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The request header Twilio signs with.
pub const HEADER: &str = "X-Twilio-Signature";

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `X-Twilio-Signature` header.
    #[error("no X-Twilio-Signature header")]
    Missing,
    /// The header does not match the URL and parameters.
    #[error("X-Twilio-Signature does not match")]
    Mismatch,
    /// A JSON body whose `bodySHA256` query parameter is absent or does not match the body.
    #[error("bodySHA256 is missing or does not match the body")]
    BodyHash,
}

/// The signature of `url` with `params`, as Twilio computes it. Parameters are sorted by name,
/// then by value; exact duplicates count once (twilio-python's behaviour).
pub fn compute(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    sorted.dedup();
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Checks `signature` for a request to `url` carrying form `params` (empty for a GET or a
/// WebSocket upgrade). Tries the URL with the default port added and with any port removed.
pub fn validate(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    signature: Option<&str>,
) -> Result<(), SignatureError> {
    let signature = signature.ok_or(SignatureError::Missing)?;
    let mut ok = false;
    // Both forms are always computed, so the time taken does not say which one matched.
    for candidate in [with_default_port(url), without_port(url)] {
        let expected = compute(auth_token, &candidate, params);
        ok |= bool::from(expected.as_bytes().ct_eq(signature.as_bytes()));
    }
    if ok { Ok(()) } else { Err(SignatureError::Mismatch) }
}

/// Checks a request with a JSON (or any non-form) body: its URL must carry
/// `bodySHA256=<hex SHA-256 of body>`, and the signature covers the URL alone.
pub fn validate_body(
    auth_token: &str,
    url: &str,
    body: &[u8],
    signature: Option<&str>,
) -> Result<(), SignatureError> {
    let signature_present = signature.ok_or(SignatureError::Missing)?;
    validate(auth_token, url, &[], Some(signature_present))?;
    let claimed = url::Url::parse(url)
        .ok()
        .and_then(|u| u.query_pairs().find(|(k, _)| k == "bodySHA256").map(|(_, v)| v.into_owned()))
        .ok_or(SignatureError::BodyHash)?;
    let actual = hex(&Sha256::digest(body));
    if bool::from(actual.as_bytes().ct_eq(claimed.to_ascii_lowercase().as_bytes())) {
        Ok(())
    } else {
        Err(SignatureError::BodyHash)
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Splits `url` into (`scheme://`, userinfo@, host, optional port, rest), leaving every byte
/// as it was: signatures are over the exact text, so no normalisation happens here.
fn split(url: &str) -> Option<(&str, &str, &str, Option<&str>, &str)> {
    let scheme_end = url.find("://")? + 3;
    let after = &url[scheme_end..];
    let auth_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let authority = &after[..auth_end];
    let rest = &after[auth_end..];
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    // An IPv6 literal keeps its colons inside brackets.
    let port_colon = match hostport.rfind(']') {
        Some(b) => hostport[b..].find(':').map(|c| b + c),
        None => hostport.rfind(':'),
    };
    let (host, port) = match port_colon {
        Some(c) => (&hostport[..c], Some(&hostport[c + 1..])),
        None => (hostport, None),
    };
    Some((&url[..scheme_end], userinfo, host, port, rest))
}

/// `url` with the scheme's default port (443 for https/wss, 80 otherwise) added when it has none.
pub fn with_default_port(url: &str) -> String {
    match split(url) {
        Some((scheme, userinfo, host, None, rest)) => {
            let port = if scheme.starts_with("https") || scheme.starts_with("wss") { 443 } else { 80 };
            format!("{scheme}{userinfo}{host}:{port}{rest}")
        }
        _ => url.to_string(),
    }
}

/// `url` without its port, if it has one.
pub fn without_port(url: &str) -> String {
    match split(url) {
        Some((scheme, userinfo, host, Some(_), rest)) => format!("{scheme}{userinfo}{host}{rest}"),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_added_and_removed_without_touching_the_rest() {
        assert_eq!(with_default_port("https://a.com/x?y=1"), "https://a.com:443/x?y=1");
        assert_eq!(with_default_port("wss://a.com/media"), "wss://a.com:443/media");
        assert_eq!(with_default_port("http://a.com?q"), "http://a.com:80?q");
        assert_eq!(with_default_port("http://a.com:8080/x"), "http://a.com:8080/x");
        assert_eq!(without_port("https://u:p@a.com:1234/x?p=a:b"), "https://u:p@a.com/x?p=a:b");
        assert_eq!(without_port("http://[::1]:99/x"), "http://[::1]/x");
        assert_eq!(without_port("http://[::1]/x"), "http://[::1]/x");
        assert_eq!(without_port("not a url"), "not a url");
    }

    #[test]
    fn a_missing_or_wrong_signature_is_refused() {
        let url = "https://a.com/voice";
        let params = vec![("CallSid".to_string(), "CA1".to_string())];
        let good = compute("tok", url, &params);
        assert_eq!(validate("tok", url, &params, Some(&good)), Ok(()));
        assert_eq!(validate("tok", url, &params, None), Err(SignatureError::Missing));
        assert_eq!(validate("other", url, &params, Some(&good)), Err(SignatureError::Mismatch));
        let changed = vec![("CallSid".to_string(), "CA2".to_string())];
        assert_eq!(validate("tok", url, &changed, Some(&good)), Err(SignatureError::Mismatch));
    }
}
