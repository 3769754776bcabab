//! Estimated cost from an editable price table (`pricing.toml`): no price is built in.
//!
//! ```toml
//! date = "2025-09-01"        # when the prices were copied; printed in the report
//! currency = "USD"
//! [models."gpt-realtime"]
//! input_text_per_million = 4.0
//! input_audio_per_million = 32.0
//! output_audio_per_million = 64.0
//! [models."gpt-4o-mini-tts"]
//! date = "2025-10-15"        # this model's prices were checked later than the table's
//! tts_per_character = 0.000012
//! [models."whisper-tiny.en"]
//! asr_per_minute = 0.0
//! ```
//!
//! A turn's cost sums, over the pipeline's stages: tokens by meter times the model's token
//! prices (Realtime and LLM stages), reply characters times `tts_per_character` (TTS stages)
//! and caller audio minutes times `asr_per_minute` (ASR stages). A stage whose model is not in
//! the table leaves the cost unknown rather than guessing.
//!
//! Every price has a date: the table's `date`, or a model's own `date` where it was checked
//! separately. The report flags a price dated more than [`STALE_AFTER_DAYS`] before the run
//! ([`Staleness`]), or one whose date is not `YYYY-MM-DD`.

use crate::error::EvalError;
use crate::metrics::TurnMetrics;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The price table.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    /// When the prices were taken (free text, e.g. `2025-09-01`).
    pub date: String,
    /// Currency of every price. Default `USD`.
    #[serde(default = "default_currency")]
    pub currency: String,
    /// Free text (source, caveats).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Prices by model name (the stage's `model`).
    #[serde(default)]
    pub models: BTreeMap<String, ModelPrice>,
}

/// Prices of one model; every field defaults to 0 (not billed on that meter).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// When this model's prices were taken (`YYYY-MM-DD`), when not the table's `date`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// Per million input text tokens.
    #[serde(default)]
    pub input_text_per_million: f64,
    /// Per million cached input tokens (billed instead of the text/audio input price).
    #[serde(default)]
    pub cached_input_per_million: f64,
    /// Per million input audio tokens.
    #[serde(default)]
    pub input_audio_per_million: f64,
    /// Per million output text tokens.
    #[serde(default)]
    pub output_text_per_million: f64,
    /// Per million output audio tokens.
    #[serde(default)]
    pub output_audio_per_million: f64,
    /// Per character of text synthesised.
    #[serde(default)]
    pub tts_per_character: f64,
    /// Per minute of audio transcribed.
    #[serde(default)]
    pub asr_per_minute: f64,
}

fn default_currency() -> String {
    "USD".into()
}

impl PriceTable {
    /// Reads a table.
    pub fn load(path: &Path) -> Result<Self, EvalError> {
        let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
        toml::from_str(&text)
            .map_err(|e| EvalError::Pricing { path: path.to_path_buf(), message: e.to_string() })
    }

    /// The date of `model`'s prices: its own `date`, else the table's.
    pub fn price_date(&self, model: &str) -> &str {
        self.models.get(model).and_then(|p| p.date.as_deref()).unwrap_or(&self.date)
    }

    /// The cost of one turn for a pipeline with these `(kind, model)` stages, or the name of
    /// the first model without a price.
    pub fn turn_cost(&self, stages: &[(String, String)], m: &TurnMetrics) -> Result<f64, String> {
        let mut cost = 0.0;
        for (kind, model) in stages {
            let p = self.models.get(model).ok_or_else(|| model.clone())?;
            let family = kind.split('.').next().unwrap_or("");
            cost += match family {
                "realtime" | "llm" => {
                    let t = &m.tokens;
                    let fresh_text = t.input_text.saturating_sub(t.cached);
                    (fresh_text as f64 * p.input_text_per_million
                        + t.cached as f64 * p.cached_input_per_million
                        + t.input_audio as f64 * p.input_audio_per_million
                        + t.output_text as f64 * p.output_text_per_million
                        + t.output_audio as f64 * p.output_audio_per_million)
                        / 1e6
                }
                "tts" => m.reply.chars().count() as f64 * p.tts_per_character,
                "asr" => m.user_audio_ms as f64 / 60_000.0 * p.asr_per_minute,
                _ => 0.0,
            };
        }
        Ok(cost)
    }
}

/// A price older than this many days before the run is flagged stale in the report.
pub const STALE_AFTER_DAYS: i64 = 90;

/// How old a price is on the run's date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staleness {
    /// Dated at most [`STALE_AFTER_DAYS`] days before the run (or after it).
    Fresh {
        /// Days from the price's date to the run's.
        age_days: i64,
    },
    /// Dated more than [`STALE_AFTER_DAYS`] days before the run.
    Stale {
        /// Days from the price's date to the run's.
        age_days: i64,
    },
    /// The date is not `YYYY-MM-DD`, so its age is unknown.
    Undated,
}

impl Staleness {
    /// The age of a price dated `date` (`YYYY-MM-DD`) on `run_day` (days since 1970-01-01).
    pub fn of(date: &str, run_day: i64) -> Self {
        match parse_day(date) {
            None => Staleness::Undated,
            Some(day) => {
                let age_days = run_day - day;
                if age_days > STALE_AFTER_DAYS {
                    Staleness::Stale { age_days }
                } else {
                    Staleness::Fresh { age_days }
                }
            }
        }
    }

    /// True unless the price is known to be recent enough.
    pub fn needs_checking(self) -> bool {
        !matches!(self, Staleness::Fresh { .. })
    }
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date (proleptic Gregorian), or none when it is not
/// one.
pub fn parse_day(date: &str) -> Option<i64> {
    let mut parts = date.trim().splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, i64, i64) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in_month = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month[(m - 1) as usize] {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// `YYYY-MM-DD` of a day counted from 1970-01-01 (the inverse of [`parse_day`]).
pub fn format_day(day: i64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Today (UTC) in days since 1970-01-01, from the system clock.
pub fn today() -> i64 {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    secs.div_euclid(86_400)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Tokens;

    #[test]
    fn a_turn_costs_tokens_characters_and_minutes_by_stage() {
        let table: PriceTable = toml::from_str(
            "date = \"test\"\n[models.rt]\ninput_text_per_million = 4.0\ninput_audio_per_million = 32.0\n\
             output_audio_per_million = 64.0\n[models.tts]\ntts_per_character = 0.001\n[models.asr]\nasr_per_minute = 0.5\n",
        )
        .unwrap();
        let m = TurnMetrics {
            tokens: Tokens { input_text: 1000, input_audio: 2000, output_audio: 500, ..Default::default() },
            reply: "12345".into(),
            user_audio_ms: 30_000,
            ..Default::default()
        };
        let rt = table.turn_cost(&[("realtime.openai".into(), "rt".into())], &m).unwrap();
        assert!((rt - (0.004 + 0.064 + 0.032)).abs() < 1e-12, "{rt}");
        let cascade = [("asr.whisper".into(), "asr".into()), ("tts.openai".into(), "tts".into())];
        assert!((table.turn_cost(&cascade, &m).unwrap() - (0.25 + 0.005)).abs() < 1e-12);
        assert_eq!(table.turn_cost(&[("llm.openai".into(), "unknown".into())], &m), Err("unknown".into()));
    }

    #[test]
    fn dates_count_days_from_1970_and_back() {
        assert_eq!(parse_day("1970-01-01"), Some(0));
        assert_eq!(parse_day("2000-03-01"), Some(11_017));
        assert_eq!(parse_day("2024-02-29").map(format_day).as_deref(), Some("2024-02-29"));
        for day in [-1, 0, 59, 11_016, 20_000, 20_793] {
            assert_eq!(parse_day(&format_day(day)), Some(day), "{}", format_day(day));
        }
        for bad in ["2025-02-29", "2025-13-01", "2025-9-1", "September 2025", "", "test"] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_price_older_than_90_days_before_the_run_is_stale_and_a_model_can_carry_its_own_date() {
        let run = parse_day("2026-12-06").unwrap();
        assert_eq!(Staleness::of("2026-09-07", run), Staleness::Fresh { age_days: 90 });
        assert_eq!(Staleness::of("2026-09-06", run), Staleness::Stale { age_days: 91 });
        assert_eq!(Staleness::of("2025-09-01", run), Staleness::Stale { age_days: 461 });
        assert_eq!(Staleness::of("2026-12-24", run), Staleness::Fresh { age_days: -18 });
        assert_eq!(Staleness::of("autumn 2025", run), Staleness::Undated);
        assert!(Staleness::of("autumn 2025", run).needs_checking());
        assert!(!Staleness::of("2026-12-01", run).needs_checking());

        let table: PriceTable =
            toml::from_str("date = \"2025-09-01\"\n[models.old]\n[models.new]\ndate = \"2026-12-01\"\n")
                .unwrap();
        assert_eq!(table.price_date("old"), "2025-09-01");
        assert_eq!(table.price_date("new"), "2026-12-01");
        assert_eq!(table.price_date("missing"), "2025-09-01");
    }
}
