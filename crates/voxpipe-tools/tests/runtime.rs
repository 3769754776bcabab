//! The runtime's behaviour with built-in, command and Rust handlers (no network).

use async_trait::async_trait;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use voxpipe_core::{ToolAction, ToolCall, ToolResult, ToolRuntime, ToolSpec};
use voxpipe_tools::{Error, ToolConfig, ToolHandler, ToolOptions, ToolOutput, Tools};

fn configs(v: Value) -> BTreeMap<String, ToolConfig> {
    serde_json::from_value(v).unwrap()
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn call(name: &str, arguments: &str) -> ToolCall {
    ToolCall { call_id: format!("call_{name}"), name: name.into(), arguments: arguments.into() }
}

fn body(r: &ToolResult) -> Value {
    serde_json::from_str(&r.output).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.output))
}

fn order_schema() -> Value {
    json!({
        "type": "object",
        "properties": { "order_id": { "type": "string" }, "count": { "type": "integer", "minimum": 1 } },
        "required": ["order_id"],
        "additionalProperties": false
    })
}

/// Records when each call started and ended (tokio clock), sleeping `work` in between.
#[derive(Debug, Default)]
struct Recording {
    work: Duration,
    spans: Mutex<Vec<(Instant, Instant)>>,
    args: Mutex<Vec<Value>>,
}

#[async_trait]
impl ToolHandler for Recording {
    async fn call(&self, arguments: Value) -> Result<ToolOutput, String> {
        let start = Instant::now();
        self.args.lock().unwrap().push(arguments.clone());
        tokio::time::sleep(self.work).await;
        self.spans.lock().unwrap().push((start, Instant::now()));
        Ok(json!({ "ok": true, "echo": arguments }).to_string().into())
    }
}

#[derive(Debug)]
struct Panics;

#[async_trait]
impl ToolHandler for Panics {
    async fn call(&self, _: Value) -> Result<ToolOutput, String> {
        panic!("handler bug");
    }
}

#[derive(Debug)]
struct Big(usize);

#[async_trait]
impl ToolHandler for Big {
    async fn call(&self, _: Value) -> Result<ToolOutput, String> {
        Ok("ü".repeat(self.0).into())
    }
}

fn spec(name: &str, parameters: Value) -> ToolSpec {
    ToolSpec { name: name.into(), description: format!("{name} tool"), parameters }
}

fn with_handler(name: &str, h: Arc<dyn ToolHandler>, options: ToolOptions) -> Tools {
    let mut tools = Tools::default();
    tools.register_with(spec(name, order_schema()), h, options).unwrap();
    tools
}

#[tokio::test(start_paused = true)]
async fn schema_violation_returns_a_structured_error_and_skips_the_handler() {
    let h = Arc::new(Recording::default());
    let tools = with_handler("lookup", h.clone(), ToolOptions::default());
    let r = tools.call(&call("lookup", r#"{"order_id": 42, "count": 0}"#)).await;
    assert!(r.is_error);
    let b = body(&r);
    assert_eq!(b["error"], "invalid_arguments");
    let details: Vec<&str> = b["details"].as_array().unwrap().iter().map(|d| d.as_str().unwrap()).collect();
    assert!(details.iter().any(|d| d.starts_with("/order_id: ") && d.contains("string")), "{details:?}");
    assert!(details.iter().any(|d| d.starts_with("/count: ")), "{details:?}");
    let r = tools.call(&call("lookup", r#"{"count": 2}"#)).await;
    assert!(body(&r)["details"][0].as_str().unwrap().starts_with("/: "), "{}", r.output);
    assert!(h.args.lock().unwrap().is_empty(), "the handler must not run on invalid arguments");
}

#[tokio::test(start_paused = true)]
async fn malformed_json_from_the_model_returns_a_structured_error() {
    let tools = with_handler("lookup", Arc::new(Recording::default()), ToolOptions::default());
    let r = tools.call(&call("lookup", r#"{"order_id": "A-1"#)).await;
    assert!(r.is_error);
    let b = body(&r);
    assert_eq!(b["error"], "malformed_arguments");
    assert!(b["details"][0].as_str().unwrap().contains("line 1"), "{b}");
    assert!(b["hint"].is_string());
    // The conversation goes on: a corrected call succeeds.
    let r = tools.call(&call("lookup", r#"{"order_id": "A-1"}"#)).await;
    assert!(!r.is_error, "{}", r.output);
}

#[test]
fn an_invalid_schema_in_config_is_a_construction_error_naming_the_key() {
    let c = configs(json!({
        "broken": { "description": "d", "parameters": { "type": "objekt" }, "handler": { "kind": "end_call" } }
    }));
    let err = Tools::from_config_with_env(&c, no_env).unwrap_err();
    assert!(matches!(err, Error::InvalidSchema { .. }), "{err:?}");
    assert!(err.to_string().starts_with("tools.broken.parameters: "), "{err}");
    // The lenient constructor keeps the call going: the tool answers `tool_unavailable`.
    let tools = Tools::from_config(&c);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let r = rt.block_on(tools.call(&call("broken", "{}")));
    assert_eq!(body(&r)["error"], "tool_unavailable");
}

#[tokio::test(start_paused = true)]
async fn a_handler_exceeding_its_timeout_returns_an_error_result_at_the_timeout() {
    let h = Arc::new(Recording { work: Duration::from_secs(60), ..Recording::default() });
    let options = ToolOptions { timeout: Duration::from_millis(500), ..ToolOptions::default() };
    let tools = with_handler("slow", h, options);
    let start = Instant::now();
    let r = tools.call(&call("slow", r#"{"order_id":"x"}"#)).await;
    assert_eq!(start.elapsed(), Duration::from_millis(500));
    assert!(r.is_error);
    assert_eq!(body(&r)["error"], "timeout");
    assert_eq!(r.duration, Duration::from_millis(500));
}

#[tokio::test]
async fn a_panicking_rust_handler_returns_an_error_result() {
    let tools = with_handler("buggy", Arc::new(Panics), ToolOptions::default());
    let r = tools.call(&call("buggy", r#"{"order_id":"x"}"#)).await;
    assert!(r.is_error);
    assert_eq!(body(&r)["error"], "handler_panicked");
    let r = tools.call(&call("buggy", r#"{"order_id":"y"}"#)).await;
    assert_eq!(body(&r)["error"], "handler_panicked", "the runtime still works after a panic");
}

#[tokio::test(start_paused = true)]
async fn two_parallel_calls_run_concurrently() {
    let h = Arc::new(Recording { work: Duration::from_millis(300), ..Recording::default() });
    let options = ToolOptions { idempotent: true, ..ToolOptions::default() };
    let tools = with_handler("lookup", h.clone(), options);
    let a =
        ToolCall { call_id: "call_a".into(), name: "lookup".into(), arguments: r#"{"order_id":"A"}"#.into() };
    let b =
        ToolCall { call_id: "call_b".into(), name: "lookup".into(), arguments: r#"{"order_id":"B"}"#.into() };
    let results = futures_util::future::join_all([tools.call(&a), tools.call(&b)]).await;
    assert_eq!(results.iter().map(|r| r.call_id.as_str()).collect::<Vec<_>>(), ["call_a", "call_b"]);
    assert!(results.iter().all(|r| !r.is_error));
    let spans = h.spans.lock().unwrap().clone();
    assert_eq!(spans.len(), 2);
    let latest_start = spans.iter().map(|s| s.0).max().unwrap();
    let earliest_end = spans.iter().map(|s| s.1).min().unwrap();
    assert!(latest_start < earliest_end, "the calls did not overlap: {spans:?}");
}

#[tokio::test(start_paused = true)]
async fn a_repeated_non_idempotent_call_is_answered_from_the_first_result() {
    let h = Arc::new(Recording { work: Duration::from_millis(200), ..Recording::default() });
    let tools = with_handler("book", h.clone(), ToolOptions::default());
    let first = tools.call(&call("book", r#"{"order_id":"A","count":2}"#)).await;
    // Same arguments in another order and spacing, in parallel twice: still one run.
    let again = call("book", r#"{ "count": 2, "order_id": "A" }"#);
    let dup = futures_util::future::join_all([tools.call(&again), tools.call(&again)]).await;
    assert_eq!(h.args.lock().unwrap().len(), 1);
    for r in &dup {
        assert_eq!(r.output, first.output);
        assert!(!r.is_error);
    }
    // Different arguments run; a clone (a new call) starts with an empty cache.
    tools.call(&call("book", r#"{"order_id":"B"}"#)).await;
    assert_eq!(h.args.lock().unwrap().len(), 2);
    tools.clone().call(&call("book", r#"{"order_id":"A","count":2}"#)).await;
    assert_eq!(h.args.lock().unwrap().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_failed_non_idempotent_call_may_be_retried() {
    let h = Arc::new(Recording { work: Duration::from_secs(5), ..Recording::default() });
    let options = ToolOptions { timeout: Duration::from_secs(1), ..ToolOptions::default() };
    let tools = with_handler("book", h.clone(), options);
    assert!(tools.call(&call("book", r#"{"order_id":"A"}"#)).await.is_error);
    assert!(tools.call(&call("book", r#"{"order_id":"A"}"#)).await.is_error);
    assert_eq!(h.args.lock().unwrap().len(), 2, "errors are not cached");
}

#[tokio::test]
async fn results_longer_than_the_cap_are_cut_at_a_char_boundary_with_a_marker() {
    let options = ToolOptions { max_result_bytes: 1000, ..ToolOptions::default() };
    let tools = with_handler("big", Arc::new(Big(10_000)), options);
    let r = tools.call(&call("big", r#"{"order_id":"x"}"#)).await;
    assert!(!r.is_error);
    assert!(r.output.len() <= 1000, "{}", r.output.len());
    assert!(r.output.len() > 900);
    assert!(r.output.starts_with("üü"));
    assert!(r.output.ends_with("[truncated: 20000 bytes in all]"), "{}", &r.output[900..]);
}

#[tokio::test]
async fn unknown_tools_get_an_error_result() {
    let r = Tools::default().call(&call("nope", "{}")).await;
    assert!(r.is_error);
    assert_eq!(body(&r)["error"], "unknown_tool");
}

fn sh(script: &str, extra: Value) -> Value {
    let mut t = json!({
        "description": "shell test",
        "handler": { "kind": "command", "program": "/bin/sh", "args": ["-c", script] }
    });
    for (k, v) in extra.as_object().unwrap() {
        t[k] = v.clone();
    }
    t
}

#[tokio::test]
async fn a_command_gets_the_arguments_on_stdin_and_its_stdout_is_the_result() {
    let c = configs(json!({ "echo": sh("cat", json!({})) }));
    let tools = Tools::from_config_with_env(&c, no_env).unwrap();
    let args = r#"{"text":"$(touch /tmp/voxpipe-pwned); rm -rf / `id`"}"#;
    let r = tools.call(&call("echo", args)).await;
    assert!(!r.is_error, "{}", r.output);
    assert_eq!(body(&r), serde_json::from_str::<Value>(args).unwrap());
    assert!(!std::path::Path::new("/tmp/voxpipe-pwned").exists());
}

#[tokio::test]
async fn a_command_sees_only_its_own_environment_never_voxpipes_secrets() {
    // `CARGO` is in this test process's environment, as an API key would be in voxpipe's.
    assert!(std::env::var("CARGO").is_ok());
    let script = r#"cat >/dev/null; printf '{"cargo":"%s","path":"%s","region":"%s","token":"%s"}' "$CARGO" "$PATH" "$REGION" "$TOKEN""#;
    let mut handler = sh(script, json!({}))["handler"].clone();
    handler["env"] = json!({ "REGION": "eu" });
    handler["secret_env"] = json!({ "TOKEN": "ORDERS_API_TOKEN" });
    let c = configs(json!({ "env": { "description": "d", "handler": handler } }));
    let env = |var: &str| (var == "ORDERS_API_TOKEN").then(|| "tok-123".to_string());
    let tools = Tools::from_config_with_env(&c, env).unwrap();
    let r = tools.call(&call("env", "{}")).await;
    assert!(!r.is_error, "{}", r.output);
    let b = body(&r);
    assert_eq!(b["cargo"], "", "voxpipe's environment is not inherited");
    assert!(!b["path"].as_str().unwrap().is_empty(), "PATH is");
    assert_eq!((b["region"].as_str(), b["token"].as_str()), (Some("eu"), Some("tok-123")));
    assert!(!format!("{tools:?}").contains("tok-123"), "the secret is redacted in Debug");

    let err = Tools::from_config_with_env(&c, no_env).unwrap_err();
    assert!(err.to_string().contains("ORDERS_API_TOKEN"), "{err}");
    assert!(
        matches!(err, voxpipe_tools::Error::MissingSecret(ref m) if m.key == "tools.env.handler.secret_env.TOKEN")
    );
}

#[tokio::test]
async fn a_command_exiting_non_zero_returns_an_error_with_its_stderr() {
    let c = configs(json!({ "fails": sh("cat >/dev/null; echo 'no such order' >&2; exit 3", json!({})) }));
    let tools = Tools::from_config_with_env(&c, no_env).unwrap();
    let r = tools.call(&call("fails", "{}")).await;
    assert!(r.is_error);
    let b = body(&r);
    assert_eq!(b["error"], "command_failed");
    let detail = b["details"][0].as_str().unwrap();
    assert!(detail.contains("exit status: 3") && detail.contains("no such order"), "{detail}");
}

/// Waits (up to 5 s) until process `pid` is gone or a zombie awaiting its reaper; false if it
/// is still running then.
async fn dies(pid: &str) -> bool {
    for _ in 0..250 {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
        let alive = state.as_deref().is_some_and(|s| {
            let after = s.rsplit(')').next().unwrap_or("");
            !after.trim_start().starts_with('Z')
        });
        if !alive {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("voxpipe-tools-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn a_command_past_its_timeout_is_killed_with_what_it_started_and_returns_an_error() {
    let dir = scratch_dir("timeout");
    let (pid_file, child_file) = (dir.join("pid"), dir.join("child"));
    // The program starts a background child of its own, then hangs.
    let script = format!(
        "sleep 30 & echo $! > {}; echo $$ > {}; exec sleep 30",
        child_file.display(),
        pid_file.display()
    );
    let c = configs(json!({ "slow": sh(&script, json!({ "timeout_ms": 300 })) }));
    let tools = Tools::from_config_with_env(&c, no_env).unwrap();
    let r = tools.call(&call("slow", "{}")).await;
    assert_eq!(body(&r)["error"], "timeout");
    for file in [&pid_file, &child_file] {
        let pid = std::fs::read_to_string(file).unwrap().trim().to_string();
        assert!(dies(&pid).await, "process {pid} ({}) still running", file.display());
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_command_that_leaves_a_background_process_returns_its_result_and_the_process_is_killed() {
    let dir = scratch_dir("background");
    let child_file = dir.join("child");
    // The background child inherits stdout: without the group kill, reading the result would
    // wait for it to close the pipe (30 s, past the tool's timeout).
    let script = format!("sleep 30 & echo $! > {}; echo done", child_file.display());
    let c = configs(json!({ "bg": sh(&script, json!({ "timeout_ms": 10_000 })) }));
    let tools = Tools::from_config_with_env(&c, no_env).unwrap();
    let r = tools.call(&call("bg", "{}")).await;
    assert!(!r.is_error, "{}", r.output);
    assert_eq!(r.output, "done");
    let pid = std::fs::read_to_string(&child_file).unwrap().trim().to_string();
    assert!(dies(&pid).await, "background process {pid} still running");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn end_call_and_transfer_return_their_actions() {
    let c = configs(json!({
        "end_call": { "description": "bye", "handler": { "kind": "end_call" } },
        "transfer_to_human": {
            "description": "human",
            "parameters": { "type": "object", "properties": { "reason": { "type": "string" } } },
            "handler": { "kind": "handoff", "target": "support-queue" }
        }
    }));
    let tools = Tools::from_config_with_env(&c, no_env).unwrap();
    let r = tools.call(&call("end_call", "")).await;
    assert_eq!(r.action, Some(ToolAction::EndCall));
    let r = tools.call(&call("transfer_to_human", r#"{"reason":"wants a refund"}"#)).await;
    assert_eq!(
        r.action,
        Some(ToolAction::Handoff { reason: "wants a refund".into(), target: Some("support-queue".into()) })
    );
    assert_eq!(body(&r)["transferred_to"], "support-queue");
}

#[tokio::test(start_paused = true)]
async fn hold_waits_the_requested_seconds_capped_by_config() {
    let c = configs(json!({
        "hold": {
            "description": "wait",
            "parameters": { "type": "object", "properties": { "seconds": { "type": "number" } } },
            "handler": { "kind": "wait", "max_seconds": 10 }
        }
    }));
    let tools = Tools::from_config_with_env(&c, no_env).unwrap();
    let start = Instant::now();
    let r = tools.call(&call("hold", r#"{"seconds": 3}"#)).await;
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    assert_eq!(body(&r)["waited_seconds"], 3.0);
    let start = Instant::now();
    let r = tools.call(&call("hold", r#"{"seconds": 600}"#)).await;
    assert!(!r.is_error, "{}", r.output);
    assert_eq!(start.elapsed(), Duration::from_secs(10));
}

#[test]
fn a_hold_timeout_shorter_than_its_longest_wait_is_rejected() {
    let c = configs(json!({
        "hold": { "description": "wait", "handler": { "kind": "hold", "max_seconds": 10 }, "timeout_ms": 5000 }
    }));
    let err = Tools::from_config_with_env(&c, no_env).unwrap_err();
    assert!(err.to_string().starts_with("tools.hold.timeout_ms: "), "{err}");
}

#[test]
fn filler_comes_from_config_with_its_delay() {
    let c = configs(json!({
        "slow": { "description": "d", "handler": { "kind": "end_call" }, "filler": "One moment while I check." },
        "fast": { "description": "d", "handler": { "kind": "end_call" }, "filler": "Hm.", "filler_after_ms": 400 },
        "quiet": { "description": "d", "handler": { "kind": "end_call" } }
    }));
    let tools = Tools::from_config_with_env(&c, no_env).unwrap();
    assert_eq!(
        tools.filler_for("slow"),
        Some(("One moment while I check.".into(), Duration::from_millis(1500)))
    );
    assert_eq!(tools.filler_for("fast"), Some(("Hm.".into(), Duration::from_millis(400))));
    assert_eq!(tools.filler_for("quiet"), None);
    assert_eq!(tools.filler_for("missing"), None);
}

#[test]
fn the_pipeline_default_filler_covers_tools_without_their_own() {
    let c = configs(json!({
        "own": { "description": "d", "handler": { "kind": "end_call" }, "filler": "Hm.", "filler_after_ms": 400 },
        "plain": { "description": "d", "handler": { "kind": "end_call" } },
        "silent": { "description": "d", "handler": { "kind": "end_call" }, "filler": "" }
    }));
    let defaults =
        voxpipe_tools::ToolDefaults { filler: Some("One moment please.".into()), filler_after_ms: 900 };
    let tools = Tools::from_config_with_env(&c, no_env).unwrap().with_defaults(&defaults);
    assert_eq!(tools.filler_for("own"), Some(("Hm.".into(), Duration::from_millis(400))), "its own wins");
    assert_eq!(tools.filler_for("plain"), Some(("One moment please.".into(), Duration::from_millis(900))));
    assert_eq!(tools.filler_for("silent"), None, "an empty filler opts out");
    assert_eq!(tools.filler_for("missing"), None);
}

#[test]
fn the_example_tools_file_builds() {
    #[derive(serde::Deserialize)]
    struct File {
        tools: BTreeMap<String, ToolConfig>,
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../pipelines/tools.example.toml");
    let file: File = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let tools = Tools::from_config_with_env(&file.tools, no_env).unwrap();
    let names: Vec<&str> = tools.specs().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["book_appointment", "end_call", "get_order_status", "transfer_to_human"]);
    assert!(tools.filler_for("get_order_status").is_some());
}

#[test]
fn the_example_pipelines_declare_exactly_the_example_tools() {
    #[derive(serde::Deserialize)]
    struct File {
        tools: BTreeMap<String, ToolConfig>,
    }
    let read = |name: &str| -> BTreeMap<String, ToolConfig> {
        let path = format!("{}/../../pipelines/{name}", env!("CARGO_MANIFEST_DIR"));
        #[derive(serde::Deserialize)]
        struct Any {
            tools: BTreeMap<String, ToolConfig>,
            #[serde(flatten)]
            _rest: BTreeMap<String, toml::Value>,
        }
        let any: Any = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        any.tools
    };
    let example: File = toml::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../pipelines/tools.example.toml"))
            .unwrap(),
    )
    .unwrap();
    // Declared once: the native and the cascade example offer the very same tools.
    assert_eq!(read("tools-native-fake.toml"), example.tools);
    assert_eq!(read("tools-cascade-fake.toml"), example.tools);
}
