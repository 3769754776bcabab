//! Local transcription with whisper.cpp (through whisper-rs).
//!
//! [`WhisperConfig`] always compiles, so a build without the `whisper` feature can still parse
//! and check a pipeline file; [`Transcriber`] and [`WhisperStage`] need the feature.

use serde::{Deserialize, Serialize};

/// Settings of the `asr.whisper` stage.
///
/// ```toml
/// [[stages]]
/// kind = "asr.whisper"
/// model = "whisper-tiny.en"   # or "whisper-base", or a path to a ggml .bin
/// threads = 1
/// language = "en"             # "auto" to detect (multilingual models)
/// interim_interval_ms = 500   # 0 = no interim transcripts
/// audio_ctx = "auto"          # "full", or encoder frames (50 per second of audio)
/// beam_size = 1               # 1 = greedy
/// prefix_ms = 300
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WhisperConfig {
    /// The model: a catalog id (`whisper-tiny.en`, `whisper-base`; pulled with
    /// `voxpipe models pull`) or a path to a ggml file. Default: `whisper-tiny.en`.
    #[serde(default = "defaults::model")]
    pub model: String,
    /// Decoder threads, 1 or more. Default: 1. More threads decode faster only on cores
    /// nothing else uses: whisper.cpp's threads wait for each other by spinning, so on a
    /// shared 2-core machine 2 threads were 4–15× slower than 1 (BENCHMARKS.md).
    #[serde(default = "defaults::threads")]
    pub threads: u16,
    /// Spoken language as an ISO 639-1 code, or `auto` to detect it (multilingual models
    /// only; `.en` models accept only `en`). Default: `en`.
    #[serde(default = "defaults::language")]
    pub language: String,
    /// How often the growing utterance is re-decoded for an interim transcript, in ms; 0
    /// disables interims. Default: 500.
    #[serde(default = "defaults::interim_interval_ms")]
    pub interim_interval_ms: u64,
    /// Encoder context: `auto` sizes it to the utterance (much faster on short turns), `full`
    /// always uses 30 s (1500 frames), a number fixes it (1 to 1500 frames, 50 per second).
    /// Default: `auto`.
    #[serde(default)]
    pub audio_ctx: AudioCtx,
    /// Beam width; 1 decodes greedily. Range 1 to 8. Default: 1.
    #[serde(default = "defaults::beam_size")]
    pub beam_size: u8,
    /// Audio kept from before the speech onset, in ms. Default: 300.
    #[serde(default = "defaults::prefix_ms")]
    pub prefix_ms: u64,
}

impl Default for WhisperConfig {
    fn default() -> Self {
        Self {
            model: defaults::model(),
            threads: defaults::threads(),
            language: defaults::language(),
            interim_interval_ms: defaults::interim_interval_ms(),
            audio_ctx: AudioCtx::default(),
            beam_size: defaults::beam_size(),
            prefix_ms: defaults::prefix_ms(),
        }
    }
}

impl WhisperConfig {
    /// Checks ranges that serde cannot.
    pub fn validate(&self) -> Result<(), crate::Error> {
        let bad = |m: String| Err(crate::Error::Config(m));
        if self.threads == 0 {
            return bad("`threads` must be at least 1".into());
        }
        if !(1..=8).contains(&self.beam_size) {
            return bad(format!("`beam_size` must be 1 to 8, got {}", self.beam_size));
        }
        if let AudioCtx::Frames(n) = self.audio_ctx
            && !(1..=1500).contains(&n)
        {
            return bad(format!("`audio_ctx` must be 1 to 1500 frames, got {n}"));
        }
        if self.language != "auto"
            && (self.language.len() != 2 || !self.language.bytes().all(|b| b.is_ascii_lowercase()))
        {
            return bad(format!("`language` must be a two-letter code or `auto`, got `{}`", self.language));
        }
        Ok(())
    }
}

mod defaults {
    pub fn model() -> String {
        "whisper-tiny.en".into()
    }
    pub fn threads() -> u16 {
        1
    }
    pub fn language() -> String {
        "en".into()
    }
    pub fn interim_interval_ms() -> u64 {
        500
    }
    pub fn beam_size() -> u8 {
        1
    }
    pub fn prefix_ms() -> u64 {
        300
    }
}

/// How much of whisper's 30 s encoder window to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum AudioCtx {
    /// `"auto"` or `"full"`.
    Mode(AudioCtxMode),
    /// A fixed number of encoder frames (50 per second of audio).
    Frames(u16),
}

/// The named [`AudioCtx`] settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AudioCtxMode {
    /// Sized to the utterance: [`AUTO_MARGIN_FRAMES`] more than its length, at least
    /// [`AUTO_MIN_FRAMES`].
    Auto,
    /// The whole 30 s window (1500 frames), like whisper's reference decoding.
    Full,
}

impl Default for AudioCtx {
    fn default() -> Self {
        AudioCtx::Mode(AudioCtxMode::Auto)
    }
}

/// Encoder frames per second of audio.
pub const FRAMES_PER_SECOND: f64 = 50.0;
/// Frames added to the utterance length in `auto` mode.
pub const AUTO_MARGIN_FRAMES: u32 = 64;
/// Smallest `auto` context: shorter contexts make whisper hallucinate on short turns.
pub const AUTO_MIN_FRAMES: u32 = 384;
/// The full context.
pub const FULL_FRAMES: u32 = 1500;

impl AudioCtx {
    /// The encoder context for `samples` of 16 kHz audio (`FULL_FRAMES` means whisper's
    /// default).
    pub fn frames_for(&self, samples: usize) -> u32 {
        match self {
            AudioCtx::Mode(AudioCtxMode::Full) => FULL_FRAMES,
            AudioCtx::Frames(n) => (*n as u32).clamp(1, FULL_FRAMES),
            AudioCtx::Mode(AudioCtxMode::Auto) => {
                let frames = (samples as f64 / 16_000.0 * FRAMES_PER_SECOND).ceil() as u32;
                (frames + AUTO_MARGIN_FRAMES).clamp(AUTO_MIN_FRAMES, FULL_FRAMES)
            }
        }
    }
}

/// Removes whisper's non-speech annotations (`[BLANK_AUDIO]`, `(music)`, `[ Silence ]`) and
/// collapses whitespace.
pub fn clean_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// True when `text` repeats itself the way a looping decoder does: the whole text one phrase
/// said two times or more ("Goodbye! Goodbye!"), or, anywhere in it, one word four times or
/// more in a row or a phrase of 2 to 8 words three times or more. Case and punctuation are
/// ignored. Real speech does this too ("bye bye"); the caller then decodes again and keeps
/// what it gets.
pub fn repeats_itself(text: &str) -> bool {
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| w.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect())
        .filter(|w: &String| !w.is_empty())
        .collect();
    let repeated = |start: usize, n: usize, times: usize| {
        let phrase = &words[start..start + n];
        (1..times).all(|k| words.get(start + k * n..start + (k + 1) * n) == Some(phrase))
    };
    let whole =
        (1..=words.len() / 2).any(|n| words.len().is_multiple_of(n) && repeated(0, n, words.len() / n));
    whole
        || (1..=8).any(|n| {
            let times = if n == 1 { 4 } else { 3 };
            (0..(words.len() + 1).saturating_sub(n * times)).any(|start| repeated(start, n, times))
        })
}

#[cfg(feature = "whisper")]
#[path = "whisper_local.rs"]
mod local;
#[cfg(feature = "whisper")]
pub use local::{DecodeOptions, Transcriber, Transcription, WhisperStage};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_looping_decode_is_told_from_speech_that_repeats_a_little() {
        assert!(repeats_itself("Goodbye! Goodbye! Goodbye! Goodbye! Goodbye!"));
        assert!(repeats_itself("Thanks for your help. Thanks for your help. Thanks for your help. Thanks"));
        assert!(repeats_itself("Sorry, I said: the order is late, the order is late, the Order is late."));
        assert!(repeats_itself("Goodbye! Goodbye!") && repeats_itself("Order 5. Order 5."));
        assert!(!repeats_itself("No, no, no. That's not what I asked."));
        assert!(!repeats_itself("Goodbye.") && !repeats_itself("Order 5, order 6."));
        assert!(!repeats_itself("Thank you, thank you so much!"));
        assert!(!repeats_itself("one two three four five six seven eight nine ten"));
        assert!(!repeats_itself("Is the black coat in stock? Thanks."));
        assert!(!repeats_itself(""));
        assert!(repeats_itself("ok ok ok ok"));
    }

    #[test]
    fn toml_defaults_and_audio_ctx_forms_parse() {
        let c: WhisperConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, WhisperConfig::default());
        assert_eq!(c.audio_ctx, AudioCtx::Mode(AudioCtxMode::Auto));
        let c: WhisperConfig = serde_json::from_str(r#"{"audio_ctx":"full","model":"/m.bin"}"#).unwrap();
        assert_eq!(c.audio_ctx, AudioCtx::Mode(AudioCtxMode::Full));
        let c: WhisperConfig = serde_json::from_str(r#"{"audio_ctx":768}"#).unwrap();
        assert_eq!(c.audio_ctx, AudioCtx::Frames(768));
        let e = serde_json::from_str::<WhisperConfig>(r#"{"modle":"x"}"#).unwrap_err().to_string();
        assert!(e.contains("unknown field `modle`"), "{e}");
        assert!(WhisperConfig { beam_size: 0, ..Default::default() }.validate().is_err());
        assert!(WhisperConfig { language: "english".into(), ..Default::default() }.validate().is_err());
        assert!(
            WhisperConfig { audio_ctx: AudioCtx::Frames(2000), ..Default::default() }.validate().is_err()
        );
        assert!(WhisperConfig::default().validate().is_ok());
    }

    #[test]
    fn auto_audio_ctx_follows_the_utterance_length() {
        let auto = AudioCtx::default();
        assert_eq!(auto.frames_for(16_000), AUTO_MIN_FRAMES);
        assert_eq!(auto.frames_for(16_000 * 10), 500 + AUTO_MARGIN_FRAMES);
        assert_eq!(auto.frames_for(16_000 * 40), FULL_FRAMES);
        assert_eq!(AudioCtx::Mode(AudioCtxMode::Full).frames_for(100), FULL_FRAMES);
        assert_eq!(AudioCtx::Frames(600).frames_for(100), 600);
    }

    #[test]
    fn annotations_are_removed_from_text() {
        assert_eq!(clean_text(" [BLANK_AUDIO]"), "");
        assert_eq!(clean_text(" Hello (music) there.  [ Silence ]"), "Hello there.");
    }
}
