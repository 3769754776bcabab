//! The runtime: a [`ToolRuntime`] over configured and code-registered handlers.

use crate::Error;
use crate::command::CommandHandler;
use crate::config::{HandlerConfig, ToolConfig};
use crate::handler::{Handler, ToolHandler, ToolOutput};
use crate::http::HttpHandler;
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio::time::Instant;
use voxpipe_core::{ToolCall, ToolResult, ToolRuntime, ToolSpec};

/// Handler timeout when the config names none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Result size cap when the config names none (models pay per token, callers wait for them).
pub const DEFAULT_MAX_RESULT_BYTES: usize = 16 * 1024;
/// Delay before a tool's filler is spoken, when the config names none.
pub const DEFAULT_FILLER_AFTER: Duration = Duration::from_millis(1500);

/// How a code-registered tool behaves (the `[tools.NAME]` settings besides the handler).
#[derive(Debug, Clone)]
pub struct ToolOptions {
    /// Handler timeout. Default: 10 s.
    pub timeout: Duration,
    /// Result size cap, bytes. Default: 16384.
    pub max_result_bytes: usize,
    /// Whether a repeated identical call is harmless; when false, it is answered from the first
    /// result. Default: false.
    pub idempotent: bool,
    /// Filler speech and the delay before it. Default: none.
    pub filler: Option<(String, Duration)>,
}

impl Default for ToolOptions {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            max_result_bytes: DEFAULT_MAX_RESULT_BYTES,
            idempotent: false,
            filler: None,
        }
    }
}

struct Entry {
    handler: Handler,
    validator: Option<jsonschema::Validator>,
    options: ToolOptions,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry").field("handler", &self.handler).field("options", &self.options).finish()
    }
}

/// Results of non-idempotent calls, by tool name and canonical arguments. A cell is filled
/// once by the first successful run; concurrent duplicates wait for it.
type ResultCache = Mutex<HashMap<(String, String), Arc<OnceCell<ToolOutput>>>>;

/// The tools of one call.
///
/// Calls run concurrently (`&self`; nothing is locked while a handler runs). Holds the
/// idempotency cache of this call: cloning gives the same tools with an empty cache, so build
/// (or clone) one `Tools` per call.
#[derive(Default)]
pub struct Tools {
    specs: Vec<ToolSpec>,
    entries: BTreeMap<String, Arc<Entry>>,
    cache: ResultCache,
    /// The pipeline's filler for tools without their own.
    default_filler: Option<(String, Duration)>,
}

impl std::fmt::Debug for Tools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Cached results may hold personal data: show how many, not what.
        let cached = self.cache.lock().map(|c| c.len()).unwrap_or(0);
        f.debug_struct("Tools").field("entries", &self.entries).field("cached_results", &cached).finish()
    }
}

impl Clone for Tools {
    fn clone(&self) -> Self {
        Self {
            specs: self.specs.clone(),
            entries: self.entries.clone(),
            cache: ResultCache::default(),
            default_filler: self.default_filler.clone(),
        }
    }
}

impl Tools {
    /// Tools from the pipeline file's `[tools]` table, reading secret headers from `env`
    /// (variable name → value; pass the process environment or a test map).
    ///
    /// # Errors
    /// The first tool that cannot be built: an invalid schema (`tools.NAME.parameters`), a
    /// missing secret, retries on a non-idempotent tool, a bad URL or header.
    pub fn from_config_with_env(
        tools: &BTreeMap<String, ToolConfig>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        let client = http_client(tools)?;
        let mut t = Self::default();
        for (name, c) in tools {
            let (spec, entry) = build_entry(name, c, client.clone(), &env)?;
            t.insert(spec, entry);
        }
        Ok(t)
    }

    /// Tools from the `[tools]` table with secrets from the process environment. A tool that
    /// cannot be built is logged at ERROR and answers every call with a `tool_unavailable`
    /// error result; prefer [`Tools::from_config_with_env`], which reports it up front.
    pub fn from_config(tools: &BTreeMap<String, ToolConfig>) -> Self {
        let env = |var: &str| std::env::var(var).ok();
        let client = match http_client(tools) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "tools: cannot build the HTTP client");
                None
            }
        };
        let mut t = Self::default();
        for (name, c) in tools {
            match build_entry(name, c, client.clone(), &env) {
                Ok((spec, entry)) => t.insert(spec, entry),
                Err(e) => {
                    tracing::error!(tool = %name, error = %e, "tool is unavailable");
                    let spec = ToolSpec {
                        name: name.clone(),
                        description: c.description.clone(),
                        parameters: c.parameters.clone(),
                    };
                    let handler = Handler::Unavailable(e.to_string());
                    t.insert(spec, Entry { handler, validator: None, options: ToolOptions::default() });
                }
            }
        }
        t
    }

    /// Registers a Rust handler (replacing a tool of the same name) with default options and
    /// `timeout`. A spec whose `parameters` is not a valid schema registers a tool that answers
    /// `tool_unavailable`; use [`Tools::register_with`] to get the error.
    pub fn register(&mut self, spec: ToolSpec, handler: Arc<dyn ToolHandler>, timeout: Duration) {
        let options = ToolOptions { timeout, ..ToolOptions::default() };
        if let Err(e) = self.register_with(spec.clone(), handler, options) {
            tracing::error!(tool = %spec.name, error = %e, "tool is unavailable");
            let entry = Entry {
                handler: Handler::Unavailable(e.to_string()),
                validator: None,
                options: ToolOptions::default(),
            };
            self.insert(spec, entry);
        }
    }

    /// Registers a Rust handler (replacing a tool of the same name).
    ///
    /// # Errors
    /// [`Error::InvalidSchema`] when `spec.parameters` is not a valid JSON Schema.
    pub fn register_with(
        &mut self,
        spec: ToolSpec,
        handler: Arc<dyn ToolHandler>,
        options: ToolOptions,
    ) -> Result<(), Error> {
        let validator = compile_schema(&spec.name, &spec.parameters)?;
        self.insert(spec, Entry { handler: Handler::Code(handler), validator: Some(validator), options });
        Ok(())
    }

    /// The filler to speak if tool `name` is still running after the returned delay: the
    /// tool's own, else the pipeline's default (`[tool_defaults]`); an empty filler is none.
    pub fn filler_for(&self, name: &str) -> Option<(String, Duration)> {
        let entry = self.entries.get(name)?;
        entry
            .options
            .filler
            .clone()
            .or_else(|| self.default_filler.clone())
            .filter(|(text, _)| !text.trim().is_empty())
    }

    /// Applies the pipeline-wide `[tool_defaults]`.
    pub fn with_defaults(mut self, d: &crate::config::ToolDefaults) -> Self {
        self.default_filler = d.filler.clone().map(|text| (text, Duration::from_millis(d.filler_after_ms)));
        self
    }

    fn insert(&mut self, spec: ToolSpec, entry: Entry) {
        self.specs.retain(|s| s.name != spec.name);
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).retain(|(n, _), _| n != &spec.name);
        self.entries.insert(spec.name.clone(), Arc::new(entry));
        self.specs.push(spec);
    }

    /// Parses, validates and runs one call (through the idempotency guard when it applies).
    async fn run_call(&self, call: &ToolCall) -> Result<(ToolOutput, bool), Error> {
        let entry =
            self.entries.get(&call.name).ok_or_else(|| Error::UnknownTool { name: call.name.clone() })?;
        let text = if call.arguments.trim().is_empty() { "{}" } else { call.arguments.as_str() };
        let args: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::MalformedArguments { message: e.to_string() })?;
        if let Some(v) = &entry.validator {
            let details: Vec<String> = v
                .iter_errors(&args)
                .map(|e| {
                    let at = e.instance_path().as_str();
                    format!("{}: {e}", if at.is_empty() { "/" } else { at })
                })
                .collect();
            if !details.is_empty() {
                return Err(Error::InvalidArguments { details });
            }
        }
        if entry.options.idempotent || !entry.handler.has_external_effects() {
            return execute(entry.clone(), args).await.map(|o| (o, false));
        }
        let key = (call.name.clone(), canonical_json(&args).to_string());
        let cell = self.cache.lock().unwrap_or_else(|e| e.into_inner()).entry(key).or_default().clone();
        let mut ran = false;
        let out = cell
            .get_or_try_init(|| {
                ran = true;
                execute(entry.clone(), args)
            })
            .await?;
        Ok((out.clone(), !ran))
    }
}

/// One shared HTTP client for every `http` tool (none when there is no `http` tool).
fn http_client(tools: &BTreeMap<String, ToolConfig>) -> Result<Option<reqwest::Client>, Error> {
    if !tools.values().any(|c| matches!(c.handler, HandlerConfig::Http(_))) {
        return Ok(None);
    }
    let settings = voxpipe_http::Settings {
        user_agent: Some(concat!("voxpipe/", env!("CARGO_PKG_VERSION"))),
        // Tools may carry secret headers: they never follow a redirect to another origin.
        same_origin_redirects: true,
        ..Default::default()
    };
    let client = voxpipe_http::client(settings).map_err(|e| Error::InvalidConfig {
        key: "tools".into(),
        message: format!("cannot build an HTTP client: {e}"),
    })?;
    Ok(Some(client))
}

fn compile_schema(name: &str, schema: &serde_json::Value) -> Result<jsonschema::Validator, Error> {
    jsonschema::validator_for(schema)
        .map_err(|e| Error::InvalidSchema { key: format!("tools.{name}.parameters"), message: e.to_string() })
}

fn build_entry(
    name: &str,
    c: &ToolConfig,
    client: Option<reqwest::Client>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(ToolSpec, Entry), Error> {
    let validator = compile_schema(name, &c.parameters)?;
    let mut timeout = c.timeout_ms.map(Duration::from_millis).unwrap_or(DEFAULT_TIMEOUT);
    let handler = match &c.handler {
        HandlerConfig::Http(h) => {
            let client = client.expect("an HTTP client is built whenever there is an http tool");
            Handler::Http(HttpHandler::build(name, h, c.idempotent, c.max_result_bytes, client, env)?)
        }
        HandlerConfig::Command(h) => {
            Handler::Command(CommandHandler::build(name, h, c.max_result_bytes, env)?)
        }
        HandlerConfig::EndCall {} => Handler::EndCall,
        HandlerConfig::Transfer { target } => Handler::Transfer { target: target.clone() },
        HandlerConfig::Hold(h) => {
            let longest = Duration::from_secs(h.max_seconds);
            match c.timeout_ms {
                None => timeout = longest + Duration::from_secs(1),
                Some(ms) if Duration::from_millis(ms) <= longest => {
                    return Err(Error::InvalidConfig {
                        key: format!("tools.{name}.timeout_ms"),
                        message: format!(
                            "expected more than handler.max_seconds ({} s), got {ms} ms",
                            h.max_seconds
                        ),
                    });
                }
                Some(_) => {}
            }
            Handler::Hold(h.clone())
        }
    };
    if c.max_result_bytes < 64 {
        return Err(Error::InvalidConfig {
            key: format!("tools.{name}.max_result_bytes"),
            message: format!("expected at least 64, got {}", c.max_result_bytes),
        });
    }
    let options = ToolOptions {
        timeout,
        max_result_bytes: c.max_result_bytes,
        idempotent: c.idempotent,
        filler: c.filler.clone().map(|text| (text, Duration::from_millis(c.filler_after_ms))),
    };
    let spec = ToolSpec {
        name: name.to_string(),
        description: c.description.clone(),
        parameters: c.parameters.clone(),
    };
    Ok((spec, Entry { handler, validator: Some(validator), options }))
}

/// Aborts the task when dropped (the call timed out or was dropped by a hang-up), which drops
/// the handler's future: an HTTP request is cancelled, a command's process killed.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the handler on its own task (so a panic becomes an error result) under the timeout,
/// and caps the result.
async fn execute(entry: Arc<Entry>, args: serde_json::Value) -> Result<ToolOutput, Error> {
    let timeout = entry.options.timeout;
    let task_entry = entry.clone();
    let mut task = AbortOnDrop(tokio::spawn(async move { task_entry.handler.run(args).await }));
    match tokio::time::timeout(timeout, &mut task.0).await {
        Err(_) => Err(Error::Timeout { timeout_ms: timeout.as_millis() as u64 }),
        Ok(Err(join)) if join.is_panic() => Err(Error::Panicked),
        Ok(Err(join)) => Err(Error::Handler { message: format!("tool task failed: {join}") }),
        Ok(Ok(result)) => result.map(|mut out| {
            out.output = truncate(out.output, entry.options.max_result_bytes);
            out
        }),
    }
}

/// Cuts `text` to at most `max` bytes at a character boundary, ending with a marker saying so.
pub(crate) fn truncate(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let marker = format!("…[truncated: {} bytes in all]", text.len());
    let mut cut = max.saturating_sub(marker.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{marker}", &text[..cut])
}

/// `value` with every object's keys sorted, so equal arguments compare equal as text whatever
/// order the model wrote them in.
pub(crate) fn canonical_json(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let sorted = keys.into_iter().map(|k| (k.clone(), canonical_json(&map[k]))).collect();
            serde_json::Value::Object(sorted)
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(canonical_json).collect())
        }
        other => other.clone(),
    }
}

#[async_trait]
impl ToolRuntime for Tools {
    fn specs(&self) -> &[ToolSpec] {
        &self.specs
    }

    fn filler(&self, name: &str) -> Option<(String, Duration)> {
        self.filler_for(name)
    }

    async fn call(&self, call: &ToolCall) -> ToolResult {
        let start = Instant::now();
        let outcome = self.run_call(call).await;
        let duration = start.elapsed();
        let ms = duration.as_millis() as u64;
        let (output, is_error, action) = match outcome {
            Ok((out, cached)) => {
                if cached {
                    tracing::info!(tool = %call.name, call_id = %call.call_id, "repeated call of a non-idempotent tool answered from the first result");
                }
                tracing::debug!(tool = %call.name, call_id = %call.call_id, duration_ms = ms, cached, "tool call done");
                (out.output, false, out.action)
            }
            Err(e) => {
                tracing::info!(tool = %call.name, call_id = %call.call_id, duration_ms = ms, error = %e, "tool call failed");
                (e.to_model_json().to_string(), true, None)
            }
        };
        ToolResult {
            call_id: call.call_id.clone(),
            name: call.name.clone(),
            output,
            is_error,
            duration,
            action,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_char_boundaries_and_marks_the_cut() {
        let text = "é".repeat(100); // 200 bytes
        let cut = truncate(text.clone(), 80);
        assert!(cut.len() <= 80, "{}", cut.len());
        assert!(cut.ends_with("…[truncated: 200 bytes in all]"), "{cut}");
        assert!(cut.starts_with("éé"));
        assert_eq!(truncate(text.clone(), 200), text);
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"b":1,"a":{"y":[{"d":1,"c":2}],"x":0}}"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"{"a":{"x":0,"y":[{"c":2,"d":1}]},"b":1}"#).unwrap();
        assert_eq!(canonical_json(&a).to_string(), canonical_json(&b).to_string());
        assert_eq!(canonical_json(&a).to_string(), r#"{"a":{"x":0,"y":[{"c":2,"d":1}]},"b":1}"#);
    }
}
