//! Prometheus metrics of one serve process (`/metrics`, text format, `prometheus-client`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `pipeline`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PipelineLabel {
    /// The pipeline's serve name.
    pub pipeline: String,
}

/// `pipeline`, `outcome`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// The pipeline's serve name.
    pub pipeline: String,
    /// `completed`, `end_call`, `transferred`, `hangup`, `socket_lost`, `error`, `drained`,
    /// `max_duration`, `rejected_busy`.
    pub outcome: String,
}

/// `pipeline`, `metric`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    /// The pipeline's serve name.
    pub pipeline: String,
    /// `voice_to_voice`, `end_of_turn_delay`, `llm_first_token`, `tts_first_audio`, …
    pub metric: String,
}

/// `kind`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// What failed.
    pub kind: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new([0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0])
}

/// Every metric of the process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Calls in progress.
    pub active_calls: Family<PipelineLabel, Gauge>,
    /// Calls ended, by outcome.
    pub calls_total: Family<OutcomeLabels, Counter>,
    /// Per-turn latencies.
    pub turn_latency: Family<LatencyLabels, Histogram, fn() -> Histogram>,
    /// Errors by kind.
    pub errors_total: Family<KindLabel, Counter>,
    /// Requests refused for a bad signature or key.
    pub auth_failures_total: Family<KindLabel, Counter>,
    /// Browser-direct Realtime sessions opened (client secrets minted).
    pub direct_sessions_total: Counter,
    /// Provider failures a call recovered from, by kind (`reconnect:<stage>`).
    pub recoveries_total: Family<KindLabel, Counter>,
    /// Time each recovery took, from noticing the failure to a working provider again.
    pub recovery_seconds: Histogram,
    /// Tasks alive in the tokio runtime that serves `/metrics`, read when it is scraped.
    pub alive_tasks: Gauge,
    /// The process's open file descriptors (`/proc/self/fd`, Linux only), read when scraped.
    pub open_fds: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("voxpipe");
        let active_calls = Family::<PipelineLabel, Gauge>::default();
        let calls_total = Family::<OutcomeLabels, Counter>::default();
        let turn_latency =
            Family::<LatencyLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let errors_total = Family::<KindLabel, Counter>::default();
        let auth_failures_total = Family::<KindLabel, Counter>::default();
        registry.register("active_calls", "Calls in progress", active_calls.clone());
        registry.register("calls", "Calls ended, by outcome", calls_total.clone());
        registry.register("turn_latency_seconds", "Per-turn latency by measurement", turn_latency.clone());
        registry.register("errors", "Errors by kind", errors_total.clone());
        registry.register(
            "auth_failures",
            "Requests refused for a missing or bad signature or key",
            auth_failures_total.clone(),
        );
        let direct_sessions_total = Counter::default();
        registry.register(
            "direct_sessions",
            "Browser-direct Realtime sessions opened (client secrets minted)",
            direct_sessions_total.clone(),
        );
        let recoveries_total = Family::<KindLabel, Counter>::default();
        registry.register(
            "recoveries",
            "Provider failures calls recovered from, by kind",
            recoveries_total.clone(),
        );
        let recovery_seconds = latency_histogram();
        registry.register(
            "recovery_seconds",
            "Time from a provider failure to a working provider again",
            recovery_seconds.clone(),
        );
        let alive_tasks = Gauge::default();
        registry.register(
            "runtime_alive_tasks",
            "Tasks alive in the tokio runtime (spawned and not yet finished), read at scrape time",
            alive_tasks.clone(),
        );
        let open_fds = Gauge::default();
        if cfg!(target_os = "linux") {
            registry.register(
                "process_open_fds",
                "Open file descriptors of the process (/proc/self/fd), read at scrape time",
                open_fds.clone(),
            );
        }
        Self {
            registry,
            active_calls,
            calls_total,
            turn_latency,
            errors_total,
            auth_failures_total,
            direct_sessions_total,
            recoveries_total,
            recovery_seconds,
            alive_tasks,
            open_fds,
        }
    }
}

impl Metrics {
    /// The text exposition, after reading the gauges sampled at scrape time.
    pub fn encode(&self) -> String {
        self.sample_process();
        let mut s = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }

    /// Reads the runtime's alive tasks (when called inside a tokio runtime) and the process's
    /// open file descriptors (Linux) into their gauges.
    pub fn sample_process(&self) {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            self.alive_tasks.set(i64::try_from(rt.metrics().num_alive_tasks()).unwrap_or(i64::MAX));
        }
        if let Some(n) = open_fds() {
            self.open_fds.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Counts a recovery of `kind` that took `took`.
    pub fn recovery(&self, kind: &str, took: std::time::Duration) {
        self.recoveries_total.get_or_create(&KindLabel { kind: kind.into() }).inc();
        self.recovery_seconds.observe(took.as_secs_f64());
    }

    /// Counts an error of `kind`.
    pub fn error(&self, kind: &str) {
        self.errors_total.get_or_create(&KindLabel { kind: kind.into() }).inc();
    }
}

/// Entries of `/proc/self/fd`, less the one the listing itself holds open. `None` off Linux or
/// when the directory cannot be read.
fn open_fds() -> Option<usize> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let n = std::fs::read_dir("/proc/self/fd").ok()?.count();
    Some(n.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the unlabelled sample `name` in a text exposition.
    fn sample(text: &str, name: &str) -> Option<i64> {
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    #[tokio::test]
    async fn scrape_reports_alive_tasks_and_open_fds() {
        let m = Metrics::default();
        let stop = tokio_util::sync::CancellationToken::new();
        let before = sample(&m.encode(), "voxpipe_runtime_alive_tasks").expect("alive tasks gauge");
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let stop = stop.clone();
                tokio::spawn(async move { stop.cancelled().await })
            })
            .collect();
        let text = m.encode();
        let during = sample(&text, "voxpipe_runtime_alive_tasks").expect("alive tasks gauge");
        assert!(during >= before + 5, "5 pending tasks: {before} before, {during} during\n{text}");
        stop.cancel();
        for t in tasks {
            t.await.unwrap();
        }
        let after = sample(&m.encode(), "voxpipe_runtime_alive_tasks").expect("alive tasks gauge");
        assert!(after <= during - 5, "5 tasks ended: {during} during, {after} after");

        if cfg!(target_os = "linux") {
            let fds = sample(&m.encode(), "voxpipe_process_open_fds").expect("open fds gauge");
            assert!(fds >= 3, "stdin, stdout and stderr at least: {fds}");
            // Other tests of this binary open and close files meanwhile: a wide margin.
            let held: Vec<_> = (0..100).map(|_| std::fs::File::open("/proc/self/status").unwrap()).collect();
            let more = sample(&m.encode(), "voxpipe_process_open_fds").expect("open fds gauge");
            assert!(more >= fds + 50, "100 more files open: {fds} before, {more} with them");
            drop(held);
        }
    }
}
