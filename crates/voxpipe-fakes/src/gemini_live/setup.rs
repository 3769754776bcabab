//! `BidiGenerateContentSetup` as the service reads it: the model, the Live subset of
//! `generationConfig`, a text-only system instruction, function declarations, the realtime
//! input (activity detection) settings, resumption, compression and transcription.

use serde_json::Value;

use super::wire::{Refusal, Result, boolean, content, enumeration, integer, list, number, object, string};

const SETUP: &[&str] = &[
    "model",
    "generationConfig",
    "systemInstruction",
    "tools",
    "realtimeInputConfig",
    "sessionResumption",
    "contextWindowCompression",
    "inputAudioTranscription",
    "outputAudioTranscription",
];
const GENERATION: &[&str] = &[
    "candidateCount",
    "stopSequences",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "enableEnhancedCivicAnswers",
    "responseModalities",
    "speechConfig",
    "thinkingConfig",
    "imageConfig",
    "mediaResolution",
    "routingConfig",
    "audioTimestamp",
];
/// Generation fields the Live API refuses (`BidiGenerateContentSetup.generation_config`).
const GENERATION_UNSUPPORTED: &[&str] = &[
    "responseLogprobs",
    "responseMimeType",
    "logprobs",
    "responseSchema",
    "responseJsonSchema",
    "stopSequences",
    "routingConfig",
    "audioTimestamp",
];
const TOOL: &[&str] = &[
    "functionDeclarations",
    "googleSearchRetrieval",
    "codeExecution",
    "googleSearch",
    "computerUse",
    "urlContext",
    "fileSearch",
    "googleMaps",
];
const DECLARATION: &[&str] = &[
    "name",
    "description",
    "parameters",
    "parametersJsonSchema",
    "response",
    "responseJsonSchema",
    "behavior",
];
/// `SpeechConfig.language_code`'s valid values (`generative_service.proto`).
const LANGUAGES: &[&str] = &[
    "de-DE", "en-AU", "en-GB", "en-IN", "en-US", "es-US", "fr-FR", "hi-IN", "pt-BR", "ar-XA", "es-ES",
    "fr-CA", "id-ID", "it-IT", "ja-JP", "tr-TR", "vi-VN", "bn-IN", "gu-IN", "kn-IN", "ml-IN", "mr-IN",
    "ta-IN", "te-IN", "nl-NL", "ko-KR", "cmn-CN", "pl-PL", "ru-RU", "th-TH",
];

/// The session settings of a `setup`.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    pub model: String,
    /// Audio out (AUDIO) or text parts (TEXT, also when no modality is given).
    pub audio_out: bool,
    pub system_text: Option<String>,
    pub functions: Vec<String>,
    /// Automatic activity detection (server VAD) is on.
    pub auto_vad: bool,
    /// START_SENSITIVITY_LOW: a higher VAD threshold.
    pub start_low: bool,
    pub prefix_padding_ms: u64,
    pub silence_duration_ms: u64,
    /// START_OF_ACTIVITY_INTERRUPTS (the default) or NO_INTERRUPTION.
    pub barge_in: bool,
    /// `sessionResumption` was given: `Some(handle)` to resume, `Some(None)` to opt in.
    pub resumption: Option<Option<String>>,
    pub input_transcription: bool,
    pub output_transcription: bool,
}

impl crate::vad::Endpointing for Setup {
    /// START_SENSITIVITY_LOW needs 4 dB more than HIGH (the default).
    fn threshold(&self) -> f64 {
        if self.start_low { 0.6 } else { 0.5 }
    }
    fn prefix_padding_ms(&self) -> u64 {
        self.prefix_padding_ms
    }
    fn silence_duration_ms(&self) -> u64 {
        self.silence_duration_ms.max(1)
    }
}

/// Default silence that ends an automatically detected turn (END_SENSITIVITY_HIGH), in ms.
const SILENCE_MS: u64 = 500;

/// Reads a `setup` message's body.
pub(super) fn setup(v: &Value) -> Result<Setup> {
    let s = object(v, "setup", SETUP)?;
    let model = string(s.get("model"), "setup.model")?.unwrap_or_default();
    if model.is_empty() {
        return Err(Refusal::invalid("setup.model: the model is required (models/{model})."));
    }
    if !model.starts_with("models/") || model.len() == "models/".len() {
        return Err(Refusal::invalid(format!(
            "setup.model: invalid model name \"{model}\"; expected models/{{model}}."
        )));
    }
    let audio_out = match s.get("generationConfig") {
        Some(g) => generation(g)?,
        None => false,
    };
    let system_text = match s.get("systemInstruction") {
        Some(c) => {
            let turn = content(c, "setup.system_instruction", true)?;
            Some(turn.text)
        }
        None => None,
    };
    let mut functions = Vec::new();
    for (i, t) in list(s.get("tools"), "setup.tools")?.iter().enumerate() {
        functions.extend(tool(t, &format!("setup.tools[{i}]"))?);
    }
    let mut setup = Setup {
        model: model.to_string(),
        audio_out,
        system_text,
        functions,
        auto_vad: true,
        start_low: false,
        prefix_padding_ms: 20,
        silence_duration_ms: SILENCE_MS,
        barge_in: true,
        resumption: None,
        input_transcription: false,
        output_transcription: false,
    };
    if let Some(r) = s.get("realtimeInputConfig") {
        realtime_config(r, &mut setup)?;
    }
    if let Some(r) = s.get("sessionResumption") {
        let r = object(r, "setup.session_resumption", &["handle"])?;
        let handle = string(r.get("handle"), "setup.session_resumption.handle")?;
        setup.resumption = Some(handle.filter(|h| !h.is_empty()).map(str::to_string));
    }
    if let Some(c) = s.get("contextWindowCompression") {
        let c = object(c, "setup.context_window_compression", &["slidingWindow", "triggerTokens"])?;
        integer(c.get("triggerTokens"), "setup.context_window_compression.trigger_tokens")?;
        if let Some(w) = c.get("slidingWindow") {
            let w = object(w, "setup.context_window_compression.sliding_window", &["targetTokens"])?;
            integer(w.get("targetTokens"), "setup.context_window_compression.sliding_window.target_tokens")?;
        }
    }
    for (key, at, flag) in [
        ("inputAudioTranscription", "setup.input_audio_transcription", &mut setup.input_transcription),
        ("outputAudioTranscription", "setup.output_audio_transcription", &mut setup.output_transcription),
    ] {
        if let Some(t) = s.get(key).filter(|t| !t.is_null()) {
            object(t, at, &[])?;
            *flag = true;
        }
    }
    Ok(setup)
}

/// Checks a Live `generationConfig`; returns whether the response modality is AUDIO.
fn generation(g: &Value) -> Result<bool> {
    let g = object(g, "setup.generation_config", GENERATION)?;
    if let Some(k) = g.keys().find(|k| GENERATION_UNSUPPORTED.contains(&k.as_str())) {
        return Err(Refusal::invalid(format!(
            "setup.generation_config.{k} is not supported in the Live API (BidiGenerateContent)."
        )));
    }
    if let Some(n) = integer(g.get("candidateCount"), "setup.generation_config.candidate_count")?
        && n != 1
    {
        return Err(Refusal::invalid(
            "setup.generation_config.candidate_count: only 1 candidate is supported.",
        ));
    }
    if integer(g.get("maxOutputTokens"), "setup.generation_config.max_output_tokens")?.is_some_and(|n| n < 1)
    {
        return Err(Refusal::invalid(
            "setup.generation_config.max_output_tokens: must be a positive integer.",
        ));
    }
    if integer(g.get("topK"), "setup.generation_config.top_k")?.is_some_and(|n| n < 1) {
        return Err(Refusal::invalid("setup.generation_config.top_k: must be a positive integer."));
    }
    integer(g.get("seed"), "setup.generation_config.seed")?;
    number(g.get("temperature"), "setup.generation_config.temperature", 0.0..=2.0)?;
    number(g.get("topP"), "setup.generation_config.top_p", 0.0..=1.0)?;
    number(g.get("presencePenalty"), "setup.generation_config.presence_penalty", -2.0..=2.0)?;
    number(g.get("frequencyPenalty"), "setup.generation_config.frequency_penalty", -2.0..=2.0)?;
    boolean(g.get("enableEnhancedCivicAnswers"), "setup.generation_config.enable_enhanced_civic_answers")?;
    enumeration(
        g.get("mediaResolution"),
        "setup.generation_config.media_resolution",
        "GenerationConfig.MediaResolution",
        &[
            "MEDIA_RESOLUTION_UNSPECIFIED",
            "MEDIA_RESOLUTION_LOW",
            "MEDIA_RESOLUTION_MEDIUM",
            "MEDIA_RESOLUTION_HIGH",
        ],
    )?;
    if let Some(t) = g.get("thinkingConfig") {
        let t = object(t, "setup.generation_config.thinking_config", &["includeThoughts", "thinkingBudget"])?;
        boolean(t.get("includeThoughts"), "setup.generation_config.thinking_config.include_thoughts")?;
        integer(t.get("thinkingBudget"), "setup.generation_config.thinking_config.thinking_budget")?;
    }
    if let Some(i) = g.get("imageConfig") {
        object(i, "setup.generation_config.image_config", &["aspectRatio"])?;
    }
    if let Some(s) = g.get("speechConfig") {
        speech(s)?;
    }
    let mut modalities = Vec::new();
    for (i, m) in
        list(g.get("responseModalities"), "setup.generation_config.response_modalities")?.iter().enumerate()
    {
        let at = format!("setup.generation_config.response_modalities[{i}]");
        let names = ["MODALITY_UNSPECIFIED", "TEXT", "IMAGE", "AUDIO"];
        modalities.extend(enumeration(Some(m), &at, "GenerationConfig.Modality", &names)?);
    }
    match modalities.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] | ["TEXT"] => Ok(false),
        ["AUDIO"] => Ok(true),
        _ => Err(Refusal::invalid(format!(
            "setup.generation_config.response_modalities: the Live API takes one modality, TEXT or AUDIO; got {modalities:?}."
        ))),
    }
}

fn speech(s: &Value) -> Result<()> {
    let at = "setup.generation_config.speech_config";
    let s = object(s, at, &["voiceConfig", "multiSpeakerVoiceConfig", "languageCode"])?;
    if s.contains_key("multiSpeakerVoiceConfig") {
        return Err(Refusal::invalid(format!(
            "{at}.multi_speaker_voice_config is not supported in the Live API."
        )));
    }
    if let Some(v) = s.get("voiceConfig") {
        let v = object(v, &format!("{at}.voice_config"), &["prebuiltVoiceConfig"])?;
        if let Some(p) = v.get("prebuiltVoiceConfig") {
            let p = object(p, &format!("{at}.voice_config.prebuilt_voice_config"), &["voiceName"])?;
            string(p.get("voiceName"), &format!("{at}.voice_config.prebuilt_voice_config.voice_name"))?;
        }
    }
    if let Some(l) = string(s.get("languageCode"), &format!("{at}.language_code"))?
        && !LANGUAGES.contains(&l)
    {
        return Err(Refusal::invalid(format!("{at}.language_code: unsupported language code \"{l}\".")));
    }
    Ok(())
}

/// Declared function names of one `Tool`.
fn tool(t: &Value, at: &str) -> Result<Vec<String>> {
    let t = object(t, at, TOOL)?;
    let mut names = Vec::new();
    for (j, d) in
        list(t.get("functionDeclarations"), &format!("{at}.function_declarations"))?.iter().enumerate()
    {
        let at = format!("{at}.function_declarations[{j}]");
        let d = object(d, &at, DECLARATION)?;
        let name = string(d.get("name"), &format!("{at}.name"))?.unwrap_or_default();
        let ok = name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'));
        if !ok {
            return Err(Refusal::invalid(format!(
                "{at}.name: Invalid function name. Must start with a letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), dots (.), colons (:) or dashes (-), with a maximum length of 64."
            )));
        }
        if string(d.get("description"), &format!("{at}.description"))?.is_none() {
            return Err(Refusal::invalid(format!("{at}.description: the description is required.")));
        }
        if d.contains_key("parameters") && d.contains_key("parametersJsonSchema") {
            return Err(Refusal::invalid(format!(
                "{at}: parameters and parameters_json_schema are mutually exclusive."
            )));
        }
        if let Some(p) = d.get("parameters") {
            let ty =
                ["TYPE_UNSPECIFIED", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"];
            enumeration(p.get("type"), &format!("{at}.parameters.type"), "Type", &ty)?;
        }
        enumeration(
            d.get("behavior"),
            &format!("{at}.behavior"),
            "FunctionDeclaration.Behavior",
            &["UNSPECIFIED", "BLOCKING", "NON_BLOCKING"],
        )?;
        if names.iter().any(|n| n == name) {
            return Err(Refusal::invalid(format!("{at}.name: duplicate function name \"{name}\".")));
        }
        names.push(name.to_string());
    }
    Ok(names)
}

fn realtime_config(r: &Value, setup: &mut Setup) -> Result<()> {
    let at = "setup.realtime_input_config";
    let r = object(r, at, &["automaticActivityDetection", "activityHandling", "turnCoverage"])?;
    if let Some(a) = r.get("automaticActivityDetection") {
        let at = format!("{at}.automatic_activity_detection");
        let a = object(
            a,
            &at,
            &[
                "disabled",
                "startOfSpeechSensitivity",
                "prefixPaddingMs",
                "endOfSpeechSensitivity",
                "silenceDurationMs",
            ],
        )?;
        setup.auto_vad = !boolean(a.get("disabled"), &format!("{at}.disabled"))?;
        let start = enumeration(
            a.get("startOfSpeechSensitivity"),
            &format!("{at}.start_of_speech_sensitivity"),
            "RealtimeInputConfig.AutomaticActivityDetection.StartSensitivity",
            &["START_SENSITIVITY_UNSPECIFIED", "START_SENSITIVITY_HIGH", "START_SENSITIVITY_LOW"],
        )?;
        setup.start_low = start.as_deref() == Some("START_SENSITIVITY_LOW");
        let end = enumeration(
            a.get("endOfSpeechSensitivity"),
            &format!("{at}.end_of_speech_sensitivity"),
            "RealtimeInputConfig.AutomaticActivityDetection.EndSensitivity",
            &["END_SENSITIVITY_UNSPECIFIED", "END_SENSITIVITY_HIGH", "END_SENSITIVITY_LOW"],
        )?;
        if end.as_deref() == Some("END_SENSITIVITY_LOW") {
            setup.silence_duration_ms = 2 * SILENCE_MS;
        }
        for (key, name, slot) in [
            ("prefixPaddingMs", "prefix_padding_ms", &mut setup.prefix_padding_ms),
            ("silenceDurationMs", "silence_duration_ms", &mut setup.silence_duration_ms),
        ] {
            match integer(a.get(key), &format!("{at}.{name}"))? {
                Some(ms) if !(0..=i64::from(i32::MAX)).contains(&ms) => {
                    return Err(Refusal::invalid(format!(
                        "{at}.{name}: must be from 0 to 2147483647, got {ms}."
                    )));
                }
                Some(ms) => *slot = ms as u64,
                None => {}
            }
        }
    }
    let handling = enumeration(
        r.get("activityHandling"),
        &format!("{at}.activity_handling"),
        "RealtimeInputConfig.ActivityHandling",
        &["ACTIVITY_HANDLING_UNSPECIFIED", "START_OF_ACTIVITY_INTERRUPTS", "NO_INTERRUPTION"],
    )?;
    setup.barge_in = handling.as_deref() != Some("NO_INTERRUPTION");
    enumeration(
        r.get("turnCoverage"),
        &format!("{at}.turn_coverage"),
        "RealtimeInputConfig.TurnCoverage",
        &["TURN_COVERAGE_UNSPECIFIED", "TURN_INCLUDES_ONLY_ACTIVITY", "TURN_INCLUDES_ALL_INPUT"],
    )?;
    Ok(())
}
