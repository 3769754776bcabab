//! `[turn]`: who decides when the caller's turn starts and ends, and when speech interrupts.

use serde::{Deserialize, Serialize};

/// Who detects turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnMode {
    /// The provider's VAD decides (native only); voxpipe follows its events.
    Server,
    /// voxpipe's VAD and end-of-turn policy decide, for either pipeline kind.
    Local,
    /// Turns are delimited by explicit start/stop control events.
    PushToTalk,
}

/// Which VAD the local controller uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VadKind {
    /// Frame energy over an adaptive noise floor; no model.
    Energy,
    /// Silero VAD (needs feature `silero` and `voxpipe models pull silero-vad onnxruntime`).
    Silero,
}

fn default_threshold() -> f32 {
    0.5
}
fn default_min_speech_ms() -> u32 {
    150
}
fn default_min_silence_ms() -> u32 {
    500
}
fn default_pause_ms() -> u32 {
    200
}
fn yes() -> bool {
    true
}
fn default_interrupt_min_speech_ms() -> u32 {
    300
}

fn default_echo_max_ms() -> u32 {
    1000
}

fn default_echo_warmup_ms() -> u32 {
    200
}
fn default_resume_after_ms() -> u32 {
    1500
}
fn default_backchannels() -> Vec<String> {
    [
        "uh-huh",
        "uh huh",
        "mm-hmm",
        "mm hmm",
        "mhm",
        "mm",
        "hmm",
        "yeah",
        "yep",
        "yes",
        "okay",
        "ok",
        "right",
        "sure",
        "i see",
        "got it",
        "alright",
        "all right",
        "ah",
        "oh",
        "uh",
        "um",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `[turn.interruption]`: when caller speech over the assistant interrupts it.
///
/// Guards against false interruptions, in the order they apply: speech in the first
/// `echo_warmup_ms` of a reply is taken for echo; shorter than `min_speech_ms` is a noise or a
/// cough; with a transcript (cascade), fewer than `min_words` words, or only words from
/// `backchannels`, is listening, not interrupting. While the controller is unsure, playout is
/// held (`pause_on_uncertain`) and resumes where it stopped if no real words follow.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InterruptionConfig {
    /// Let the caller interrupt at all. Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Speech needed before it interrupts (ms); shorter sounds (a cough, a click) do not.
    /// Default 300.
    #[serde(default = "default_interrupt_min_speech_ms")]
    pub min_speech_ms: u32,
    /// Words needed before speech interrupts, when a transcript is available (cascade).
    /// Default 1; 0 interrupts on duration alone.
    #[serde(default = "one")]
    pub min_words: u32,
    /// Utterances made only of these words and phrases never interrupt (case and punctuation
    /// are ignored). Default: "uh-huh", "mm-hmm", "yeah", "okay", "right", …
    #[serde(default = "default_backchannels")]
    pub backchannels: Vec<String>,
    /// Caller speech that starts within this many ms of the start of an assistant reply is
    /// taken for echo of the reply and ignored. Default 200; 0 disables.
    #[serde(default = "default_echo_warmup_ms")]
    pub echo_warmup_ms: u32,
    /// Speech that began in the echo warm-up but goes on this long (ms), or past the end of
    /// the reply, is the caller after all: it is handled as any speech over the reply (held,
    /// then an interruption by the rules above) or as the caller's turn. Default 1000.
    #[serde(default = "default_echo_max_ms")]
    pub echo_max_ms: u32,
    /// Hold playout while deciding whether speech is an interruption, instead of talking over
    /// it. Default true.
    #[serde(default = "yes")]
    pub pause_on_uncertain: bool,
    /// Held playout resumes if no interrupting words arrived this many ms after the speech
    /// ended (a transcript that never comes must not silence the assistant). Default 1500.
    #[serde(default = "default_resume_after_ms")]
    pub resume_after_ms: u32,
}

fn one() -> u32 {
    1
}

impl Default for InterruptionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            min_speech_ms: default_interrupt_min_speech_ms(),
            min_words: one(),
            backchannels: default_backchannels(),
            echo_warmup_ms: default_echo_warmup_ms(),
            echo_max_ms: default_echo_max_ms(),
            pause_on_uncertain: true,
            resume_after_ms: default_resume_after_ms(),
        }
    }
}

/// How readily the transcript policy ends a turn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Eagerness {
    /// Waits longer: fewer cut-offs, slower replies.
    Low,
    /// The default.
    #[default]
    Medium,
    /// Answers sooner: faster replies, more cut-offs.
    High,
}

/// Which end-of-turn policy decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    /// Reads the transcript (cascade): a complete thought ends the turn sooner, a trailing
    /// "and", "um" or a number being read out waits longer. Default; falls back to `silence`
    /// where there is no transcript (native).
    #[default]
    Text,
    /// `min_silence_ms` of silence ends the turn.
    Silence,
}

fn default_max_wait_ms() -> u32 {
    3000
}

/// `[turn.end_of_turn]`: when the caller's turn is over.
///
/// With `policy = "text"` the wait after the end of speech depends on how the transcript
/// reads, as a multiple of `min_silence_ms` set by `eagerness`:
///
/// | eagerness | complete | unsure | incomplete |
/// |---|---|---|---|
/// | high | 0.5× | 0.8× | 2× |
/// | medium | 0.6× | 1× | 3× |
/// | low | 1× | 1.5× | 4× |
///
/// capped at `max_wait_ms`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EndOfTurnConfig {
    /// `text` (default) or `silence`.
    #[serde(default)]
    pub policy: PolicyKind,
    /// `low`, `medium` (default) or `high`.
    #[serde(default)]
    pub eagerness: Eagerness,
    /// The longest wait after the end of speech, ms. Default 3000.
    #[serde(default = "default_max_wait_ms")]
    pub max_wait_ms: u32,
}

impl Default for EndOfTurnConfig {
    fn default() -> Self {
        Self { policy: PolicyKind::Text, eagerness: Eagerness::Medium, max_wait_ms: default_max_wait_ms() }
    }
}

/// `[turn]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TurnConfig {
    /// `server`, `local` or `push_to_talk`. Default: `server` for a Realtime stage whose
    /// `turn_detection` is a VAD, `local` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<TurnMode>,
    /// `silero` or `energy`. Default: Silero when its model and onnxruntime are in the model
    /// cache, else the energy VAD (with a warning saying what to pull).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vad: Option<VadKind>,
    /// Speech probability that counts as speech, 0..1. Default 0.5.
    #[serde(default = "default_threshold")]
    pub threshold: f32,
    /// Speech needed to start a turn (ms). Default 150.
    #[serde(default = "default_min_speech_ms")]
    pub min_speech_ms: u32,
    /// Silence that ends a turn (ms); the transcript policy scales it. Default 500.
    #[serde(default = "default_min_silence_ms")]
    pub min_silence_ms: u32,
    /// Cascade with the `text` policy: silence (ms) after which the caller's speech counts as
    /// paused. The controller ends the utterance there, so the ASR decodes its final
    /// transcript while the gate waits out the rest of the end-of-turn wait (which still
    /// counts from the end of speech); if the caller speaks again before the turn is decided,
    /// the two utterances are one turn. Capped at the policy's shortest wait (the `complete`
    /// one, 0.6 × `min_silence_ms` at medium eagerness), which is what it was before this
    /// setting existed. Default 200.
    ///
    /// Lower finalises sooner (each ms off it is a ms off the reply, as long as the decode
    /// outlasts the rest of the wait), but every pause longer than this inside a sentence
    /// becomes an utterance of its own: one more final decode (a core for a few hundred ms on a
    /// small machine, a request to a remote ASR), and a transcript decoded without the rest of
    /// the sentence (whisper guesses punctuation at the cut, and may repeat itself on a
    /// one-word fragment: tiny.en turned "goodbye" into a dozen at 80 ms). A fragment that
    /// reads complete ("Hi.") would end the turn if the caller were not heard again before its
    /// wait is over: the gate holds its decision while the VAD hears speech not yet
    /// `min_speech_ms` long, so a pause shorter than the policy's wait does not split a turn.
    /// Not used natively, with `policy = "silence"` (`min_silence_ms` alone ends the turn), or
    /// for speech over the assistant (it ends after the shortest wait, as before).
    #[serde(default = "default_pause_ms")]
    pub pause_ms: u32,
    /// End-of-turn policy.
    #[serde(default)]
    pub end_of_turn: EndOfTurnConfig,
    /// Interruption rules.
    #[serde(default)]
    pub interruption: InterruptionConfig,
}

impl Default for TurnConfig {
    fn default() -> Self {
        Self {
            mode: None,
            vad: None,
            threshold: default_threshold(),
            min_speech_ms: default_min_speech_ms(),
            min_silence_ms: default_min_silence_ms(),
            pause_ms: default_pause_ms(),
            end_of_turn: EndOfTurnConfig::default(),
            interruption: InterruptionConfig::default(),
        }
    }
}
