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
//! tts_per_character = 0.000012
//! [models."whisper-tiny.en"]
//! asr_per_minute = 0.0
//! ```
//!
//! A turn's cost sums, over the pipeline's stages: tokens by meter times the model's token
//! prices (Realtime and LLM stages), reply characters times `tts_per_character` (TTS stages)
//! and caller audio minutes times `asr_per_minute` (ASR stages). A stage whose model is not in
//! the table leaves the cost unknown rather than guessing.

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
}
