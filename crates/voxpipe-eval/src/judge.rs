//! Judged quality: an LLM scores every reply of the A/B run against a rubric.
//!
//! Off by default. A judge file names one LLM stage of any pipeline file (so any configured
//! provider and model can judge: `llm.openai`, `llm.anthropic`, `llm.local`…) and the rubric:
//!
//! ```toml
//! [judge]
//! pipeline = "../pipelines/cascade-openai.toml"   # relative to this file
//! stage = 1                    # optional: the pipeline's first LLM stage by default
//! rubric = ["task_completed", "factual", "polite", "brief"]   # the default: all four
//! concurrency = 4              # replies judged at once (default 4)
//!
//! [judge.questions]            # optional: a criterion of your own, or another wording
//! empathetic = "Does the reply acknowledge how the caller feels?"
//! ```
//!
//! The stage runs alone, outside any call, with the judge's instructions instead of the
//! pipeline's, no tools and no spoken fallback lines. Each reply is judged once in a fresh
//! conversation that holds the scenario's description, the call's earlier turns, this turn's
//! caller words, tool calls with their results, and the reply; the judge answers each
//! criterion with a score from 1 to 5 and a short reason, as JSON. An answer that is not that
//! JSON, or a provider that fails, leaves the reply unscored with the reason; the run goes on.

use crate::call::CallRecord;
use crate::error::EvalError;
use crate::metrics::TurnMetrics;
use crate::scenario::LoadedScenario;
use crate::stats::{BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, bootstrap_mean, bootstrap_paired_mean_diff};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use voxpipe_config::{LoadOptions, PipelineConfig, Role, StageConfig};
use voxpipe_core::{CallContext, Frame, NoTools, ResponseStatus, Transcript};

/// The built-in criteria and the question the judge is asked for each.
pub const BUILT_IN: &[(&str, &str)] = &[
    (
        "task_completed",
        "Does the reply do what the caller asked in this turn, or make clear progress toward it \
         (asking for a missing detail counts as progress)?",
    ),
    (
        "factual",
        "Is every fact in the reply supported by the tool results shown or by the conversation? \
         Invented order states, dates, prices or names score 1. With no tool results, does it \
         avoid claiming what it cannot know?",
    ),
    ("polite", "Is the reply courteous and warm without being servile?"),
    (
        "brief",
        "Is the reply short enough to be spoken on a phone call: one to three sentences, no \
         lists, no markdown, nothing repeated?",
    ),
];

/// How long one judged reply may take before it is left unscored.
const JUDGE_TIMEOUT: Duration = Duration::from_secs(120);

/// A reason is cut to this many characters.
const MAX_REASON_CHARS: usize = 300;

/// The judge file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JudgeFile {
    judge: JudgeSection,
}

/// The `[judge]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeSection {
    /// The pipeline file whose LLM stage judges (relative paths are taken from the judge
    /// file's directory).
    pub pipeline: PathBuf,
    /// Index of that stage in `[[stages]]`; default: the first LLM stage.
    #[serde(default)]
    pub stage: Option<usize>,
    /// The criteria, in the order shown; default: the four built-in ones.
    #[serde(default)]
    pub rubric: Option<Vec<String>>,
    /// Questions for criteria of your own, or another wording of a built-in one.
    #[serde(default)]
    pub questions: BTreeMap<String, String>,
    /// Replies judged at once. Default 4.
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// `--set` overrides for the judge's pipeline (`stages[1].model=gpt-4.1`).
    #[serde(default)]
    pub set: Vec<String>,
}

/// One criterion: its name and the question asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Criterion {
    /// `task_completed`, `factual`…
    pub name: String,
    /// What the judge is asked.
    pub question: String,
}

/// The judge of a run: a loaded LLM stage config and the rubric.
#[derive(Debug, Clone)]
pub struct Judge {
    config: PipelineConfig,
    stage: usize,
    env: Vec<(String, String)>,
    /// The criteria, in order.
    pub criteria: Vec<Criterion>,
    /// Replies judged at once.
    pub concurrency: usize,
    /// `llm.openai gpt-4o-mini (pipelines/cascade-openai.toml, stages[1])`, for the report.
    pub describe: String,
}

/// A score of one criterion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    /// The criterion.
    pub criterion: String,
    /// 1–5; `None` when the judge gave none.
    pub score: Option<u8>,
    /// The judge's reason (or why there is no score).
    pub reason: String,
}

/// The judge's verdict on one reply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judgement {
    /// One per criterion, in the rubric's order.
    pub scores: Vec<Score>,
    /// Why the reply is unscored (provider error, an answer that was not the JSON asked for).
    pub error: Option<String>,
}

impl Judgement {
    /// The score of `criterion`, if any.
    pub fn score(&self, criterion: &str) -> Option<u8> {
        self.scores.iter().find(|s| s.criterion == criterion).and_then(|s| s.score)
    }
}

impl Judge {
    /// Loads a judge file; `env` holds the variables its stage's key names.
    ///
    /// # Errors
    /// The file or its pipeline is malformed, the stage is missing or not an LLM stage, or a
    /// rubric names a criterion with no question.
    pub fn load(path: &Path, env: &[(String, String)]) -> Result<Self, EvalError> {
        let bad = |message: String| EvalError::Judge { path: path.to_path_buf(), message };
        let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
        let file: JudgeFile = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let section = file.judge;
        let pipeline = match path.parent() {
            Some(dir) if section.pipeline.is_relative() => dir.join(&section.pipeline),
            _ => section.pipeline.clone(),
        };
        let opts = LoadOptions { profile: None, sets: section.set.clone(), env: env.to_vec() };
        let config =
            voxpipe_config::load(&pipeline, &opts).map_err(|e| bad(format!("judge.pipeline: {e}")))?;
        let llm = |i: &usize| config.stages.get(*i).is_some_and(|s| s.row().role == Role::Llm);
        let stage = match section.stage {
            Some(i) if llm(&i) => i,
            Some(i) => {
                return Err(bad(format!(
                    "judge.stage: stage {i} of {} is {}, expected an LLM stage (llm.*)",
                    pipeline.display(),
                    config.stages.get(i).map_or("missing", |s| s.kind())
                )));
            }
            None => (0..config.stages.len()).find(llm).ok_or_else(|| {
                bad(format!("judge.pipeline: {} has no LLM stage (llm.*) to judge with", pipeline.display()))
            })?,
        };
        let names =
            section.rubric.clone().unwrap_or_else(|| BUILT_IN.iter().map(|(n, _)| n.to_string()).collect());
        if names.is_empty() {
            return Err(bad("judge.rubric: expected at least one criterion".into()));
        }
        let criteria = names
            .iter()
            .map(|name| {
                let question = section
                    .questions
                    .get(name)
                    .cloned()
                    .or_else(|| BUILT_IN.iter().find(|(n, _)| n == name).map(|(_, q)| q.to_string()))
                    .ok_or_else(|| {
                        bad(format!(
                            "judge.rubric: `{name}` is not a built-in criterion ({}); give its question \
                             in [judge.questions]",
                            BUILT_IN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                        ))
                    })?;
                Ok(Criterion { name: name.clone(), question })
            })
            .collect::<Result<Vec<_>, EvalError>>()?;
        let s = &config.stages[stage];
        let model = serde_json::to_value(s)
            .ok()
            .and_then(|v| v.get("model").and_then(|m| m.as_str()).map(str::to_string))
            .map(|m| format!(" {m}"))
            .unwrap_or_default();
        let describe = format!("{}{model} ({}, stages[{stage}])", s.kind(), pipeline.display());
        Ok(Self {
            config,
            stage,
            env: env.to_vec(),
            criteria,
            concurrency: section.concurrency.unwrap_or(4).max(1),
            describe,
        })
    }

    /// The judge's instructions (its system prompt).
    pub fn instructions(&self) -> String {
        let mut s = String::from(
            "You grade the replies of a voice agent on a phone call. You are shown the call so far \
             and one reply of the agent (REPLY TO GRADE). Score that reply only, on each criterion \
             below, from 1 (poor) to 5 (excellent), with a reason of one short sentence.\n\nCriteria:\n",
        );
        for c in &self.criteria {
            let _ = writeln!(s, "- {}: {}", c.name, c.question);
        }
        s.push_str("\nAnswer with one JSON object and nothing else, one key per criterion:\n{");
        for (i, c) in self.criteria.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(s, "{sep}\"{}\": {{\"score\": 1-5, \"reason\": \"...\"}}", c.name);
        }
        s.push('}');
        s
    }

    /// The stage config with the judge's instructions, no few-shot examples and no spoken
    /// fallback lines (whatever the pipeline says to callers is not a grade).
    fn stage_config(&self) -> Result<StageConfig, String> {
        let mut v = serde_json::to_value(&self.config.stages[self.stage]).map_err(|e| e.to_string())?;
        let o = v.as_object_mut().ok_or("the stage is not a table")?;
        o.insert("instructions".into(), self.instructions().into());
        o.remove("spoken_fallback");
        if o.contains_key("examples") {
            o.insert("examples".into(), serde_json::Value::Array(Vec::new()));
        }
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    /// Judges one reply: `prompt` is [`prompt`]'s text. Never fails: a failure is the
    /// judgement's `error`.
    pub async fn judge(&self, prompt: &str) -> Judgement {
        match tokio::time::timeout(JUDGE_TIMEOUT, self.ask(prompt)).await {
            Ok(Ok(answer)) => parse_answer(&answer, &self.criteria),
            Ok(Err(e)) => self.unscored(e),
            Err(_) => self.unscored(format!("the judge did not answer within {} s", JUDGE_TIMEOUT.as_secs())),
        }
    }

    fn unscored(&self, error: String) -> Judgement {
        let scores = self
            .criteria
            .iter()
            .map(|c| Score { criterion: c.name.clone(), score: None, reason: String::new() })
            .collect();
        Judgement { scores, error: Some(error) }
    }

    /// Runs the stage on one user message and returns the text it answered.
    async fn ask(&self, prompt: &str) -> Result<String, String> {
        let stage_config = self.stage_config()?;
        let env = voxpipe_config::Env::from_vars(self.env.clone());
        let stage = voxpipe_config::build_stage_alone(self.stage, &stage_config, &env)
            .await
            .map_err(|e| e.to_string())?;
        let (ctx, mut events) = CallContext::new(Arc::new(NoTools));
        let (tx, inbox) = voxpipe_core::channel();
        let (outbox, mut rx) = voxpipe_core::channel();
        let cancel = ctx.cancel.clone();
        let task = tokio::spawn(stage.run(ctx, inbox, outbox));
        // Nobody reads the stage's events but they must not back up.
        let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
        let text = Transcript { item: None, text: prompt.to_string(), is_final: true };
        let sent = tx.send(Frame::UserTranscript(text)).await;
        let mut answer = String::new();
        let mut outcome = Err("the judge's stage ended without answering".to_string());
        if sent.is_ok() {
            while let Some(frame) = rx.recv().await {
                match frame {
                    Frame::TextDelta(d) => answer.push_str(&d.text),
                    Frame::ResponseDone(done) => {
                        outcome = match done.status {
                            ResponseStatus::Completed => Ok(()),
                            other => Err(format!(
                                "the judge's response ended {other:?}{}",
                                done.reason.map(|e| format!(": {e}")).unwrap_or_default()
                            )),
                        };
                        break;
                    }
                    _ => {}
                }
            }
        }
        drop(tx);
        cancel.cancel();
        let ended = task.await;
        drain.abort();
        if let Ok(Err(e)) = ended {
            outcome = outcome.and(Err(format!("the judge's stage failed: {e}")));
        }
        outcome.map(|()| answer)
    }
}

/// The user message for turn `ti` of `call`: the scenario, the earlier turns, this turn's
/// caller words, tool calls with results, and the reply to grade.
pub fn prompt(scenario: &LoadedScenario, call: &CallRecord, ti: usize) -> String {
    let mut s = String::new();
    if let Some(d) = &scenario.scenario.description {
        let _ = writeln!(s, "Scenario: {d}\n");
    }
    let turns = &call.turns[..=ti];
    if ti > 0 {
        s.push_str("The call so far:\n");
        for t in &turns[..ti] {
            caller_and_tools(&mut s, t);
            let _ = writeln!(s, "Agent: {}", said(&t.reply));
        }
        s.push('\n');
    }
    let t = &turns[ti];
    s.push_str("This turn:\n");
    caller_and_tools(&mut s, t);
    let _ = write!(s, "REPLY TO GRADE: {}", said(&t.reply));
    s
}

fn said(text: &str) -> &str {
    if text.trim().is_empty() { "(nothing said)" } else { text }
}

fn caller_and_tools(s: &mut String, t: &TurnMetrics) {
    let _ = writeln!(s, "Caller: {}", said(&t.user_transcript));
    for (name, args, result) in t.tool_exchanges() {
        let result = match result {
            Some(r) if r.is_error => format!("error: {}", r.output),
            Some(r) => r.output.clone(),
            None => "(no result)".into(),
        };
        let _ = writeln!(s, "Agent called tool {name}({args}) -> {result}");
    }
}

/// Parses the judge's answer: the first JSON object in it, one `{score, reason}` per
/// criterion (a bare number is a score without a reason). A criterion it leaves out, or
/// scores outside 1–5, gets no score and says so.
pub fn parse_answer(answer: &str, criteria: &[Criterion]) -> Judgement {
    let object = answer
        .find('{')
        .zip(answer.rfind('}'))
        .filter(|(a, b)| a < b)
        .and_then(|(a, b)| serde_json::from_str::<serde_json::Value>(&answer[a..=b]).ok())
        .filter(serde_json::Value::is_object);
    let Some(object) = object else {
        let shown: String = answer.chars().take(120).collect();
        let scores = criteria
            .iter()
            .map(|c| Score { criterion: c.name.clone(), score: None, reason: String::new() })
            .collect();
        return Judgement {
            scores,
            error: Some(format!("the judge's answer was not the JSON asked for: {shown:?}")),
        };
    };
    let scores = criteria
        .iter()
        .map(|c| {
            let entry = object.get(&c.name);
            let raw = entry.map(|e| e.get("score").unwrap_or(e));
            let number =
                raw.and_then(|r| r.as_f64().or_else(|| r.as_str().and_then(|s| s.trim().parse().ok())));
            let reason = entry
                .and_then(|e| e.get("reason"))
                .and_then(|r| r.as_str())
                .map(|r| r.chars().take(MAX_REASON_CHARS).collect::<String>())
                .unwrap_or_default();
            let (score, reason) = match number {
                Some(n) if (1.0..=5.0).contains(&n) && n.fract() == 0.0 => (Some(n as u8), reason),
                Some(n) => (None, format!("score {n} is outside 1–5; {reason}")),
                None if entry.is_none() => (None, "the judge left this criterion out".to_string()),
                None => (None, format!("no numeric score; {reason}")),
            };
            Score { criterion: c.name.clone(), score, reason }
        })
        .collect();
    Judgement { scores, error: None }
}

/// Judges every turn with a reply of every call (successful or not: a failed call's turns
/// up to its failure are still replies a caller heard), `judge.concurrency` at once, and
/// stores the judgements in the turns.
pub async fn judge_calls(judge: &Judge, scenarios: &[LoadedScenario], calls: &mut [CallRecord]) {
    let permits = Arc::new(tokio::sync::Semaphore::new(judge.concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for (ci, call) in calls.iter().enumerate() {
        let Some(scenario) = scenarios.iter().find(|s| s.scenario.name == call.scenario) else { continue };
        for ti in 0..call.turns.len() {
            let t = &call.turns[ti];
            if t.reply.trim().is_empty() && t.tool_calls.is_empty() {
                continue;
            }
            let (judge, prompt) = (judge.clone(), prompt(scenario, call, ti));
            let permits = permits.clone();
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                (ci, ti, judge.judge(&prompt).await)
            });
        }
    }
    while let Some(done) = tasks.join_next().await {
        if let Ok((ci, ti, judgement)) = done {
            calls[ci].turns[ti].judge = Some(judgement);
        }
    }
}

/// A pipeline's mean score on one criterion with its 95 % bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MeanScore {
    /// The mean.
    pub mean: f64,
    /// Lower bound of the interval.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
    /// Scored replies.
    pub n: usize,
}

/// The scores of `criterion` over a pipeline's judged turns.
pub fn scores(calls: &[CallRecord], label: &str, criterion: &str) -> Vec<f64> {
    calls
        .iter()
        .filter(|c| c.pipeline == label && c.error.is_none())
        .flat_map(|c| c.turns.iter())
        .filter_map(|t| t.judge.as_ref()?.score(criterion).map(f64::from))
        .collect()
}

/// The mean score of `criterion` for `label`, with its interval.
pub fn mean_score(calls: &[CallRecord], label: &str, criterion: &str) -> Option<MeanScore> {
    let v = scores(calls, label, criterion);
    let (mean, low, high) = bootstrap_mean(&v, BOOTSTRAP_RESAMPLES, 0.95, BOOTSTRAP_SEED)?;
    Some(MeanScore { mean, low, high, n: v.len() })
}

/// `(a, b)` scores of the same turn (scenario, run, turn) judged in both pipelines.
fn paired_scores(calls: &[CallRecord], a: &str, b: &str, criterion: &str) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for ca in calls.iter().filter(|c| c.pipeline == a && c.error.is_none()) {
        let Some(cb) = calls
            .iter()
            .find(|c| c.pipeline == b && c.error.is_none() && c.scenario == ca.scenario && c.run == ca.run)
        else {
            continue;
        };
        for (ta, tb) in ca.turns.iter().zip(&cb.turns) {
            let score = |t: &TurnMetrics| t.judge.as_ref().and_then(|j| j.score(criterion)).map(f64::from);
            if let (Some(x), Some(y)) = (score(ta), score(tb)) {
                out.push((x, y));
            }
        }
    }
    out
}

/// The judged-quality section of `report.md`: per pipeline and criterion the mean score with
/// its interval, the difference to A paired by turn (successful calls, like every other
/// statistic), and the unscored replies.
pub fn markdown(s: &mut String, judge: &Judge, labels: &[String], calls: &[CallRecord]) {
    let _ = writeln!(s, "\n## Judged quality\n");
    let _ = writeln!(
        s,
        "Each reply scored 1–5 by `{}`: mean [95 % bootstrap interval] (n); differences are \
         mean(X) − mean(A) over the same turns. A judge is a model: read its reasons (results.jsonl, \
         report.html) before trusting a score.\n",
        judge.describe
    );
    let _ = write!(s, "| criterion |");
    for l in labels {
        let _ = write!(s, " {l} |");
    }
    for l in &labels[1.min(labels.len())..] {
        let _ = write!(s, " {l}−A [95 % CI] |");
    }
    let _ = write!(s, "\n|---|");
    for _ in 0..(labels.len() * 2).saturating_sub(1) {
        let _ = write!(s, "---:|");
    }
    let _ = writeln!(s);
    for c in &judge.criteria {
        let _ = write!(s, "| {} |", c.name);
        for l in labels {
            let cell = mean_score(calls, l, &c.name)
                .map_or("–".into(), |m| format!("{:.2} [{:.2}, {:.2}] ({})", m.mean, m.low, m.high, m.n));
            let _ = write!(s, " {cell} |");
        }
        for l in &labels[1.min(labels.len())..] {
            let _ = write!(s, " {} |", diff_cell(calls, &labels[0], l, &c.name));
        }
        let _ = writeln!(s);
    }
    let unscored: Vec<String> = calls
        .iter()
        .flat_map(|c| {
            c.turns.iter().filter_map(move |t| {
                let e = t.judge.as_ref()?.error.as_ref()?;
                Some(format!("- {} · `{}` · run {} · turn {}: {e}", c.pipeline, c.scenario, c.run, t.turn))
            })
        })
        .collect();
    if !unscored.is_empty() {
        let _ = writeln!(s, "\nUnscored replies:\n");
        for line in unscored {
            let _ = writeln!(s, "{line}");
        }
    }
}

/// `B − A` of mean scores paired by turn, with its interval (or why there is none).
pub fn diff_cell(calls: &[CallRecord], a: &str, b: &str, criterion: &str) -> String {
    let pairs = paired_scores(calls, a, b, criterion);
    match bootstrap_paired_mean_diff(&pairs, BOOTSTRAP_RESAMPLES, 0.95, BOOTSTRAP_SEED) {
        Some(ci) if pairs.len() >= crate::report::MIN_SAMPLES_FOR_CI => {
            format!("{:+.2} [{:+.2}, {:+.2}]", ci.diff, ci.low, ci.high)
        }
        Some(ci) => format!("{:+.2} (too few turns for an interval)", ci.diff),
        None => "–".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn criteria() -> Vec<Criterion> {
        BUILT_IN.iter().map(|(n, q)| Criterion { name: n.to_string(), question: q.to_string() }).collect()
    }

    #[test]
    fn an_answer_in_prose_around_the_json_is_parsed_and_bad_scores_are_named() {
        let answer = "Sure! Here is my grading:\n```json\n{\"task_completed\": {\"score\": 4, \"reason\": \
                      \"Looked the order up.\"}, \"factual\": {\"score\": \"5\", \"reason\": \"Matches the tool.\"}, \
                      \"polite\": 7}\n```";
        let j = parse_answer(answer, &criteria());
        assert_eq!(j.error, None);
        assert_eq!(j.score("task_completed"), Some(4));
        assert_eq!(j.scores[0].reason, "Looked the order up.");
        assert_eq!(j.score("factual"), Some(5));
        assert_eq!(j.score("polite"), None);
        assert!(j.scores[2].reason.contains("outside 1–5"), "{:?}", j.scores[2]);
        assert_eq!(j.score("brief"), None);
        assert_eq!(j.scores[3].reason, "the judge left this criterion out");
    }

    #[test]
    fn an_answer_without_json_leaves_the_reply_unscored_with_what_was_said() {
        let j = parse_answer("I think it was fine.", &criteria());
        assert!(j.scores.iter().all(|s| s.score.is_none()));
        assert!(j.error.as_deref().unwrap().contains("I think it was fine."), "{:?}", j.error);
    }

    #[test]
    fn instructions_list_every_criterion_and_the_json_shape() {
        let judge_criteria = criteria();
        let mut text = String::new();
        for c in &judge_criteria {
            text.push_str(&c.name);
        }
        let judge = Judge {
            config: voxpipe_config::load_str(
                Path::new("j.toml"),
                "name = \"j\"\n[input]\nkind = \"stdin\"\nsample_rate = 16000\n[output]\nkind = \"stdout\"\n\
                 [[stages]]\nkind = \"llm.openai\"\nmodel = \"m\"\n",
                &LoadOptions::default(),
            )
            .unwrap(),
            stage: 0,
            env: Vec::new(),
            criteria: judge_criteria,
            concurrency: 1,
            describe: String::new(),
        };
        let i = judge.instructions();
        for (name, question) in BUILT_IN {
            assert!(i.contains(&format!("- {name}: {question}")), "{i}");
            assert!(i.contains(&format!("\"{name}\": {{\"score\": 1-5")), "{i}");
        }
        // The stage keeps its provider settings and takes the judge's instructions.
        let StageConfig::LlmOpenAi(c) = judge.stage_config().unwrap() else { panic!("kind changed") };
        assert_eq!(c.model, "m");
        assert_eq!(c.instructions, i);
    }

    fn call(label: &str, scenario: &str, scores: &[u8], failed: bool) -> CallRecord {
        let turns = scores
            .iter()
            .enumerate()
            .map(|(i, v)| TurnMetrics {
                turn: i + 1,
                judge: Some(Judgement {
                    scores: vec![Score {
                        criterion: "polite".into(),
                        score: Some(*v),
                        reason: String::new(),
                    }],
                    error: None,
                }),
                ..Default::default()
            })
            .collect();
        CallRecord {
            pipeline: label.into(),
            scenario: scenario.into(),
            run: 1,
            error: failed.then(|| "boom".into()),
            dir: PathBuf::new(),
            turns,
            turn_costs: Vec::new(),
        }
    }

    #[test]
    fn means_and_paired_differences_come_from_successful_calls_of_the_same_turns() {
        let calls = [
            call("A", "s1", &[5, 4], false),
            call("B", "s1", &[3, 2], false),
            call("A", "s2", &[5], false),
            call("B", "s2", &[4], false),
            call("B", "s3", &[1, 1, 1], true),
        ];
        let a = mean_score(&calls, "A", "polite").unwrap();
        assert_eq!((a.n, format!("{:.2}", a.mean)), (3, "4.67".into()));
        let b = mean_score(&calls, "B", "polite").unwrap();
        assert_eq!((b.n, format!("{:.2}", b.mean)), (3, "3.00".into()), "the failed call is left out");
        assert!(b.low <= b.mean && b.mean <= b.high);
        assert_eq!(diff_cell(&calls, "A", "B", "polite"), "-1.67 [-2.00, -1.00]");
        assert_eq!(diff_cell(&calls[..2], "A", "B", "polite"), "-2.00 (too few turns for an interval)");
        assert_eq!(diff_cell(&calls, "A", "B", "brief"), "–");
    }
}
