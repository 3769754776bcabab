//! The Gemini fake, spoken to with raw HTTP: it must refuse what the service refuses, in
//! Google's error shape, and stream the shapes of the recorded fixtures.

use serde_json::{Value, json};
use voxpipe_fakes::gemini::{GeminiFake, GeminiFakeConfig, thought_signature};
use voxpipe_fakes::openai_chat::{ScriptedReply, ScriptedToolCall};

const KEY: &str = "AIza-fake";

async fn fake(config: GeminiFakeConfig) -> GeminiFake {
    GeminiFake::start(GeminiFakeConfig { api_key: Some(KEY.into()), ..config }).await.unwrap()
}

fn user(text: &str) -> Value {
    json!({"role": "user", "parts": [{"text": text}]})
}

async fn post(fake: &GeminiFake, path: &str, key: Option<&str>, body: &Value) -> (u16, String) {
    let mut req = reqwest::Client::new().post(format!("{}{path}", fake.base_url())).json(body);
    if let Some(k) = key {
        req = req.header("x-goog-api-key", k);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

const STREAM: &str = "/models/gemini-2.5-flash:streamGenerateContent?alt=sse";

async fn stream(fake: &GeminiFake, body: &Value) -> (u16, String) {
    post(fake, STREAM, Some(KEY), body).await
}

/// The status, and the error's `status` and `message`, checking the error shape.
async fn refused(fake: &GeminiFake, body: &Value) -> (u16, String, String) {
    let (code, text) = stream(fake, body).await;
    google_error(code, &text)
}

fn google_error(code: u16, text: &str) -> (u16, String, String) {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let e = &v["error"];
    assert_eq!(e["code"], code, "{text}");
    let keys: Vec<&String> = e.as_object().unwrap().keys().filter(|k| *k != "details").collect();
    assert_eq!(keys, ["code", "message", "status"], "{text}");
    (code, e["status"].as_str().unwrap().to_string(), e["message"].as_str().unwrap().to_string())
}

fn chunks(sse: &str) -> Vec<Value> {
    assert!(sse.ends_with("\r\n\r\n"), "CRLF-framed events");
    sse.split("\r\n\r\n")
        .filter(|e| !e.is_empty())
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn keys_are_refused_as_google_refuses_them_and_never_recorded() {
    let fake = fake(GeminiFakeConfig::default()).await;
    let body = json!({"contents": [user("hi")]});
    let (code, text) = post(&fake, STREAM, None, &body).await;
    let (_, status, message) = google_error(code, &text);
    assert_eq!((code, status.as_str()), (403, "PERMISSION_DENIED"));
    assert!(message.contains("unregistered callers"), "{message}");
    let (code, text) = post(&fake, STREAM, Some("AIza-wrong"), &body).await;
    assert_eq!(google_error(code, &text).1, "INVALID_ARGUMENT");
    assert!(text.contains("API_KEY_INVALID") && text.contains("\n  \"error\""), "pretty-printed: {text}");
    let at = |k: &str| text.find(&format!("\"{k}\"")).unwrap();
    assert!(
        at("code") < at("message") && at("message") < at("status") && at("status") < at("details"),
        "Google's order: {text}"
    );
    serde_json::from_str::<Value>(&text).unwrap();
    let url = format!("{}{STREAM}&key={KEY}", fake.base_url());
    let resp = reqwest::Client::new().post(url).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200, "the key may also come as ?key=");
    assert_eq!(fake.requests()[1].header("x-goog-api-key"), Some("[redacted]"));
    assert!(fake.urls().iter().all(|u| !u.contains(KEY)), "{:?}", fake.urls());
    assert!(fake.urls()[2].ends_with("alt=sse&key=[redacted]"), "{:?}", fake.urls());
}

#[tokio::test]
async fn wrong_paths_methods_models_and_a_missing_alt_sse_are_refused() {
    let fake = fake(GeminiFakeConfig::default()).await;
    let body = json!({"contents": [user("hi")]});
    for path in ["/models/gemini-2.5-flash:generateContent", "/chat/completions", "/models/gemini-2.5-flash"]
    {
        let (code, text) = post(&fake, path, Some(KEY), &body).await;
        assert_eq!(google_error(code, &text).1, "NOT_FOUND", "{path}");
    }
    let get = reqwest::Client::new().get(format!("{}{STREAM}", fake.base_url())).send().await.unwrap();
    assert_eq!(get.status(), 404);
    let (code, text) = post(&fake, "/models/gpt-4o:streamGenerateContent?alt=sse", Some(KEY), &body).await;
    assert!(google_error(code, &text).2.contains("models/gpt-4o is not found for API version v1beta"));
    let (code, _) = post(&fake, "/models/gemini-2.5-flash:streamGenerateContent", Some(KEY), &body).await;
    assert_eq!(code, 400, "without alt=sse");
}

#[tokio::test]
async fn malformed_bodies_are_refused_with_the_services_messages() {
    let fake = fake(GeminiFakeConfig::default()).await;
    let call_turn = |sig: bool, id: Option<&str>| {
        let mut fc = json!({"name": "get_weather", "args": {"city": "Paris"}});
        if let Some(id) = id {
            fc["id"] = json!(id);
        }
        let mut part = json!({"functionCall": fc});
        if sig {
            part["thoughtSignature"] = json!(thought_signature(0, 0));
        }
        json!({"role": "model", "parts": [part]})
    };
    let response = |id: Option<&str>| {
        let mut fr = json!({"name": "get_weather", "response": {"output": "sunny"}});
        if let Some(id) = id {
            fr["id"] = json!(id);
        }
        json!({"role": "user", "parts": [{"functionResponse": fr}]})
    };
    let cases: Vec<(Value, &str)> = vec![
        (json!({"contents": []}), "contents is not specified"),
        (json!({"messages": [user("hi")], "contents": [user("hi")]}), "Unknown name \"messages\""),
        (
            json!({"contents": [{"role": "assistant", "parts": [{"text": "hi"}]}, user("hi")]}),
            "valid role: user, model",
        ),
        (json!({"contents": [{"role": "user", "parts": []}]}), "must not be empty"),
        (
            json!({"contents": [{"role": "user", "parts": [{"type": "text", "text": "hi"}]}]}),
            "Unknown name \"type\"",
        ),
        (
            json!({"contents": [{"role": "user", "parts": [{"text": "a", "functionCall": {"name": "f"}}]}]}),
            "oneof field 'data'",
        ),
        (
            json!({"contents": [user("hi"), {"role": "model", "parts": [{"text": "Hello."}]}]}),
            "ends with a user role",
        ),
        (json!({"contents": [user("hi"), response(None)]}), "comes immediately after a function call turn"),
        (
            json!({"contents": [user("hi"), call_turn(true, None), {"role": "user", "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"output": 1}}},
            {"functionResponse": {"name": "get_weather", "response": {"output": 2}}}]}]}),
            "number of function response parts is equal",
        ),
        (
            json!({"contents": [user("hi"), call_turn(true, None), response(Some("fc_9"))]}),
            "no function call of the previous turn has name `get_weather` and id `fc_9`",
        ),
        (
            json!({"contents": [user("hi"), call_turn(true, Some("fc_1")), response(None)]}),
            "no function call of the previous turn",
        ),
        (
            json!({"contents": [user("hi"), call_turn(false, None), response(None)]}),
            "missing a thought_signature",
        ),
        (
            json!({"contents": [user("hi"), call_turn(true, None), {"role": "user", "parts": [
            {"functionResponse": {"name": "get_weather", "response": "sunny"}}]}]}),
            "must be a JSON object",
        ),
        (
            json!({"contents": [user("hi")], "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "object"}}]}]}),
            "v1beta.Type), \"object\"",
        ),
        (
            json!({"contents": [user("hi")], "tools": [{"functionDeclarations": [{"name": "f"}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "AUTO", "allowedFunctionNames": ["f"]}}}),
            "only be set when the Mode is ANY",
        ),
    ];
    for (body, expected) in cases {
        let (code, status, message) = refused(&fake, &body).await;
        assert_eq!((code, status.as_str()), (400, "INVALID_ARGUMENT"), "{body}");
        assert!(message.contains(expected), "{body}\n-> {message}");
    }
    let (code, text) = post(&fake, STREAM, Some(KEY), &json!("not an object")).await;
    assert_eq!(code, 400, "{text}");
    // The same round trips, done right, pass; a call of an earlier turn needs no signature.
    for ok in [
        json!({"contents": [user("hi"), call_turn(true, None), response(None)]}),
        json!({"contents": [user("hi"), call_turn(true, Some("fc_1")), response(Some("fc_1"))]}),
        json!({"contents": [user("hi"), call_turn(false, None), response(None),
            {"role": "model", "parts": [{"text": "Sunny."}]}, user("thanks")]}),
    ] {
        assert_eq!(stream(&fake, &ok).await.0, 200, "{ok}");
    }
}

#[tokio::test]
async fn a_text_reply_streams_in_the_recorded_shape_with_cumulative_usage() {
    let fake = fake(GeminiFakeConfig {
        replies: vec![ScriptedReply::text("Hello there, friend.")],
        ..Default::default()
    })
    .await;
    let (code, sse) = stream(&fake, &json!({"contents": [user("hi")]})).await;
    assert_eq!(code, 200);
    let c = chunks(&sse);
    let texts: Vec<&str> =
        c.iter().map(|v| v["candidates"][0]["content"]["parts"][0]["text"].as_str().unwrap()).collect();
    assert_eq!(texts.concat(), "Hello there, friend.");
    assert!(c.len() > 2);
    for v in &c[..c.len() - 1] {
        assert!(v["candidates"][0].get("finishReason").is_none(), "{v}");
        assert_eq!(v["candidates"][0]["content"]["role"], "model");
        assert!(v["usageMetadata"]["promptTokenCount"].as_u64().unwrap() > 0);
    }
    let last = c.last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(last["usageMetadata"]["candidatesTokenCount"], c.len());
    // The keys of the recorded stream's chunks.
    let fixture =
        include_str!("../../voxpipe-llm/fixtures/gemini/googleai-streaming-success-basic-reply-short.sse");
    let recorded = chunks(fixture);
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    for k in keys(&recorded[2]) {
        assert!(last.get(&k).is_some(), "`{k}` of the recorded chunk is missing: {last}");
    }
}

#[tokio::test]
async fn parallel_calls_arrive_whole_in_one_chunk_the_first_signed_and_ids_on_request() {
    let calls = vec![
        ScriptedToolCall { name: "get_weather".into(), arguments: json!({"city": "Paris"}) },
        ScriptedToolCall { name: "get_time".into(), arguments: json!({"city": "Paris"}) },
    ];
    let replies = vec![ScriptedReply::ToolCalls { text: None, calls }];
    let fake = fake(GeminiFakeConfig { replies: replies.clone(), ..Default::default() }).await;
    let (_, sse) = stream(&fake, &json!({"contents": [user("hi")]})).await;
    let c = chunks(&sse);
    assert_eq!(c.len(), 1, "{sse}");
    let parts = c[0]["candidates"][0]["content"]["parts"].as_array().unwrap();
    assert_eq!(parts[0]["functionCall"], json!({"name": "get_weather", "args": {"city": "Paris"}}));
    assert_eq!(parts[0]["thoughtSignature"], thought_signature(0, 0));
    assert!(parts[1].get("thoughtSignature").is_none() && parts[1]["functionCall"].get("id").is_none());
    assert_eq!(c[0]["candidates"][0]["finishReason"], "STOP", "calls end with STOP, as recorded");

    let fake = GeminiFake::start(GeminiFakeConfig { replies, function_call_ids: true, ..Default::default() })
        .await
        .unwrap();
    let (_, sse) = stream(&fake, &json!({"contents": [user("hi")]})).await;
    let c = chunks(&sse);
    assert_eq!(c[0]["candidates"][0]["content"]["parts"][1]["functionCall"]["id"], "fc_0_1");
}

#[tokio::test]
async fn a_blocked_prompt_and_a_safety_stop_are_scripted_per_request() {
    let config = GeminiFakeConfig {
        replies: vec![ScriptedReply::text("Some words.")],
        block_reasons: [(0, "SAFETY".to_string())].into(),
        finish_reasons: [(1, "SAFETY".to_string()), (2, "RECITATION".to_string())].into(),
        ..Default::default()
    };
    let fake = fake(config).await;
    let body = json!({"contents": [user("hi")]});
    let c = chunks(&stream(&fake, &body).await.1);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0]["promptFeedback"]["blockReason"], "SAFETY");
    assert!(c[0].get("candidates").is_none());
    let c = chunks(&stream(&fake, &body).await.1);
    let last = &c.last().unwrap()["candidates"][0];
    assert_eq!(last["finishReason"], "SAFETY");
    assert_eq!(last["safetyRatings"][0]["blocked"], true);
    assert!(c[..c.len() - 1].iter().all(|v| v["candidates"][0].get("finishReason").is_none()));
    let c = chunks(&stream(&fake, &body).await.1);
    assert_eq!(c.last().unwrap()["candidates"][0]["finishMessage"], "Fake finish: RECITATION");
}
