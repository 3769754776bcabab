//! The `voxpipe` binary: secrets never leak, `check` prints or fails precisely.

use std::path::{Path, PathBuf};
use std::process::Command;
use voxpipe_fakes::realtime::{RealtimeFake, RealtimeFakeConfig};

const SECRET: &str = "sk-test-SECRET";

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel)
}

fn voxpipe() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_voxpipe"));
    c.current_dir(repo(""));
    c
}

fn short_call(path: &Path) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..16_000 * 2 {
        let t = i as f32 / 16_000.0;
        let v = if (0.3..1.3).contains(&t) {
            (t * 2.0 * std::f32::consts::PI * 300.0).sin() * 9000.0
        } else {
            0.0
        };
        w.write_sample(v as i16).unwrap();
    }
    w.finalize().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_appear_in_no_log_line_event_or_check_output() {
    let fake = RealtimeFake::start(RealtimeFakeConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("call.wav");
    short_call(&input);
    let events = dir.path().join("events.jsonl");
    let url = fake.url();
    let out = tokio::task::spawn_blocking({
        let (input, events, dir) = (input.clone(), events.clone(), dir.path().to_path_buf());
        move || {
            voxpipe()
                .args(["run", "pipelines/native-fake.toml", "--set"])
                .arg(format!("stages[0].url={url}"))
                .arg("--input")
                .arg(&input)
                .arg("--output")
                .arg(dir.join("reply.wav"))
                .arg("--events")
                .arg(&events)
                .env("OPENAI_API_KEY", SECRET)
                .env("RUST_LOG", "trace")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "run failed: {stderr}");
    assert!(stderr.lines().count() > 50, "trace logging was on");
    assert!(
        stderr.contains("Authorization")
            || stderr.contains("authorization")
            || stderr.contains("realtime session ready")
    );
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET), "the key leaked into the output");
    let log = std::fs::read_to_string(&events).unwrap();
    assert!(log.contains("assistant_transcript"), "the call happened");
    assert!(!log.contains(SECRET), "the key leaked into the event log");

    let check = voxpipe()
        .args(["check", "pipelines/native-fake.toml"])
        .env("OPENAI_API_KEY", SECRET)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert!(text.contains("api_key_env = \"OPENAI_API_KEY\""), "{text}");
    assert!(!text.contains(SECRET) && !String::from_utf8_lossy(&check.stderr).contains(SECRET));
    fake.shutdown().await;
}

#[test]
fn check_fails_with_one_line_naming_file_key_and_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(repo("pipelines/native-fake.toml"))
        .unwrap()
        .replace("voice = \"marin\"", "voice = 7");
    std::fs::write(&bad, text).unwrap();
    let out = voxpipe().arg("check").arg(&bad).env("OPENAI_API_KEY", "x").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().last().unwrap();
    assert!(line.contains("bad.toml: key `stages[0].voice`: invalid type"), "{err}");

    let out = voxpipe()
        .args(["check", "pipelines/native-fake.toml"])
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "native-fake.toml: key `stages[0].api_key_env`: environment variable `OPENAI_API_KEY` is not set"
        ),
        "{err}"
    );
}

#[test]
fn run_reports_a_truncated_input_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cut.wav");
    short_call(&input);
    let bytes = std::fs::read(&input).unwrap();
    std::fs::write(&input, &bytes[..bytes.len() / 3]).unwrap();
    let out = voxpipe()
        .args(["run", "pipelines/native-fake.toml", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(dir.path().join("r.wav"))
        .env("OPENAI_API_KEY", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("key `input.path`") && err.contains("truncated WAV"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// `--mic` in a build without the `mic` feature says how to get it (exit status 1, no panic).
/// With the feature, `mic::tests` covers the missing-device error.
#[cfg(not(feature = "mic"))]
#[test]
fn run_mic_without_the_feature_names_the_build_command() {
    let out = voxpipe()
        .args(["run", "pipelines/native-fake.toml", "--mic"])
        .env("OPENAI_API_KEY", "x")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cargo build --release -p voxpipe-cli --features mic"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
}

#[test]
fn ab_on_the_virtual_clock_measures_the_fakes_exactly_and_refuses_local_compute() {
    let out = tempfile::tempdir().unwrap();
    let ab = |second: &str| {
        voxpipe()
            .args(["ab", "pipelines/native-fake.toml", second, "--fakes", "--virtual-clock"])
            .arg("--out")
            .arg(out.path())
            .output()
            .unwrap()
    };
    let run = ab("pipelines/native-fake-local.toml");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let report = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(report.contains("16 calls, 0 failed"), "{report}");
    // Server VAD (500 ms silence + 100 ms appends) against the local controller's 500 ms, then
    // the `published` profile's 600 ms to the Realtime model's first audio: the median
    // voice-to-voice of turns without tools is exactly what the fakes are set to.
    let v2v = report.lines().find(|l| l.starts_with("| voice_to_voice_ms |")).unwrap();
    let cells: Vec<&str> = v2v.split('|').map(str::trim).collect();
    assert_eq!((cells[2], cells[6]), ("1180", "1100"), "{v2v}");
    assert!(report.contains("- **A**: profile `published`"), "{report}");

    let refused = ab("pipelines/cascade-fake.toml");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("cascade-fake.toml has a `asr.whisper` stage"), "{err}");
}

/// Every pipeline file shipped in `pipelines/` passes `voxpipe check` (API keys set to dummies;
/// nothing is contacted or loaded), on a machine that has pulled no model yet: running pulls a
/// catalog model on first use, so a model not installed is not a configuration error.
#[test]
fn every_shipped_pipeline_passes_check() {
    let no_models = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(repo("pipelines")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        // tools.example.toml is a block of tools to paste into a pipeline, not a pipeline.
        if path.extension().is_none_or(|e| e != "toml") || name == "tools.example.toml" {
            continue;
        }
        let out = voxpipe()
            .arg("check")
            .arg(&path)
            .env("OPENAI_API_KEY", "sk-dummy")
            .env("ANTHROPIC_API_KEY", "sk-dummy")
            .env("AZURE_OPENAI_API_KEY", "dummy")
            .env("GEMINI_API_KEY", "dummy")
            .env("ELEVENLABS_API_KEY", "dummy")
            .env("FAKE_API_KEY", "sk-dummy")
            .env("VOXPIPE_MODEL_DIR", no_models.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} pipelines found");
}

/// The Gemini cascades are the OpenAI ones with the LLM stage swapped: same input, turns, ASR,
/// TTS and tools.
#[test]
fn the_gemini_cascades_differ_from_the_openai_ones_only_in_their_llm() {
    let read =
        |f: &str| -> toml::Table { toml::from_str(&std::fs::read_to_string(repo(f)).unwrap()).unwrap() };
    for (openai, gemini) in [
        ("pipelines/cascade-openai.toml", "pipelines/cascade-gemini.toml"),
        ("pipelines/cascade-fake.toml", "pipelines/cascade-gemini-fake.toml"),
    ] {
        let (a, b) = (read(openai), read(gemini));
        for key in ["input", "turn", "tools"] {
            assert_eq!(a.get(key), b.get(key), "{gemini}: `{key}` differs");
        }
        let (sa, sb) = (a["stages"].as_array().unwrap(), b["stages"].as_array().unwrap());
        assert_eq!(
            (sa[0].clone(), sa[2].clone()),
            (sb[0].clone(), sb[2].clone()),
            "{gemini}: ASR or TTS differs"
        );
        assert_eq!(sb[1]["kind"].as_str(), Some("llm.gemini"), "{gemini}");
        assert_eq!(sa[1].get("instructions"), sb[1].get("instructions"), "{gemini}");
    }
}

/// The light offline default is the offline default with another voice: same turns, ASR, LLM
/// (instructions, examples) and tool.
#[test]
fn local_espeak_differs_from_local_only_in_its_voice_and_outputs() {
    let read =
        |f: &str| -> toml::Table { toml::from_str(&std::fs::read_to_string(repo(f)).unwrap()).unwrap() };
    let (local, light) = (read("pipelines/local.toml"), read("pipelines/local-espeak.toml"));
    for key in ["input", "turn", "tools"] {
        assert_eq!(local[key], light[key], "`{key}` differs");
    }
    let stages = |t: &toml::Table| t["stages"].as_array().unwrap().clone();
    let (a, b) = (stages(&local), stages(&light));
    assert_eq!(a.len(), b.len());
    assert_eq!(a[..a.len() - 1], b[..b.len() - 1], "ASR and LLM stages differ");
    assert_eq!(a[a.len() - 1]["kind"].as_str(), Some("tts.piper"));
    assert_eq!(b[b.len() - 1]["kind"].as_str(), Some("tts.espeak"));
}

/// A few-shot example that calls an undeclared tool, or is malformed, fails `check` with the
/// key that is wrong.
#[test]
fn check_names_bad_llm_examples() {
    let dir = tempfile::tempdir().unwrap();
    let local = std::fs::read_to_string(repo("pipelines/local.toml")).unwrap();
    let cases = [
        (
            "name = \"check_stock\", arguments = { product = \"red hat\" }",
            "name = \"check_stok\", arguments = { product = \"red hat\" }",
            "key `stages[1].examples[0].tool_call.name`: `check_stok` is not one of the pipeline's tools",
        ),
        (
            "assistant = \"We are open every day from nine to five.\"",
            "tool_result = \"x\"",
            "`examples[1]` has a `tool_result` without a `tool_call`",
        ),
    ];
    for (i, (from, to, expected)) in cases.into_iter().enumerate() {
        assert!(local.contains(from), "{from}");
        let path = dir.path().join(format!("bad-{i}.toml"));
        std::fs::write(&path, local.replacen(from, to, 1)).unwrap();
        let out = voxpipe().arg("check").arg(&path).env("VOXPIPE_MODEL_DIR", dir.path()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(expected), "{stderr}");
    }
}

/// A telephone bridge's view: μ-law at 8 kHz in on stdin, paced as a live line is, and μ-law
/// out on stdout; the summary goes to stderr so no text lands in the audio stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mu_law_on_stdin_and_stdout_carries_a_call_and_keeps_text_out_of_the_audio() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fake = RealtimeFake::start(RealtimeFakeConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let call = dir.path().join("call.wav");
    short_call(&call);
    let reader = hound::WavReader::open(&call).unwrap();
    let pcm16k: Vec<i16> = reader.into_samples::<i16>().map(Result::unwrap).collect();
    let mut line = voxpipe_core::audio::resample_all(&pcm16k, 16_000, 8000).unwrap();
    line.resize(line.len() + 8000 * 3, 0); // three seconds of the caller listening
    let mut mu = Vec::new();
    voxpipe_core::audio::g711::encode_ulaw(&line, &mut mu);
    let pipeline = dir.path().join("phone.toml");
    let text = std::fs::read_to_string(repo("pipelines/native-fake.toml")).unwrap();
    let (input, rest) = text.split_once("[input]").unwrap();
    let (_, rest) = rest.split_once("[events]").unwrap();
    let phone = "[input]\nkind = \"stdin\"\nsample_rate = 8000\nencoding = \"mulaw\"\n\n\
                 [output]\nkind = \"stdout\"\nsample_rate = 8000\nencoding = \"mulaw\"\n\n[events]";
    std::fs::write(&pipeline, format!("{input}{phone}{rest}")).unwrap();
    let url = fake.url();
    let events = dir.path().join("events.jsonl");
    let mut child = tokio::process::Command::from(voxpipe())
        .arg("run")
        .arg(&pipeline)
        .arg("--set")
        .arg(format!("stages[0].url={url}"))
        .arg("--events")
        .arg(&events)
        .env("OPENAI_API_KEY", "sk-fake")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reading = tokio::spawn(async move {
        let mut audio = Vec::new();
        stdout.read_to_end(&mut audio).await.unwrap();
        audio
    });
    for chunk in mu.chunks(160) {
        stdin.write_all(chunk).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(stdin);
    let audio = reading.await.unwrap();
    let done = child.wait_with_output().await.unwrap();
    let out = (audio, done.status, String::from_utf8_lossy(&done.stderr).into_owned());
    let (audio, status, stderr) = out;
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("── native-fake ──") && stderr.contains("assistant: "),
        "summary on stderr: {stderr}"
    );
    for text in ["native-fake", "assistant", "turn 1"] {
        assert!(!audio.windows(text.len()).any(|w| w == text.as_bytes()), "{text:?} in the audio stream");
    }
    let mut reply = Vec::new();
    voxpipe_core::audio::g711::decode_ulaw(&audio, &mut reply);
    let voiced = reply.chunks(160).filter(|c| voxpipe_core::audio::rms_dbfs(c) > -40.0).count();
    assert!(voiced >= 25, "half a second or more of the reply is audible: {voiced} chunks of 20 ms");
    fake.shutdown().await;
}

/// A recorded call (caller on the right, agent on the left, μ-law) becomes a scenario whose
/// turns are the caller's, at their recorded times, and `voxpipe ab` runs it.
#[test]
fn a_recorded_call_becomes_a_scenario_that_ab_replays() {
    let dir = tempfile::tempdir().unwrap();
    let rate = 8000usize;
    let burst = |s: &mut [i16], from_ms: usize, to_ms: usize, freq: f32| {
        for (i, v) in s[from_ms * rate / 1000..to_ms * rate / 1000].iter_mut().enumerate() {
            *v = ((i as f32 * freq * std::f32::consts::TAU / rate as f32).sin() * 9000.0) as i16;
        }
    };
    let (mut agent, mut caller) = (vec![0i16; 9 * rate], vec![0i16; 9 * rate]);
    burst(&mut caller, 500, 1500, 300.0);
    burst(&mut agent, 2000, 4000, 500.0);
    burst(&mut caller, 5000, 6200, 300.0);
    let interleaved: Vec<i16> = agent.iter().zip(&caller).flat_map(|(&a, &c)| [a, c]).collect();
    let mut coded = Vec::new();
    voxpipe_core::audio::g711::encode_ulaw(&interleaved, &mut coded);
    let recording = dir.path().join("recorded.wav");
    let mut f = Vec::new();
    let fmt: [u16; 8] = [7, 2, rate as u16, 0, (rate * 2) as u16, 0, 2, 8]; // μ-law, 2 ch, 8 kHz
    f.extend(b"RIFF");
    f.extend(((4 + 24 + 8 + coded.len()) as u32).to_le_bytes());
    f.extend(b"WAVEfmt ");
    f.extend(16u32.to_le_bytes());
    fmt.iter().for_each(|v| f.extend(v.to_le_bytes()));
    f.extend(b"data");
    f.extend((coded.len() as u32).to_le_bytes());
    f.extend(&coded);
    std::fs::write(&recording, f).unwrap();

    let scenarios = dir.path().join("scenarios");
    let cut = voxpipe()
        .args(["scenario", "from-recording", "--channel", "1", "--vad", "energy", "--out"])
        .arg(scenarios.join("recorded"))
        .arg(&recording)
        .output()
        .unwrap();
    assert!(cut.status.success(), "{}", String::from_utf8_lossy(&cut.stderr));
    let text = std::fs::read_to_string(scenarios.join("recorded/scenario.toml")).unwrap();
    let scenario: toml::Value = toml::from_str(&text).unwrap();
    let turns = scenario["turns"].as_array().unwrap();
    let ms = |t: &toml::Value, k: &str| t[k].as_integer().unwrap();
    assert_eq!(turns.len(), 2, "the agent's side is not a caller turn: {text}");
    for (t, (from, to)) in turns.iter().zip([(500, 1500), (5000, 6200)]) {
        assert!((ms(t, "from_ms") - (from - 150)).abs() <= 60, "{text}");
        assert!((ms(t, "to_ms") - (to + 150)).abs() <= 60, "{text}");
        assert_eq!((t["wav"].as_str(), t["channel"].as_integer()), (Some("recorded.wav"), Some(1)));
    }
    assert_eq!(
        ms(&turns[1], "gap_ms"),
        ms(&turns[1], "from_ms") - ms(&turns[0], "to_ms"),
        "recorded pause kept"
    );
    assert!(scenarios.join("recorded/recorded.wav").exists(), "the recording is copied beside it");

    let out = dir.path().join("ab");
    let ab = voxpipe()
        .args([
            "ab",
            "pipelines/native-fake.toml",
            "pipelines/native-fake-local.toml",
            "--fakes",
            "--virtual-clock",
        ])
        .arg("--scenarios")
        .arg(&scenarios)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(ab.status.success(), "{}", String::from_utf8_lossy(&ab.stderr));
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("2 calls, 0 failed"), "{report}");
    let results = std::fs::read_to_string(out.join("results.jsonl")).unwrap();
    let measured = results
        .lines()
        .filter(|l| l.contains("\"voice_to_voice_ms\":") && !l.contains("\"voice_to_voice_ms\":null"));
    assert_eq!(measured.count(), 4, "both turns answered in both pipelines: {results}");
}

/// `voxpipe check` on a serve file: the file and every pipeline it names, secrets unprinted;
/// a mistake is named by file and key.
#[test]
fn check_understands_serve_files() {
    let out = voxpipe()
        .args(["check", "pipelines/serve.toml"])
        .env("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef")
        .env("TWILIO_AUTH_TOKEN", SECRET)
        .env("OPENAI_API_KEY", SECRET)
        .env("FAKE_API_KEY", SECRET)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("pipeline native: phone-native-fake.toml — valid"), "{text}");
    assert!(text.contains("pipeline cascade: phone-cascade-fake.toml — valid"), "{text}");
    assert!(!text.contains(SECRET), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("serve.toml");
    std::fs::write(&bad, "public_url = \"https://x\"\n[limits]\nmax_calls = -1\n[[pipelines]]\nname = \"a\"\nfile = \"a.toml\"\n")
        .unwrap();
    let out = voxpipe().args(["check", bad.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("serve.toml") && err.contains("limits.max_calls"), "{err}");
}

/// `voxpipe check --kinds` prints the stage-kind table, every kind once; a mistyped kind in a
/// pipeline gets a suggestion from the same table.
#[test]
fn check_kinds_prints_the_table_and_typos_get_a_suggestion() {
    let out = voxpipe().args(["check", "--kinds"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("kind"), "{text}");
    for kind in voxpipe_config::STAGE_KIND_NAMES {
        assert_eq!(text.lines().filter(|l| l.starts_with(&format!("{kind} "))).count(), 1, "{kind}: {text}");
    }
    assert!(text.contains("voxpipe fake realtime"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let local = std::fs::read_to_string(repo("pipelines/local.toml")).unwrap();
    std::fs::write(&bad, local.replacen("\"llm.local\"", "\"llm.lcal\"", 1)).unwrap();
    let out = voxpipe().arg("check").arg(&bad).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("did you mean `llm.local`?"), "{err}");
}

/// One HTTP/1.1 POST of `body` over a plain socket; the answer's head (status line and headers).
fn post(url: &str, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let host = url.split_once("://").map_or(url, |(_, r)| r).split('/').next().unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer sk-fake\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.split("\r\n\r\n").next().unwrap_or_default().to_string()
}

#[test]
fn fake_all_takes_faults_aimed_at_one_fake_and_free_ports() {
    use std::io::{BufRead, BufReader};
    let mut child = voxpipe()
        .args([
            "fake",
            "all",
            "--base-port",
            "0",
            "--fault",
            "llm:0=status:503:retry-after=2",
            "--fault",
            "gemini:0=status:429:retry-after=1",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut urls = std::collections::BTreeMap::new();
    for line in lines.by_ref().take(8) {
        let line = line.unwrap();
        let (what, rest) = line.split_once(" listening on ").unwrap_or_else(|| panic!("{line}"));
        urls.insert(what.to_string(), rest.split_whitespace().next().unwrap().to_string());
    }
    let chat = urls["chat-completions fake"].clone();
    let anthropic = urls["anthropic fake"].clone();
    let body = r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    // The first request to the chat fake gets the fault; the second, and every other fake, not.
    let first = post(&chat, "/v1/chat/completions", body);
    let second = post(&chat, "/v1/chat/completions", body);
    let gemini = urls["gemini fake"].clone();
    let path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&key=k";
    let contents = r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#;
    let limited = post(&gemini, path, contents);
    let answered = post(&gemini, path, contents);
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.starts_with("HTTP/1.1 503"), "{first}");
    assert!(first.to_ascii_lowercase().contains("retry-after: 2"), "{first}");
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    assert_ne!(chat, anthropic, "each fake on its own free port");
    assert!(gemini.ends_with("/v1beta"), "{gemini}");
    assert!(
        limited.starts_with("HTTP/1.1 429") && limited.to_ascii_lowercase().contains("retry-after: 1"),
        "{limited}"
    );
    assert!(answered.starts_with("HTTP/1.1 200") && answered.contains("text/event-stream"), "{answered}");

    let out = voxpipe().args(["fake", "all", "--fault", "lm:0=status:503"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown fake `lm`") && err.contains("transcription"), "{err}");
}
