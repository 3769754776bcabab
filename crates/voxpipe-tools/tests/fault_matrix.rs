//! Fault matrix rows for the `http` tool handler against the example tool server: each test
//! injects one fault of `voxpipe_fakes::fault` into the first request and checks the tool
//! call ends with a result the model can read (an error result, or the body as it came), in
//! bounded time, and that the next call works.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use voxpipe_core::{ToolCall, ToolResult, ToolRuntime};
use voxpipe_fakes::fault::FaultSpec;
use voxpipe_fakes::tool_server::{ToolServer, ToolServerConfig};
use voxpipe_tools::{ToolConfig, Tools};

fn call() -> ToolCall {
    ToolCall {
        call_id: "call_1".into(),
        name: "get_order_status".into(),
        arguments: r#"{"order_id":"A-1003"}"#.into(),
    }
}

/// Starts the tool server with `spec`, calls the tool twice: (first result, second result,
/// statuses the server answered).
async fn twice(spec: &str, extra: Value) -> (ToolResult, ToolResult, Vec<u16>) {
    let spec: FaultSpec = spec.parse().unwrap();
    let config = ToolServerConfig { faults: [(spec.index, spec.fault)].into(), ..Default::default() };
    let server = ToolServer::start_with(SocketAddr::from(([127, 0, 0, 1], 0)), config).await.unwrap();
    let mut tool = json!({
        "description": "Look up an order",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
        "handler": {"kind": "http", "url": format!("{}/orders/status", server.base_url())},
        "idempotent": true,
        "timeout_ms": 1000
    });
    for (k, v) in extra.as_object().unwrap() {
        if k == "handler" {
            for (hk, hv) in v.as_object().unwrap() {
                tool["handler"][hk] = hv.clone();
            }
        } else {
            tool[k] = v.clone();
        }
    }
    let config: BTreeMap<String, ToolConfig> =
        serde_json::from_value(json!({ "get_order_status": tool })).unwrap();
    let tools = Tools::from_config_with_env(&config, |_| None).unwrap();
    let first = tools.call(&call()).await;
    let second = tools.call(&call()).await;
    (first, second, server.requests().iter().map(|r| r.status).collect())
}

fn delivered(r: &ToolResult) -> Value {
    assert!(!r.is_error, "{}", r.output);
    serde_json::from_str(&r.output).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.output))
}

#[tokio::test(start_paused = true)]
async fn tool_http_429_with_retry_after_on_an_idempotent_tool_is_retried_after_it_and_answered() {
    let started = tokio::time::Instant::now();
    let extra = json!({"handler": {"retries": 2}, "timeout_ms": 3000});
    let (first, _, statuses) = twice("0=status:429:retry-after=1", extra).await;
    assert_eq!(delivered(&first)["status"], "delivered");
    assert_eq!(statuses, [429, 200, 200]);
    // Virtual time: the retry waited the endpoint's second, not the 200 ms back-off.
    assert!(started.elapsed() >= std::time::Duration::from_secs(1), "{:?}", started.elapsed());
}

#[tokio::test(start_paused = true)]
async fn tool_http_429_asking_longer_than_the_tool_timeout_is_a_timeout_and_the_next_call_works() {
    let (first, second, _) = twice("0=status:429:retry-after=5", json!({"handler": {"retries": 2}})).await;
    assert!(first.is_error && first.output.contains("timeout"), "{}", first.output);
    assert_eq!(delivered(&second)["status"], "delivered");
}

#[tokio::test]
async fn tool_http_500_is_an_error_result_and_the_next_call_works() {
    let (first, second, _) = twice("0=status:500", json!({})).await;
    assert!(first.is_error, "{}", first.output);
    assert!(first.output.contains("500"), "{}", first.output);
    assert_eq!(delivered(&second)["status"], "delivered");
}

#[tokio::test(start_paused = true)]
async fn tool_http_slow_past_the_timeout_is_an_error_result_and_the_next_call_works() {
    // 16-byte groups 200 ms apart: the ~90-byte answer takes over a second.
    let (first, second, _) = twice("0=slow:200", json!({})).await;
    assert!(first.is_error, "{}", first.output);
    assert!(
        first.output.to_lowercase().contains("timed out") || first.output.contains("timeout"),
        "{}",
        first.output
    );
    assert_eq!(delivered(&second)["status"], "delivered");
}

#[tokio::test(start_paused = true)]
async fn tool_http_slow_under_the_timeout_is_answered_whole() {
    let (first, _, _) = twice("0=slow:20", json!({})).await;
    assert_eq!(delivered(&first)["status"], "delivered");
}

#[tokio::test(start_paused = true)]
async fn tool_http_stall_is_a_timeout_error_result_and_the_next_call_works() {
    let (first, second, _) = twice("0=stall-after:1", json!({})).await;
    assert!(first.is_error, "{}", first.output);
    assert_eq!(delivered(&second)["status"], "delivered");
}

#[tokio::test]
async fn tool_http_cut_mid_body_is_an_error_result_and_the_next_call_works() {
    let (first, second, _) = twice("0=cut-after:2", json!({})).await;
    assert!(first.is_error, "{}", first.output);
    assert_eq!(delivered(&second)["status"], "delivered");
}

#[tokio::test]
async fn tool_http_malformed_body_is_handed_to_the_model_as_text_and_the_next_call_works() {
    let (first, second, _) = twice("0=malformed", json!({})).await;
    assert!(!first.is_error, "a 200 is the tool's answer, whatever its shape: {}", first.output);
    assert!(first.output.starts_with("{\"") && serde_json::from_str::<Value>(&first.output).is_err());
    assert_eq!(delivered(&second)["status"], "delivered");
}

#[tokio::test]
async fn tool_http_oversize_body_is_cut_to_max_result_bytes_and_marked() {
    let (first, _, _) = twice("0=oversize:1m", json!({"max_result_bytes": 4096})).await;
    assert!(!first.is_error);
    assert!(first.output.len() < 4096 + 200, "{} bytes", first.output.len());
    assert!(
        first.output.contains("cut") || first.output.contains("truncated"),
        "marked: {}",
        &first.output[first.output.len() - 120..]
    );
}
