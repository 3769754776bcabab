//! TwiML: the XML a voice webhook answers with, written for the server (`<Connect><Stream>`
//! with `<Parameter>`s, `<Dial>` for a transfer, `<Say>` + `<Hangup>` or `<Reject>` when the
//! server is full) and read by the fake carrier.

use quick_xml::escape::escape;
use quick_xml::events::Event;

const HEAD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// `<Response><Connect><Stream url=…>` with a `<Parameter>` per pair: a bidirectional media
/// stream (the stream URL carries no query string: Twilio drops it, so data goes in
/// parameters).
pub fn connect_stream(url: &str, params: &[(String, String)]) -> String {
    let mut s = format!(r#"{HEAD}<Response><Connect><Stream url="{}">"#, escape(url));
    for (name, value) in params {
        s += &format!(r#"<Parameter name="{}" value="{}"/>"#, escape(name.as_str()), escape(value.as_str()));
    }
    s + "</Stream></Connect></Response>"
}

/// `<Response><Dial>` to a phone number, or to a SIP URI (`sip:…`) with `<Sip>`.
pub fn dial(target: &str, caller_id: Option<&str>) -> String {
    let caller = caller_id.map(|c| format!(r#" callerId="{}""#, escape(c))).unwrap_or_default();
    let noun = if target.starts_with("sip:") || target.starts_with("sips:") {
        format!("<Sip>{}</Sip>", escape(target))
    } else {
        format!("<Number>{}</Number>", escape(target))
    };
    format!("{HEAD}<Response><Dial{caller}>{noun}</Dial></Response>")
}

/// `<Response><Say>message</Say><Hangup/></Response>`: answer, explain, hang up.
pub fn say_and_hang_up(message: &str) -> String {
    format!("{HEAD}<Response><Say>{}</Say><Hangup/></Response>", escape(message))
}

/// `<Response><Reject reason="busy"/></Response>`: refuse without answering (no charge).
pub fn reject_busy() -> String {
    format!(r#"{HEAD}<Response><Reject reason="busy"/></Response>"#)
}

/// A TwiML verb as the fake carrier acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    /// `<Connect><Stream url>` with its parameters.
    ConnectStream {
        /// The WebSocket URL.
        url: String,
        /// `<Parameter>` name/value pairs, in order.
        params: Vec<(String, String)>,
    },
    /// `<Dial>` to a `<Number>`, `<Sip>` or a bare number.
    Dial {
        /// Where.
        target: String,
    },
    /// `<Say>` text.
    Say(String),
    /// `<Hangup/>`.
    Hangup,
    /// `<Reject/>`.
    Reject,
}

/// Malformed TwiML.
#[derive(Debug, thiserror::Error)]
#[error("malformed TwiML: {0}")]
pub struct TwimlError(String);

/// Acts on an opening (or empty) element; returns its name.
fn open(
    e: &quick_xml::events::BytesStart<'_>,
    path: &[String],
    verbs: &mut Vec<Verb>,
    saw_response: &mut bool,
) -> Result<String, TwimlError> {
    let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
    let attr = |key: &str| -> Result<Option<String>, TwimlError> {
        for a in e.attributes() {
            let a = a.map_err(|e| TwimlError(e.to_string()))?;
            if a.key.as_ref() == key.as_bytes() {
                let v = a.unescape_value().map_err(|e| TwimlError(e.to_string()))?;
                return Ok(Some(v.into_owned()));
            }
        }
        Ok(None)
    };
    match name.as_str() {
        "Response" => *saw_response = true,
        "Stream" if path.last().is_some_and(|p| p == "Connect") => {
            let url = attr("url")?.ok_or_else(|| TwimlError("<Stream> without url".into()))?;
            verbs.push(Verb::ConnectStream { url, params: Vec::new() });
        }
        "Parameter" => {
            if let Some(Verb::ConnectStream { params, .. }) = verbs.last_mut() {
                params.push((attr("name")?.unwrap_or_default(), attr("value")?.unwrap_or_default()));
            }
        }
        "Hangup" => verbs.push(Verb::Hangup),
        "Reject" => verbs.push(Verb::Reject),
        _ => {}
    }
    Ok(name)
}

/// The verbs of a TwiML document, in order (unknown elements are skipped).
pub fn parse(xml: &str) -> Result<Vec<Verb>, TwimlError> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut verbs = Vec::new();
    let mut path: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut saw_response = false;
    loop {
        let ev = reader.read_event().map_err(|e| TwimlError(e.to_string()))?;
        match ev {
            Event::Start(e) => {
                let name = open(&e, &path, &mut verbs, &mut saw_response)?;
                path.push(name);
                text.clear();
            }
            Event::Empty(e) => {
                open(&e, &path, &mut verbs, &mut saw_response)?;
            }
            Event::End(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                match name.as_str() {
                    "Say" => verbs.push(Verb::Say(std::mem::take(&mut text).trim().to_string())),
                    "Number" | "Sip" | "Client" => {
                        verbs.push(Verb::Dial { target: std::mem::take(&mut text).trim().to_string() })
                    }
                    "Dial" if !text.trim().is_empty() => {
                        verbs.push(Verb::Dial { target: std::mem::take(&mut text).trim().to_string() })
                    }
                    _ => {}
                }
                path.pop();
            }
            Event::Text(t) => {
                text += &t.decode().map_err(|e| TwimlError(e.to_string()))?;
            }
            Event::GeneralRef(r) => {
                let name = String::from_utf8_lossy(&r);
                text += match name.as_ref() {
                    "amp" => "&",
                    "lt" => "<",
                    "gt" => ">",
                    "quot" => "\"",
                    "apos" => "'",
                    _ => "",
                };
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_response {
        return Err(TwimlError("no <Response> element".into()));
    }
    Ok(verbs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back() {
        let params = vec![("pipeline".to_string(), "a&b".to_string()), ("from".into(), "+1 \"x\"".into())];
        let xml = connect_stream("wss://h.example/twilio/media", &params);
        assert_eq!(
            parse(&xml).unwrap(),
            vec![Verb::ConnectStream { url: "wss://h.example/twilio/media".into(), params }]
        );
        assert_eq!(
            parse(&dial("+15551234567", None)).unwrap(),
            vec![Verb::Dial { target: "+15551234567".into() }]
        );
        assert!(dial("sip:desk@pbx.example", Some("+1555")).contains("<Sip>sip:desk@pbx.example</Sip>"));
        assert_eq!(
            parse(&say_and_hang_up("Sorry <all> busy")).unwrap(),
            vec![Verb::Say("Sorry <all> busy".into()), Verb::Hangup]
        );
        assert_eq!(parse(&reject_busy()).unwrap(), vec![Verb::Reject]);
        assert_eq!(
            parse("<Response><Dial>+1555</Dial></Response>").unwrap(),
            vec![Verb::Dial { target: "+1555".into() }]
        );
        assert!(parse("<Nope/>").is_err());
        assert!(parse("<Response><Connect><Stream></Stream></Connect></Response>").is_err());
    }
}
