//! Bad pipeline files give one-line errors naming the file, the key path and the expectation.

use std::path::Path;
use voxpipe_config::{Env, LoadOptions, build, load, load_str};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

const GOOD: &str = r#"
name = "t"
[input]
kind = "wav"
path = "in.wav"
[output]
kind = "wav"
path = "out.wav"
[[stages]]
kind = "realtime.openai"
voice = "marin"
"#;

fn err(text: &str) -> String {
    let e = load_str(Path::new("pipelines/bad.toml"), text, &LoadOptions::default()).unwrap_err().to_string();
    assert!(!e.contains('\n'), "one line: {e}");
    e
}

#[test]
fn a_good_file_loads_with_defaults() {
    let c = load_str(Path::new("p.toml"), GOOD, &LoadOptions::default()).unwrap();
    assert_eq!(c.stages[0].kind(), "realtime.openai");
}

#[test]
fn unknown_key_error_names_file_and_path() {
    let e = err(&GOOD.replace("voice = \"marin\"", "voise = \"marin\""));
    assert!(e.starts_with("pipelines/bad.toml: key `stages[0]"), "{e}");
    assert!(e.contains("voise") && e.contains("voice"), "{e}");
}

#[test]
fn wrong_type_error_names_the_key_and_expected_type() {
    let e = err(&GOOD.replace("voice = \"marin\"", "append_ms = \"fast\""));
    assert_eq!(
        e,
        r#"pipelines/bad.toml: key `stages[0].append_ms`: invalid type: found string "fast", expected u32"#
    );
}

#[test]
fn missing_required_field_is_named() {
    let e = err(&GOOD.replace("path = \"out.wav\"", ""));
    assert!(e.contains("key `output.path`") || (e.contains("output") && e.contains("path")), "{e}");
    let e = err(&GOOD.replace("name = \"t\"", ""));
    assert!(e.contains("key `name`: missing required key"), "{e}");
}

#[test]
fn unknown_stage_kind_lists_the_known_ones() {
    let e = err(&GOOD.replace("realtime.openai", "realtime.opnai"));
    assert!(
        e.starts_with(
            "pipelines/bad.toml: key `stages[0].kind`: unknown kind `realtime.opnai`, did you mean `realtime.openai`? expected one of:"
        ),
        "{e}"
    );
    assert!(e.contains("realtime.openai"), "{e}");
    // Every kind of the table is listed (llm.local and the local voices too) and a typo gets
    // a suggestion.
    let e = err(&GOOD.replace("realtime.openai", "llm.lcal"));
    assert!(e.contains("unknown kind `llm.lcal`, did you mean `llm.local`? expected one of:"), "{e}");
    for kind in voxpipe_config::STAGE_KIND_NAMES {
        assert!(e.contains(kind), "{kind} missing from: {e}");
    }
    let e = err(&GOOD.replace("realtime.openai", "something.else"));
    assert!(!e.contains("did you mean"), "{e}");
}

/// Each kind of the table parses from a minimal stage table with its key path intact, and
/// names its own row.
#[test]
fn every_kind_in_the_table_parses() {
    for row in voxpipe_config::STAGE_KINDS {
        let text =
            GOOD.replace("kind = \"realtime.openai\"", &format!("kind = {:?}\nbogus_key = 1", row.name));
        let e = err(&text);
        if cfg!(not(feature = "llama")) && row.feature == Some("llama") {
            assert!(e.contains("needs a build with feature `llama`"), "{e}");
            continue;
        }
        assert!(e.contains("stages[0].bogus_key"), "{}: {e}", row.name);
    }
}

#[test]
fn missing_api_key_variable_names_the_variable_and_key() {
    let c = load_str(Path::new("p.toml"), GOOD, &LoadOptions::default()).unwrap();
    let e = block_on(voxpipe_config::registry::validate(&c, &Env::from_vars([]))).unwrap_err().to_string();
    assert!(e.contains("key `stages[0].api_key_env`") && e.contains("OPENAI_API_KEY"), "{e}");
}

#[test]
fn out_of_range_setting_names_key_and_range() {
    let c = load_str(
        Path::new("p.toml"),
        &GOOD.replace("voice = \"marin\"", "append_ms = 500"),
        &LoadOptions::default(),
    )
    .unwrap();
    let env = Env::from_vars([("OPENAI_API_KEY".to_string(), "k".to_string())]);
    let e = block_on(voxpipe_config::registry::validate(&c, &env)).unwrap_err().to_string();
    assert_eq!(e, "key `stages[0].append_ms`: expected 20..=100, got 500");
}

#[test]
fn environment_and_set_override_in_order() {
    let opts = LoadOptions {
        profile: None,
        sets: vec!["stages[0].voice=cedar".into()],
        env: vec![
            ("VOXPIPE_STAGES__0__VOICE".into(), "ash".into()),
            ("VOXPIPE_OUTPUT__PATH".into(), "env.wav".into()),
            ("VOXPIPE_MODEL_DIR".into(), "/not/a/pipeline/key".into()),
        ],
    };
    let c = load_str(Path::new("p.toml"), GOOD, &opts).unwrap();
    let voxpipe_config::StageConfig::RealtimeOpenAi(r) = &c.stages[0] else { panic!("a realtime stage") };
    assert_eq!(r.voice, "cedar", "--set wins over the environment");
    let voxpipe_config::OutputConfig::Wav(w) = &c.output else { panic!() };
    assert_eq!(w.path, Path::new("env.wav"));
}

#[test]
fn an_override_with_a_bad_value_says_where_it_came_from() {
    let opts = LoadOptions { sets: vec!["stages[0].append_ms=lots".into()], ..Default::default() };
    let e = load_str(Path::new("p.toml"), GOOD, &opts).unwrap_err().to_string();
    assert!(e.contains("stages[0]"), "{e}");
}

#[test]
fn profiles_merge_over_the_base_by_position() {
    let text = format!(
        "{GOOD}\n[profiles.slow]\nstages = [{{ turn_detection = {{ type = \"server_vad\", silence_duration_ms = 900 }} }}]\n"
    );
    let c = load_str(
        Path::new("p.toml"),
        &text,
        &LoadOptions { profile: Some("slow".into()), ..Default::default() },
    )
    .unwrap();
    let voxpipe_config::StageConfig::RealtimeOpenAi(r) = &c.stages[0] else { panic!("a realtime stage") };
    assert_eq!(r.voice, "marin", "the rest of the stage is kept");
    assert!(matches!(
        r.turn_detection,
        voxpipe_realtime::TurnDetection::ServerVad { silence_duration_ms: 900, .. }
    ));
    let e = load_str(
        Path::new("p.toml"),
        &text,
        &LoadOptions { profile: Some("fast".into()), ..Default::default() },
    )
    .unwrap_err();
    assert!(e.to_string().contains("profiles.fast"), "{e}");
}

#[test]
fn yaml_and_json_files_load_too() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("p.json");
    std::fs::write(&json, r#"{"name":"j","input":{"kind":"wav","path":"a.wav"},"output":{"kind":"wav","path":"b.wav"},"stages":[{"kind":"realtime.openai"}]}"#).unwrap();
    assert_eq!(load(&json, &LoadOptions::default()).unwrap().name, "j");
    let yaml = dir.path().join("p.yaml");
    std::fs::write(&yaml, "name: y\ninput: {kind: wav, path: a.wav}\noutput: {kind: wav, path: b.wav}\nstages:\n  - kind: realtime.openai\n").unwrap();
    assert_eq!(load(&yaml, &LoadOptions::default()).unwrap().name, "y");
}

#[test]
fn every_shipped_pipeline_file_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        // `*.example.toml` are snippets to paste into a pipeline (e.g. a `[tools]` block).
        let snippet = path.to_string_lossy().ends_with(".example.toml");
        if path.extension().is_some_and(|e| e == "toml") && !snippet {
            let text = std::fs::read_to_string(&path).unwrap();
            // A serve file (`voxpipe serve`) names pipelines; voxpipe-serve's tests load it.
            if text.lines().any(|l| l.trim_start() == "[[pipelines]]") {
                continue;
            }
            if cfg!(not(feature = "llama")) && text.contains("\"llm.local\"") {
                let e = load(&path, &LoadOptions::default()).unwrap_err().to_string();
                assert!(e.contains("needs a build with feature `llama`"), "{e}");
                continue;
            }
            load(&path, &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 1);
}

#[test]
fn a_missing_input_file_fails_the_build_with_its_key() {
    let c = load_str(Path::new("p.toml"), GOOD, &LoadOptions::default()).unwrap();
    let env = Env::from_vars([("OPENAI_API_KEY".to_string(), "k".to_string())]);
    let e = block_on(build(&c, &env)).unwrap_err().to_string();
    assert!(e.starts_with("key `input.path`: cannot read in.wav"), "{e}");
}

#[test]
fn a_channel_the_input_file_lacks_fails_the_build_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("mono.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&wav, spec).unwrap();
    (0..800).for_each(|_| w.write_sample(0i16).unwrap());
    w.finalize().unwrap();
    let text =
        GOOD.replace("path = \"in.wav\"", &format!("path = {:?}\nchannel = 1", wav.display().to_string()));
    let c = load_str(Path::new("p.toml"), &text, &LoadOptions::default()).unwrap();
    let env = Env::from_vars([("OPENAI_API_KEY".to_string(), "k".to_string())]);
    let e = block_on(build(&c, &env)).unwrap_err().to_string();
    assert!(
        e.starts_with("key `input.channel`: ")
            && e.contains("channel 1 asked for, but the file has 1 channel(s)"),
        "{e}"
    );
    let e = err(&GOOD.replace("path = \"in.wav\"", "path = \"in.wav\"\nchannel = \"left\""));
    assert_eq!(
        e,
        r#"pipelines/bad.toml: key `input.channel`: invalid type: found string "left", expected u16"#
    );
    let e = err(&GOOD.replace("kind = \"wav\"\npath = \"in.wav\"", "kind = \"wave\"\npath = \"in.wav\""));
    assert_eq!(
        e,
        "pipelines/bad.toml: key `input.kind`: unknown kind `wave`, did you mean `wav`? expected one of: wav, stdin"
    );
}

/// Each remote kind of the table builds (as `voxpipe check` does: secrets read, settings
/// checked, no connection) in a pipeline of its role: alone if native, with OpenAI stages for
/// the other two roles of a cascade. Local kinds need models and their features; the shipped
/// pipeline files cover them.
#[test]
fn every_remote_kind_in_the_table_builds() {
    use voxpipe_config::Role;
    // Keys a kind requires beyond `kind`.
    let required = |kind: &str| if kind == "tts.elevenlabs" { "voice_id = \"v\"\n" } else { "" };
    let stage = |kind: &str| format!("[[stages]]\nkind = {kind:?}\n{}", required(kind));
    let env = Env::from_vars(
        ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "ELEVENLABS_API_KEY"]
            .map(|k| (k.to_string(), "k".to_string())),
    );
    let head = GOOD.split("[[stages]]").next().unwrap();
    let mut built = 0;
    for row in voxpipe_config::STAGE_KINDS.iter().filter(|r| !r.local) {
        let stages = match row.role {
            Role::Native => stage(row.name),
            Role::Asr => [row.name, "llm.openai", "tts.openai"].map(stage).concat(),
            Role::Llm => ["asr.openai", row.name, "tts.openai"].map(stage).concat(),
            Role::Tts => ["asr.openai", "llm.openai", row.name].map(stage).concat(),
        };
        let text = format!("{head}{stages}");
        let c = load_str(Path::new("p.toml"), &text, &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}\n{text}", row.name));
        assert_eq!(c.stages.iter().filter(|s| s.kind() == row.name).count(), 1);
        block_on(voxpipe_config::registry::validate(&c, &env))
            .unwrap_or_else(|e| panic!("{}: {e}", row.name));
        built += 1;
    }
    assert_eq!(
        built, 7,
        "realtime.openai, asr.openai, llm.openai, llm.anthropic, llm.gemini, tts.openai, tts.elevenlabs"
    );
}

const CASCADE_WITH_FALLBACK: &str = r#"
name = "t"
[input]
kind = "wav"
path = "in.wav"
[output]
kind = "wav"
path = "out.wav"
[[stages]]
kind = "asr.openai"
[[stages]]
kind = "llm.openai"
model = "gpt-4o-mini"
[[stages.fallback]]
kind = "llm.anthropic"
model = "claude-haiku-4-5"
api_key_env = "BACKUP_KEY"
[[stages]]
kind = "tts.openai"
"#;

#[test]
fn an_llm_fallback_list_loads_and_its_keys_are_read_and_named() {
    let c = load_str(Path::new("p.toml"), CASCADE_WITH_FALLBACK, &LoadOptions::default()).unwrap();
    let env =
        |vars: &[(&str, &str)]| Env::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let e = block_on(voxpipe_config::registry::validate(&c, &env(&[("OPENAI_API_KEY", "sk-1")])))
        .unwrap_err()
        .to_string();
    assert!(e.contains("key `stages[1].fallback[0].api_key_env`") && e.contains("BACKUP_KEY"), "{e}");
    block_on(voxpipe_config::registry::validate(
        &c,
        &env(&[("OPENAI_API_KEY", "sk-1"), ("BACKUP_KEY", "sk-2")]),
    ))
    .unwrap();
    // A fallback's own keys are checked like a stage's, and the error names the entry's key.
    let e = err(&CASCADE_WITH_FALLBACK.replace("model = \"claude-haiku-4-5\"", "modle = \"x\""));
    assert!(
        e.contains("key `stages[1].fallback[0].modle`: unknown key") && e.contains("anthropic_version"),
        "{e}"
    );
    let e = err(&CASCADE_WITH_FALLBACK.replace("model = \"claude-haiku-4-5\"", "model = 5"));
    assert!(e.contains("key `stages[1].fallback[0].model`: invalid type"), "{e}");
    let e =
        err(&CASCADE_WITH_FALLBACK
            .replace("api_key_env = \"BACKUP_KEY\"", "[stages.fallback.http]\nretries = 3"));
    assert!(
        e.contains("key `stages[1].fallback[0].http.retries`: unknown key") && e.contains("max_retries"),
        "{e}"
    );
    let e = err(&CASCADE_WITH_FALLBACK.replace("kind = \"llm.anthropic\"", "kind = \"llm.antropic\""));
    assert!(
        e.contains("key `stages[1].fallback[0].kind`") && e.contains("did you mean `llm.anthropic`"),
        "{e}"
    );
    let e = err(&CASCADE_WITH_FALLBACK.replace("kind = \"llm.anthropic\"\n", ""));
    assert!(e.contains("key `stages[1].fallback[0].kind`: missing required key"), "{e}");
    // Only an LLM stage has a fallback list.
    let e = err(&CASCADE_WITH_FALLBACK.replace(
        "[[stages]]\nkind = \"tts.openai\"",
        "[[stages]]\nkind = \"tts.openai\"\n[[stages.fallback]]\nkind = \"llm.openai\"",
    ));
    assert!(e.contains("key `stages[2].fallback`: unknown key"), "{e}");
}

#[test]
fn a_gemini_stage_falls_back_and_serves_as_a_fallback() {
    let gemini_first = CASCADE_WITH_FALLBACK
        .replace(
            "kind = \"llm.openai\"\nmodel = \"gpt-4o-mini\"",
            "kind = \"llm.gemini\"\nthinking_budget = 0",
        )
        .replace("kind = \"llm.anthropic\"", "kind = \"llm.gemini\"")
        .replace("model = \"claude-haiku-4-5\"", "model = \"gemini-2.5-flash-lite\"");
    let c = load_str(Path::new("p.toml"), &gemini_first, &LoadOptions::default()).unwrap();
    let env = |vars: &[&str]| Env::from_vars(vars.iter().map(|k| (k.to_string(), "k".to_string())));
    let e = block_on(voxpipe_config::registry::validate(&c, &env(&["OPENAI_API_KEY", "BACKUP_KEY"])))
        .unwrap_err()
        .to_string();
    assert!(e.contains("key `stages[1].api_key_env`") && e.contains("GEMINI_API_KEY"), "{e}");
    block_on(voxpipe_config::registry::validate(
        &c,
        &env(&["OPENAI_API_KEY", "GEMINI_API_KEY", "BACKUP_KEY"]),
    ))
    .unwrap();
    let e = err(&gemini_first.replace("model = \"gemini-2.5-flash-lite\"", "max_tokens = 5"));
    assert!(
        e.contains("key `stages[1].fallback[0].max_tokens`: unknown key") && e.contains("max_output_tokens"),
        "{e}"
    );
    let e = err(&CASCADE_WITH_FALLBACK.replace("kind = \"llm.anthropic\"", "kind = \"llm.gemni\""));
    assert!(e.contains("did you mean `llm.gemini`"), "{e}");
}
