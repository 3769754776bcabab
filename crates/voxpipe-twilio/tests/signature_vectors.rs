//! Every known-answer vector of Twilio's own helper-library tests
//! (`fixtures/request-validator-vectors.json`, copied from the protocol specs).

use serde_json::Value;
use voxpipe_twilio::signature::{SignatureError, compute, validate, validate_body};

fn vectors() -> (String, Vec<Value>) {
    let text = include_str!("fixtures/request-validator-vectors.json");
    let v: Value = serde_json::from_str(text).unwrap();
    (v["auth_token"].as_str().unwrap().to_string(), v["vectors"].as_array().unwrap().clone())
}

fn params(v: &Value) -> Vec<(String, String)> {
    if let Some(multi) = v["params_multi"].as_array() {
        return multi
            .iter()
            .map(|p| (p[0].as_str().unwrap().into(), p[1].as_str().unwrap().into()))
            .collect();
    }
    v["params"]
        .as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().into())).collect())
        .unwrap_or_default()
}

#[test]
fn every_vector_validates_and_a_changed_one_does_not() {
    let (token, vectors) = vectors();
    assert!(vectors.len() >= 8);
    for v in &vectors {
        let name = v["name"].as_str().unwrap();
        let expected = v["expected_signature"].as_str().unwrap();
        let p = params(v);
        if let Some(body) = v["body"].as_str() {
            let url = v["url"].as_str().unwrap();
            assert_eq!(validate_body(&token, url, body.as_bytes(), Some(expected)), Ok(()), "{name}");
            assert_eq!(
                validate_body(&token, url, b"{\"property\": \"other\"}", Some(expected)),
                Err(SignatureError::BodyHash),
                "{name}: another body"
            );
            continue;
        }
        let (signed, received) = match v["url"].as_str() {
            Some(u) => (u, u),
            None => (v["url_signed"].as_str().unwrap(), v["url_received"].as_str().unwrap()),
        };
        assert_eq!(compute(&token, signed, &p), expected, "{name}: computed over the signed URL");
        assert_eq!(
            validate(&token, received, &p, Some(expected)),
            Ok(()),
            "{name}: validated at the received URL"
        );
        assert_eq!(
            validate("54321", received, &p, Some(expected)),
            Err(SignatureError::Mismatch),
            "{name}: another token"
        );
        let mut forged = p.clone();
        forged.push(("Extra".into(), "1".into()));
        assert_eq!(
            validate(&token, received, &forged, Some(expected)),
            Err(SignatureError::Mismatch),
            "{name}: a param added"
        );
        if let Some(s) = v["string_to_sign"].as_str() {
            assert!(s.starts_with(signed), "{name}");
        }
    }
}
