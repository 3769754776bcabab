//! Cost and tokens per minute of conversation, and the age of the prices behind them.
//!
//! A **minute of conversation** is a minute of the call's timeline: the scenario's rendered
//! input (the caller's turns, the pauses between them and the tail of silence after the last
//! one), which every pipeline hears identically. Dividing by it, not by the audio a pipeline
//! happened to play, keeps a terse pipeline from looking dearer per minute than a verbose one
//! for the same calls. A pipeline's figures sum its successful calls: cost (when every turn
//! was priced) and tokens (all meters), over those calls' minutes.

use crate::call::CallRecord;
use crate::pricing::{PriceTable, Staleness, format_day};
use crate::report::ReportInput;
use std::fmt::Write as _;

/// One pipeline's usage per minute of conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct PerMinute {
    /// The pipeline's label.
    pub label: String,
    /// Minutes of conversation of its successful calls.
    pub minutes: f64,
    /// Estimated cost of those calls, when every turn was priced.
    pub cost: Option<f64>,
    /// Input tokens (text and audio) of those calls.
    pub input_tokens: u64,
    /// Output tokens (text and audio) of those calls.
    pub output_tokens: u64,
}

impl PerMinute {
    /// Sums `calls` of pipeline `label` that succeeded; `duration_ms` gives each call's length
    /// of conversation (its scenario's rendered input).
    pub fn of(label: &str, calls: &[CallRecord], duration_ms: impl Fn(&CallRecord) -> u64) -> Self {
        let ok: Vec<&CallRecord> =
            calls.iter().filter(|c| c.pipeline == label && c.error.is_none()).collect();
        let minutes = ok.iter().map(|c| duration_ms(c)).sum::<u64>() as f64 / 60_000.0;
        let costs: Vec<Option<f64>> = ok.iter().flat_map(|c| c.turn_costs.iter().copied()).collect();
        let priced = ok.iter().all(|c| c.turn_costs.len() == c.turns.len());
        let cost = (priced && !costs.is_empty() && costs.iter().all(Option::is_some))
            .then(|| costs.iter().flatten().sum());
        let turns = ok.iter().flat_map(|c| c.turns.iter());
        let (input_tokens, output_tokens) = turns.fold((0, 0), |(i, o), t| {
            (i + t.tokens.input_text + t.tokens.input_audio, o + t.tokens.output_text + t.tokens.output_audio)
        });
        Self { label: label.to_string(), minutes, cost, input_tokens, output_tokens }
    }

    /// Estimated cost per minute of conversation.
    pub fn cost_per_minute(&self) -> Option<f64> {
        self.cost.and_then(|c| per(c, self.minutes))
    }

    /// Input tokens per minute of conversation.
    pub fn input_tokens_per_minute(&self) -> Option<f64> {
        per(self.input_tokens as f64, self.minutes)
    }

    /// Output tokens per minute of conversation.
    pub fn output_tokens_per_minute(&self) -> Option<f64> {
        per(self.output_tokens as f64, self.minutes)
    }
}

fn per(total: f64, minutes: f64) -> Option<f64> {
    (minutes > 0.0).then(|| total / minutes)
}

/// Every pipeline's [`PerMinute`], A first.
pub fn per_minute(r: &ReportInput<'_>) -> Vec<PerMinute> {
    let duration = |c: &CallRecord| {
        r.scenarios
            .iter()
            .position(|s| s.scenario.name == c.scenario)
            .map_or(0, |i| r.rendered[i].duration_ms)
    };
    r.pipelines.iter().map(|p| PerMinute::of(&p.label, r.calls, duration)).collect()
}

/// A price the pipelines used, with its date and age on the run's date.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceAge {
    /// The model.
    pub model: String,
    /// The labels of the pipelines with a stage on it.
    pub used_by: Vec<String>,
    /// Whether the table has a price for it.
    pub priced: bool,
    /// The price's date as written.
    pub date: String,
    /// Its age on the run's date.
    pub staleness: Staleness,
}

/// The prices behind the pipelines' models, in model order.
pub fn price_ages(r: &ReportInput<'_>, table: &PriceTable) -> Vec<PriceAge> {
    let mut out: Vec<PriceAge> = Vec::new();
    for p in r.pipelines {
        for (_, model) in p.stage_models() {
            match out.iter_mut().find(|a| a.model == model) {
                Some(a) if !a.used_by.contains(&p.label) => a.used_by.push(p.label.clone()),
                Some(_) => {}
                None => {
                    let date = table.price_date(&model).to_string();
                    out.push(PriceAge {
                        priced: table.models.contains_key(&model),
                        staleness: Staleness::of(&date, r.run_day),
                        used_by: vec![p.label.clone()],
                        date,
                        model,
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| a.model.cmp(&b.model));
    out
}

/// The marker the report puts beside a price that needs checking, or none.
pub fn stale_marker(a: &PriceAge) -> Option<String> {
    match a.staleness {
        Staleness::Stale { age_days } => Some(format!("⚠ stale: dated {}, {age_days} days old", a.date)),
        Staleness::Undated => Some(format!("⚠ stale? date `{}` is not YYYY-MM-DD", a.date)),
        Staleness::Fresh { .. } => None,
    }
}

fn money(v: Option<f64>, currency: &str) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.4} {currency}"))
}

/// The estimated cost and cost per minute of `m` as printed (`no price table`, `unpriced
/// model`, or amounts in the table's currency).
pub fn cost_cells(pricing: Option<&PriceTable>, m: &PerMinute) -> (String, String) {
    match pricing {
        None => ("no price table".into(), "–".into()),
        Some(_) if m.cost.is_none() => ("unpriced model".into(), "–".into()),
        Some(t) => (money(m.cost, &t.currency), money(m.cost_per_minute(), &t.currency)),
    }
}

/// A per-minute token rate as printed (whole tokens, `–` without minutes).
pub fn rate(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.0}"))
}

/// The "Cost per minute of conversation" section of report.md.
pub fn markdown(s: &mut String, r: &ReportInput<'_>) {
    let _ = writeln!(s, "\n## Cost per minute of conversation\n");
    let _ = writeln!(
        s,
        "A minute of conversation is a minute of the call's timeline (the scenario's input: the caller's \
         turns, the pauses and the tail), the same for every pipeline; figures sum the successful calls.\n"
    );
    let _ = writeln!(
        s,
        "| pipeline | minutes | est. cost | cost / min | input tokens / min | output tokens / min |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
    for m in per_minute(r) {
        let (cost, per_min) = cost_cells(r.pricing, &m);
        let _ = writeln!(
            s,
            "| {} | {:.2} | {cost} | {per_min} | {} | {} |",
            m.label,
            m.minutes,
            rate(m.input_tokens_per_minute()),
            rate(m.output_tokens_per_minute())
        );
    }
    let Some(table) = r.pricing else { return };
    let _ = writeln!(
        s,
        "\nPrices used (run date {}; a price dated more than {} days before it is flagged stale):\n",
        format_day(r.run_day),
        crate::pricing::STALE_AFTER_DAYS
    );
    let _ = writeln!(s, "| model | pipelines | price date | age (days) | |");
    let _ = writeln!(s, "|---|---|---|---:|---|");
    for a in price_ages(r, table) {
        let age = match a.staleness {
            Staleness::Fresh { age_days } | Staleness::Stale { age_days } => age_days.to_string(),
            Staleness::Undated => "?".into(),
        };
        let flag = if a.priced {
            stale_marker(&a).map_or_else(String::new, |m| format!("**{m}**"))
        } else {
            "no price: costs left blank".into()
        };
        let date = if a.priced { a.date.as_str() } else { "–" };
        let _ = writeln!(s, "| `{}` | {} | {date} | {age} | {flag} |", a.model, a.used_by.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Tokens, TurnMetrics};

    fn call(label: &str, scenario: &str, costs: Vec<Option<f64>>, error: bool) -> CallRecord {
        let turns = costs
            .iter()
            .map(|_| TurnMetrics {
                tokens: Tokens {
                    input_text: 100,
                    input_audio: 200,
                    output_text: 10,
                    output_audio: 50,
                    cached: 0,
                },
                ..Default::default()
            })
            .collect();
        CallRecord {
            pipeline: label.into(),
            scenario: scenario.into(),
            run: 1,
            error: error.then(|| "failed".into()),
            dir: "x".into(),
            turns,
            turn_costs: costs,
        }
    }

    #[test]
    fn cost_and_tokens_are_divided_by_the_minutes_of_the_successful_calls() {
        let calls = [
            call("A", "short", vec![Some(0.01), Some(0.02)], false), // 30 s
            call("A", "long", vec![Some(0.03)], false),              // 90 s
            call("A", "long", vec![Some(5.0)], true),                // failed: left out
            call("B", "short", vec![Some(0.01), None], false),
        ];
        let duration = |c: &CallRecord| if c.scenario == "short" { 30_000 } else { 90_000 };
        let a = PerMinute::of("A", &calls, duration);
        assert_eq!(a.minutes, 2.0);
        assert!((a.cost.unwrap() - 0.06).abs() < 1e-12);
        assert!((a.cost_per_minute().unwrap() - 0.03).abs() < 1e-12);
        assert_eq!((a.input_tokens, a.output_tokens), (900, 180));
        assert_eq!(a.input_tokens_per_minute(), Some(450.0));
        assert_eq!(a.output_tokens_per_minute(), Some(90.0));

        let b = PerMinute::of("B", &calls, duration);
        assert_eq!(b.minutes, 0.5);
        assert_eq!(b.cost, None, "a turn without a price leaves the cost unknown");
        assert_eq!(b.cost_per_minute(), None);
        assert_eq!(b.input_tokens_per_minute(), Some(1200.0));

        let none = PerMinute::of("C", &calls, duration);
        assert_eq!((none.minutes, none.cost_per_minute(), none.input_tokens_per_minute()), (0.0, None, None));
    }

    #[test]
    fn a_stale_price_is_marked_with_its_date() {
        let age = |date: &str, staleness| PriceAge {
            model: "m".into(),
            used_by: vec!["A".into()],
            priced: true,
            date: date.into(),
            staleness,
        };
        let stale = age("2025-09-01", Staleness::Stale { age_days: 461 });
        assert_eq!(stale_marker(&stale).unwrap(), "⚠ stale: dated 2025-09-01, 461 days old");
        assert!(stale_marker(&age("Sept", Staleness::Undated)).unwrap().contains("`Sept`"));
        assert_eq!(stale_marker(&age("2026-12-01", Staleness::Fresh { age_days: 5 })), None);
    }
}
