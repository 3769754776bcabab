//! The `http` handler against the example tool server, over real loopback.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use voxpipe_core::{ToolCall, ToolResult, ToolRuntime};
use voxpipe_fakes::tool_server::{ToolServer, ToolServerConfig};
use voxpipe_tools::{Error, ToolConfig, Tools};

const TOKEN: &str = "Bearer orders-SECRET-token";

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn env(var: &str) -> Option<String> {
    (var == "ORDERS_API_TOKEN").then(|| TOKEN.to_string())
}

fn call(name: &str, arguments: &str) -> ToolCall {
    ToolCall { call_id: format!("call_{name}"), name: name.into(), arguments: arguments.into() }
}

fn body(r: &ToolResult) -> Value {
    serde_json::from_str(&r.output).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.output))
}

/// The example's tools, pointed at `server`, with `extra` merged into `get_order_status`.
fn tools_for(server: &ToolServer, extra: Value) -> BTreeMap<String, ToolConfig> {
    let base = server.base_url();
    let mut order = json!({
        "description": "Look up an order",
        "parameters": {
            "type": "object",
            "properties": { "order_id": { "type": "string" } },
            "required": ["order_id"]
        },
        "handler": {
            "kind": "http",
            "url": format!("{base}/orders/status"),
            "headers": { "X-Client": "voxpipe-test" },
            "secret_headers": { "Authorization": "ORDERS_API_TOKEN" }
        },
        "idempotent": true
    });
    for (k, v) in extra.as_object().unwrap() {
        if k == "handler" {
            for (hk, hv) in v.as_object().unwrap() {
                order["handler"][hk] = hv.clone();
            }
        } else {
            order[k] = v.clone();
        }
    }
    serde_json::from_value(json!({
        "get_order_status": order,
        "book_appointment": {
            "description": "Book an appointment",
            "parameters": {
                "type": "object",
                "properties": {
                    "date": { "type": "string" }, "time": { "type": "string" }, "name": { "type": "string" }
                },
                "required": ["date", "time", "name"]
            },
            "handler": { "kind": "http", "url": format!("{base}/appointments/book") }
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn an_http_tool_posts_the_arguments_with_the_secret_header_and_returns_the_body() {
    let config =
        ToolServerConfig { required_authorization: Some(TOKEN.into()), ..ToolServerConfig::default() };
    let server = ToolServer::start_with(loopback(), config).await.unwrap();
    let tools = Tools::from_config_with_env(&tools_for(&server, json!({})), env).unwrap();
    let r = tools.call(&call("get_order_status", r#"{"order_id":"A-1001"}"#)).await;
    assert!(!r.is_error, "{}", r.output);
    assert_eq!(
        body(&r),
        json!({ "order_id": "A-1001", "status": "shipped", "carrier": "UPS", "eta": "2026-03-14" })
    );
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].body, json!({ "order_id": "A-1001" }));
    let header = |n: &str| reqs[0].headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    assert_eq!(header("authorization").as_deref(), Some(TOKEN));
    assert_eq!(header("x-client").as_deref(), Some("voxpipe-test"));
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    let debug = format!("{tools:?}");
    assert!(!debug.contains("SECRET"), "secret in Debug output: {debug}");
    assert!(debug.contains("[redacted]"), "{debug}");
}

#[tokio::test]
async fn a_non_2xx_answer_is_an_error_result_with_status_and_body() {
    let server = ToolServer::start().await.unwrap();
    let tools = Tools::from_config_with_env(&tools_for(&server, json!({})), env).unwrap();
    let r = tools.call(&call("get_order_status", r#"{"order_id":"Z-9"}"#)).await;
    assert!(r.is_error);
    let b = body(&r);
    assert_eq!(b["error"], "http_status");
    assert_eq!(b["status"], 404);
    assert!(b["details"][0].as_str().unwrap().contains("unknown order"), "{b}");
}

#[tokio::test]
async fn an_http_500_is_an_error_result_and_is_not_retried_by_default() {
    let config = ToolServerConfig { fail_requests: vec![(0, 500)], ..ToolServerConfig::default() };
    let server = ToolServer::start_with(loopback(), config).await.unwrap();
    let tools = Tools::from_config_with_env(&tools_for(&server, json!({})), env).unwrap();
    let r = tools.call(&call("get_order_status", r#"{"order_id":"A-1002"}"#)).await;
    assert!(r.is_error);
    assert_eq!(body(&r)["status"], 500);
    assert!(body(&r)["details"][0].as_str().unwrap().contains("injected fault"));
    assert_eq!(server.requests().len(), 1);
    // The conversation goes on: the next call succeeds.
    let r = tools.call(&call("get_order_status", r#"{"order_id":"A-1002"}"#)).await;
    assert!(!r.is_error, "{}", r.output);
}

#[tokio::test]
async fn an_idempotent_tool_retries_a_503() {
    let config = ToolServerConfig { fail_requests: vec![(0, 503)], ..ToolServerConfig::default() };
    let server = ToolServer::start_with(loopback(), config).await.unwrap();
    let tools = Tools::from_config_with_env(&tools_for(&server, json!({ "handler": { "retries": 2 } })), env)
        .unwrap();
    let r = tools.call(&call("get_order_status", r#"{"order_id":"A-1003"}"#)).await;
    assert!(!r.is_error, "{}", r.output);
    assert_eq!(body(&r)["status"], "delivered");
    assert_eq!(server.requests().iter().map(|r| r.status).collect::<Vec<_>>(), [503, 200]);
}

#[tokio::test]
async fn retries_on_a_non_idempotent_tool_are_a_construction_error() {
    let server = ToolServer::start().await.unwrap();
    let mut config = tools_for(&server, json!({}));
    let serde_json::Value::Object(mut book) = serde_json::to_value(&config["book_appointment"]).unwrap()
    else {
        unreachable!()
    };
    book["handler"]["retries"] = json!(1);
    config.insert("book_appointment".into(), serde_json::from_value(Value::Object(book)).unwrap());
    let err = Tools::from_config_with_env(&config, env).unwrap_err();
    assert!(err.to_string().starts_with("tools.book_appointment.handler.retries: "), "{err}");
}

#[tokio::test]
async fn a_missing_secret_is_a_construction_error_naming_the_variable() {
    let server = ToolServer::start().await.unwrap();
    let err = Tools::from_config_with_env(&tools_for(&server, json!({})), |_| None).unwrap_err();
    assert!(matches!(err, Error::MissingSecret(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("ORDERS_API_TOKEN"), "{text}");
}

#[tokio::test]
async fn a_duplicate_booking_is_answered_from_the_first_result_without_booking_twice() {
    let server = ToolServer::start().await.unwrap();
    let tools = Tools::from_config_with_env(&tools_for(&server, json!({})), env).unwrap();
    let args = r#"{"date":"2026-03-20","time":"14:30","name":"Ada"}"#;
    let first = tools.call(&call("book_appointment", args)).await;
    assert!(!first.is_error, "{}", first.output);
    assert!(body(&first)["confirmation"].as_str().unwrap().starts_with("APT-"));
    let retry =
        tools.call(&call("book_appointment", r#"{"name":"Ada","time":"14:30","date":"2026-03-20"}"#)).await;
    assert_eq!(retry.output, first.output);
    assert!(!retry.is_error);
    assert_eq!(server.requests().len(), 1, "booked twice");
    // Without the guard the server would refuse: a new call (fresh Tools) hits the 409.
    let r = tools.clone().call(&call("book_appointment", args)).await;
    assert_eq!(body(&r)["status"], 409);
    assert!(body(&r)["details"][0].as_str().unwrap().contains("slot taken"));
}

#[tokio::test]
async fn an_unreachable_endpoint_is_an_error_result() {
    let server = ToolServer::start().await.unwrap();
    let config = tools_for(&server, json!({ "timeout_ms": 2000 }));
    server.stop();
    drop(server);
    let tools = Tools::from_config_with_env(&config, env).unwrap();
    // The listener is gone once the server task ends; give it a moment.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let r = tools.call(&call("get_order_status", r#"{"order_id":"A-1001"}"#)).await;
    assert!(r.is_error);
    let code = body(&r)["error"].as_str().unwrap().to_string();
    assert!(code == "http_unreachable" || code == "timeout", "{}", r.output);
}

/// A secret header is never sent over plain HTTP to another machine; loopback stays allowed.
#[test]
fn secret_headers_over_plain_http_to_another_host_are_refused() {
    let mut tools = tools_for_url("http://orders.example.com/orders/status");
    let err = Tools::from_config_with_env(&tools, env).unwrap_err();
    let Error::InvalidConfig { key, message } = &err else { panic!("{err}") };
    assert_eq!(key, "tools.get_order_status.handler.url");
    assert!(message.contains("only over https"), "{message}");
    for ok in
        ["https://orders.example.com/s", "http://127.0.0.1:9/s", "http://localhost:9/s", "http://[::1]:9/s"]
    {
        tools = tools_for_url(ok);
        Tools::from_config_with_env(&tools, env).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

fn tools_for_url(url: &str) -> BTreeMap<String, ToolConfig> {
    serde_json::from_value(json!({
        "get_order_status": {
            "description": "Look up an order",
            "parameters": { "type": "object", "properties": {} },
            "handler": { "kind": "http", "url": url, "secret_headers": { "Authorization": "ORDERS_API_TOKEN" } }
        }
    }))
    .unwrap()
}

/// A tool endpoint that redirects to another origin does not get the secret header sent
/// there: the redirect is not followed and the call is an error result.
#[tokio::test]
async fn a_redirect_to_another_origin_is_not_followed_with_the_secret() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The other origin: counts the requests it receives.
    let other = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let other_port = other.local_addr().unwrap().port();
    let reached = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let r = reached.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = other.accept().await {
            r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").await;
        }
    });
    // The tool's endpoint: answers every request with a 307 to the other origin.
    let first = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let first_port = first.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = first.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let reply = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://localhost:{other_port}/steal\r\ncontent-length: 0\r\n\r\n"
            );
            let _ = s.write_all(reply.as_bytes()).await;
        }
    });
    let tools =
        Tools::from_config_with_env(&tools_for_url(&format!("http://127.0.0.1:{first_port}/orders")), env)
            .unwrap();
    let result = tools.call(&call("get_order_status", "{}")).await;
    assert!(result.is_error, "{}", result.output);
    assert!(result.output.contains("307"), "{}", result.output);
    assert_eq!(reached.load(std::sync::atomic::Ordering::SeqCst), 0, "the other origin was contacted");
}
