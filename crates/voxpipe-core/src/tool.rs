//! The tool-runtime contract: stages that let a model call tools (the Realtime stage, every
//! cascade LLM) hand each call to a [`ToolRuntime`] and feed the [`ToolResult`] back.
//!
//! The shared implementation lives in `voxpipe-tools`; [`NoTools`] is the empty runtime.

use async_trait::async_trait;
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// A tool the model may call: name, description and JSON Schema of its arguments (the Chat
/// Completions `function.parameters` shape; each stage converts it to its wire shape).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ToolSpec {
    /// Function name.
    pub name: String,
    /// What the tool does, for the model.
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: serde_json::Value,
}

/// One call the model asked for.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ToolCall {
    /// Provider call id (`call_…`, `toolu_…`).
    pub call_id: String,
    /// Tool name.
    pub name: String,
    /// Arguments as the raw JSON string the model produced (possibly malformed).
    pub arguments: String,
}

/// Something a tool asks the call to do besides returning a result.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ToolAction {
    /// End the call once the assistant's current reply has played.
    EndCall,
    /// Hand the caller over to a human or another pipeline.
    Handoff {
        /// Why, as the model put it.
        reason: String,
        /// Where to, when the tool names a destination.
        target: Option<String>,
    },
}

/// The outcome of a tool call, as returned to the model.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ToolResult {
    /// The call this answers.
    pub call_id: String,
    /// Tool name.
    pub name: String,
    /// The result text given to the model (usually JSON).
    pub output: String,
    /// True when the call failed; `output` then describes the error for the model.
    pub is_error: bool,
    /// How long the handler ran.
    #[serde(rename = "duration_ms", serialize_with = "ser_ms")]
    pub duration: Duration,
    /// A side effect on the call, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<ToolAction>,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl ToolResult {
    /// An error result for `call` with a JSON body `{"error": message}` the model can read.
    pub fn error(call: &ToolCall, message: impl Into<String>, duration: Duration) -> Self {
        let body = serde_json::json!({ "error": message.into() });
        Self {
            call_id: call.call_id.clone(),
            name: call.name.clone(),
            output: body.to_string(),
            is_error: true,
            duration,
            action: None,
        }
    }
}

/// Runs tool calls for a stage.
///
/// # Errors
/// A runtime never fails a call outright: handler errors, panics, timeouts and invalid arguments
/// all come back as a [`ToolResult`] with `is_error` set, so the conversation goes on.
///
/// # Cancellation
/// `call` may be dropped when the caller hangs up; the tool's side effect may or may not have
/// happened. A barge-in does not cancel a running call: its result is kept in history.
#[async_trait]
pub trait ToolRuntime: Send + Sync + std::fmt::Debug {
    /// The tools offered to the model.
    fn specs(&self) -> &[ToolSpec];
    /// Runs one call.
    async fn call(&self, call: &ToolCall) -> ToolResult;
    /// Filler speech for tool `name`: what the assistant says if a call of it is still running
    /// after the returned delay ("One moment while I check."), so the caller does not sit in
    /// silence. Default: none.
    fn filler(&self, name: &str) -> Option<(String, Duration)> {
        let _ = name;
        None
    }
}

/// A runtime with no tools; any call is answered with an "unknown tool" error.
#[derive(Debug, Default)]
pub struct NoTools;

#[async_trait]
impl ToolRuntime for NoTools {
    fn specs(&self) -> &[ToolSpec] {
        &[]
    }
    async fn call(&self, call: &ToolCall) -> ToolResult {
        ToolResult::error(call, format!("unknown tool `{}`", call.name), Duration::ZERO)
    }
}

/// A filler line due while a batch of tool calls runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filler {
    /// The tool whose filler it is.
    pub tool: String,
    /// What to say, trimmed.
    pub text: String,
    /// The delay after which it is said.
    pub after: Duration,
}

/// The tool calls of one model response, run concurrently, with the filler line that is due if
/// they are still running after its delay. Every stage that lets a model call tools (the cascade
/// LLM driver, the native stages) runs its calls through this, so which filler is chosen and how
/// calls run is the same for native and cascade.
///
/// The batch is a future of one result per call, in call order. The calls run on their own task
/// (a panicking tool becomes an error result), and dropping the batch aborts them: a hang-up
/// cancels them, nothing outlives the call.
///
/// ```
/// # tokio_test_block_on(async {
/// use std::sync::Arc;
/// use voxpipe_core::{NoTools, ToolBatch, ToolCall};
/// let call = ToolCall { call_id: "c1".into(), name: "lookup".into(), arguments: "{}".into() };
/// let mut batch = ToolBatch::start(Arc::new(NoTools), vec![call]);
/// assert!(batch.filler_at().is_none()); // NoTools has no filler lines
/// let results = (&mut batch).await;
/// assert!(results[0].is_error);
/// # });
/// # fn tokio_test_block_on(f: impl std::future::Future<Output = ()>) {
/// #     tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(f)
/// # }
/// ```
pub struct ToolBatch {
    task: tokio::task::JoinHandle<Vec<ToolResult>>,
    /// What was called, to answer each call if the task fails.
    calls: Vec<ToolCall>,
    filler: Option<(Instant, Filler)>,
}

impl Drop for ToolBatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for ToolBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolBatch").field("filler", &self.filler).finish_non_exhaustive()
    }
}

impl ToolBatch {
    /// Starts running `calls`. The filler is the one with the shortest delay among the called
    /// tools that have a non-blank one; at most one per batch.
    pub fn start(tools: Arc<dyn ToolRuntime>, calls: Vec<ToolCall>) -> Self {
        let now = Instant::now();
        let filler = calls
            .iter()
            .filter_map(|c| {
                let (text, after) = tools.filler(&c.name)?;
                let text = text.trim();
                (!text.is_empty()).then(|| Filler { tool: c.name.clone(), text: text.to_string(), after })
            })
            .min_by_key(|f| f.after)
            .map(|f| (now + f.after, f));
        let running = calls.clone();
        let task = tokio::spawn(async move {
            futures_util::future::join_all(running.iter().map(|c| tools.call(c))).await
        });
        Self { task, calls, filler }
    }

    /// When the filler is due; `None` when there is none, or it was taken or cancelled.
    pub fn filler_at(&self) -> Option<Instant> {
        self.filler.as_ref().map(|(at, _)| *at)
    }

    /// Takes the filler (once): call it when [`filler_at`](Self::filler_at) has passed and the
    /// calls are still running.
    pub fn take_filler(&mut self) -> Option<Filler> {
        self.filler.take().map(|(_, f)| f)
    }

    /// No filler for this batch after all (the caller barged in).
    pub fn cancel_filler(&mut self) {
        self.filler = None;
    }
}

impl Future for ToolBatch {
    type Output = Vec<ToolResult>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.task).poll(cx).map(|r| match r {
            Ok(results) => results,
            Err(e) => {
                let why =
                    if e.is_panic() { "the tool runtime panicked" } else { "the tool call was cancelled" };
                self.calls.iter().map(|c| ToolResult::error(c, why, Duration::ZERO)).collect()
            }
        })
    }
}

/// Waits for the batch's results; forever when there is no batch (a `select!` branch that is
/// armed only while tools run). Clears the slot when the results are in.
pub async fn batch_results(batch: &mut Option<ToolBatch>) -> Vec<ToolResult> {
    match batch {
        Some(b) => {
            let results = b.await;
            *batch = None;
            results
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod batch_tests {
    use super::*;

    /// Tools that sleep for the number of milliseconds in their name's suffix, with fillers.
    #[derive(Debug)]
    struct Slow;

    #[async_trait]
    impl ToolRuntime for Slow {
        fn specs(&self) -> &[ToolSpec] {
            &[]
        }
        async fn call(&self, call: &ToolCall) -> ToolResult {
            let ms: u64 = call.name.rsplit('_').next().and_then(|n| n.parse().ok()).unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            ToolResult {
                call_id: call.call_id.clone(),
                name: call.name.clone(),
                output: format!("done {ms}"),
                is_error: false,
                duration: Duration::from_millis(ms),
                action: None,
            }
        }
        fn filler(&self, name: &str) -> Option<(String, Duration)> {
            match name {
                "slow_900" => Some(("  One moment.  ".into(), Duration::from_millis(400))),
                "slow_500" => Some(("Let me check.".into(), Duration::from_millis(300))),
                "blank_100" => Some(("   ".into(), Duration::from_millis(10))),
                _ => None,
            }
        }
    }

    fn call(name: &str) -> ToolCall {
        ToolCall { call_id: format!("id_{name}"), name: name.into(), arguments: "{}".into() }
    }

    #[tokio::test(start_paused = true)]
    async fn shortest_non_blank_filler_wins_and_results_keep_call_order() {
        let t0 = Instant::now();
        let mut batch =
            ToolBatch::start(Arc::new(Slow), vec![call("slow_900"), call("blank_100"), call("slow_500")]);
        assert_eq!(batch.filler_at(), Some(t0 + Duration::from_millis(300)));
        let f = batch.take_filler().expect("a filler");
        assert_eq!((f.tool.as_str(), f.text.as_str()), ("slow_500", "Let me check."));
        assert!(batch.take_filler().is_none(), "one filler per batch");
        let results = (&mut batch).await;
        let ids: Vec<_> = results.iter().map(|r| r.call_id.as_str()).collect();
        assert_eq!(ids, ["id_slow_900", "id_blank_100", "id_slow_500"]);
        assert_eq!(t0.elapsed(), Duration::from_millis(900), "the calls ran concurrently");
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_batch_aborts_the_calls() {
        #[derive(Debug)]
        struct Flag(Arc<std::sync::atomic::AtomicBool>);
        #[async_trait]
        impl ToolRuntime for Flag {
            fn specs(&self) -> &[ToolSpec] {
                &[]
            }
            async fn call(&self, call: &ToolCall) -> ToolResult {
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
                ToolResult::error(call, "late", Duration::ZERO)
            }
        }
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let batch = ToolBatch::start(Arc::new(Flag(ran.clone())), vec![call("x")]);
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(batch);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst), "the call outlived its batch");
    }

    #[tokio::test(start_paused = true)]
    async fn batch_results_pends_without_a_batch_and_clears_the_slot() {
        let mut slot = None;
        let idle = tokio::time::timeout(Duration::from_secs(5), batch_results(&mut slot)).await;
        assert!(idle.is_err(), "no batch: never ready");
        slot = Some(ToolBatch::start(Arc::new(Slow), vec![call("fast_5")]));
        slot.as_mut().unwrap().cancel_filler();
        let results = batch_results(&mut slot).await;
        assert_eq!(results[0].output, "done 5");
        assert!(slot.is_none());
    }
}
