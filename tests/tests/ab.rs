//! `voxpipe ab` end to end: the native pipeline twice against in-process fakes, one of them
//! 200 ms slower to first audio, on a virtual clock; the voice-to-voice breakdown of a native
//! and an all-remote cascade under the fakes' latency profiles; the plots rendered.

use std::path::Path;
use voxpipe_e2e::*;
use voxpipe_eval::breakdown::{ALL_STAGES, Stage};
use voxpipe_eval::{AbOptions, AbReport, FakeDelay, FakeProfile, run_ab};

fn scenario(root: &Path, name: &str, text: &str) {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("scenario.toml"), text).unwrap();
}

// The scripted tool is one the pipeline does not define: the runtime answers "unknown tool" at
// once. A `command` tool would run a real process, and the paused clock jumps ahead while it
// runs, so that turn's latency would not be reproducible.
const ORDER: &str = r#"
[[turns]]
say = "Hi, I would like to check the status of my order."
tool = { name = "lookup_order", arguments = { order_id = "A-1234" } }
reply_must_contain = ["shipped"]

[[fake.realtime.responses]]
user_transcript = "Hi, I would like to check the status of my order."
function_call = { name = "lookup_order", arguments = '{"order_id":"A-1234"}' }

[[fake.realtime.responses]]
text = "Your order has shipped."
"#;

const TWO_TURNS: &str = r#"
[[turns]]
say = "Hello, I need to book an appointment."
[[turns]]
say = "Tomorrow morning, please."
gap_ms = 5000
reply_must_contain = ["tomorrow"]

[[fake.realtime.responses]]
user_transcript = "Hello, I need to book an appointment."
text = "Sure, when?"
[[fake.realtime.responses]]
user_transcript = "Tomorrow morning please."
text = "Booked for tomorrow morning."
"#;

fn options(scenarios: &Path, out: &Path) -> AbOptions {
    let pipeline = repo_path("pipelines/native-fake.toml");
    let tool = format!(
        "tools.get_order_status.handler.program={}",
        repo_path("scripts/tools/order-status.sh").display()
    );
    let mut opts =
        AbOptions::new(vec![pipeline.clone(), pipeline], scenarios.to_path_buf(), out.to_path_buf());
    opts.sets = vec![vec![tool.clone()], vec![tool]];
    opts.start_fakes = true;
    opts.progress = false;
    opts
}

#[tokio::test(start_paused = true)]
async fn a_fake_200_ms_slower_to_first_audio_shows_up_as_200_ms_in_the_voice_to_voice_difference() {
    let dir = tempfile::tempdir().unwrap();
    let scenarios = dir.path().join("scenarios");
    scenario(&scenarios, "order", ORDER);
    scenario(&scenarios, "booking", TWO_TURNS);
    let out = dir.path().join("out");
    let mut opts = options(&scenarios, &out);
    opts.fake_delays = vec![FakeDelay::default(), FakeDelay { first_audio_ms: 200 }];
    let report = run_ab(opts).await.unwrap();

    assert_eq!(report.failures().count(), 0, "{:?}", report.failures().collect::<Vec<_>>());
    assert_eq!(report.calls.len(), 4);
    // Interleaved: A, B for a scenario before the next one.
    let order: Vec<_> = report.calls.iter().map(|c| (c.scenario.as_str(), c.pipeline.as_str())).collect();
    assert_eq!(order, [("booking", "A"), ("booking", "B"), ("order", "A"), ("order", "B")]);
    let v2v = report.comparison("voice_to_voice_ms", "B").unwrap().ci.unwrap();
    let per_turn: Vec<_> = report
        .calls
        .iter()
        .map(|c| {
            (
                &c.pipeline,
                &c.scenario,
                c.turns.iter().map(|t| (t.speech_end_ms, t.voice_to_voice_ms)).collect::<Vec<_>>(),
            )
        })
        .collect();
    assert!((v2v.diff - 200.0).abs() <= 40.0, "B−A voice-to-voice {v2v:?}: {per_turn:?}");
    assert!(v2v.excludes_zero(), "{v2v:?}: {per_turn:?}");
    let a: Vec<u64> = report
        .calls
        .iter()
        .filter(|c| c.pipeline == "A")
        .flat_map(|c| c.turns.iter().filter_map(|t| t.voice_to_voice_ms))
        .collect();
    assert_eq!(a.len(), 3, "every turn answered: {a:?}");

    // Scoring ran on what the fake did: the order lookup is correct, the reply checks pass.
    let order_a = report.calls.iter().find(|c| c.scenario == "order" && c.pipeline == "A").unwrap();
    assert!(order_a.turns[0].tool.as_ref().unwrap().is_correct(), "{:?}", order_a.turns[0]);
    assert!(order_a.turns[0].reply_check.as_ref().unwrap().passed(), "{:?}", order_a.turns[0].reply);
    assert_eq!(order_a.turns[0].wer.unwrap().errors, 0);

    let md = std::fs::read_to_string(&report.report).unwrap();
    assert!(md.contains("| voice_to_voice_ms |"), "{md}");
    assert!(md.contains("`voice_to_voice_ms`: B is higher than A"), "{md}");
    let lines = std::fs::read_to_string(&report.results).unwrap();
    assert_eq!(lines.lines().count(), 6, "one line per turn per call");
    let first: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(first["pipeline"], "A");
    for plot in &report.plots {
        let svg = std::fs::read_to_string(plot).unwrap();
        assert!(svg.starts_with("<svg") || svg.contains("<svg"), "{}", plot.display());
        assert!(md.contains(plot.file_name().unwrap().to_str().unwrap()), "plot linked from the report");
    }
    assert_eq!(report.plots.len(), 3);
    assert!(out.join("A/order/1/events.jsonl").is_file());
    assert!(out.join("B/booking/1/reply.wav").is_file());
}

#[tokio::test(start_paused = true)]
async fn a_call_that_fails_mid_call_is_reported_with_its_error_and_the_others_still_run() {
    let dir = tempfile::tempdir().unwrap();
    let scenarios = dir.path().join("scenarios");
    scenario(&scenarios, "booking", TWO_TURNS);
    let dropped = format!("[fake.realtime]\nclose_after_audio_deltas = 2\n{TWO_TURNS}");
    scenario(&scenarios, "dropped", &dropped);
    let out = dir.path().join("out");
    let report = run_ab(options(&scenarios, &out)).await.unwrap();

    let failed: Vec<_> = report.failures().collect();
    assert_eq!(failed.len(), 2, "both pipelines lose the socket in `dropped`");
    for f in &failed {
        assert_eq!(f.scenario, "dropped");
        let err = f.error.as_deref().unwrap();
        assert!(err.contains("realtime.openai") && err.contains("closed"), "{err}");
    }
    let ok: Vec<_> = report.calls.iter().filter(|c| c.error.is_none()).collect();
    assert_eq!(ok.len(), 2);
    assert!(
        ok.iter().all(|c| c.scenario == "booking" && c.turns.iter().all(|t| t.voice_to_voice_ms.is_some()))
    );
    let md = std::fs::read_to_string(&report.report).unwrap();
    let failures = &md[md.find("## Failures").unwrap()..];
    assert!(failures.contains("A · `dropped` · run 1") && failures.contains("closed"), "{failures}");
}

/// The pair the README runs: the native pipeline and the whisper cascade, on every shipped
/// scenario, offline. Real clock (whisper computes in real time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_fake_versus_cascade_fake_on_the_shipped_scenarios_writes_report_jsonl_and_plots() {
    let store = voxpipe_models::ModelStore::from_env().unwrap();
    store.pull("whisper-tiny.en", &voxpipe_models::NoProgress).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let tool = format!(
        "tools.get_order_status.handler.program={}",
        repo_path("scripts/tools/order-status.sh").display()
    );
    let mut opts = AbOptions::new(
        vec![repo_path("pipelines/native-fake.toml"), repo_path("pipelines/cascade-fake.toml")],
        repo_path("scenarios"),
        out.clone(),
    );
    opts.sets = vec![vec![tool.clone()], vec![tool]];
    opts.start_fakes = true;
    opts.progress = false;
    opts.concurrency = 2;
    // The cascade's speech fake takes 200 ms more to its first byte: the TTS stage's own time
    // to first audio must show it.
    opts.fake_delays = vec![FakeDelay::default(), FakeDelay { first_audio_ms: 200 }];
    let report = run_ab(opts).await.unwrap();

    assert_eq!(report.failures().count(), 0, "{:?}", report.failures().collect::<Vec<_>>());
    let scenarios = std::fs::read_dir(repo_path("scenarios"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_dir())
        .count();
    assert!(scenarios >= 8);
    assert_eq!(report.calls.len(), 2 * scenarios);
    let turns: usize = report.calls.iter().filter(|c| c.pipeline == "A").map(|c| c.turns.len()).sum();

    // Both pipelines were scored on the scripted tool calls. The native fake hears every turn
    // exactly, so all its calls are right; the cascade depends on whisper and the turn
    // controller keeping up on this machine (with the CPU shared, turns can merge).
    let verdicts = |label: &str| -> Vec<bool> {
        report
            .calls
            .iter()
            .filter(|c| c.pipeline == label)
            .flat_map(|c| c.turns.iter().filter_map(|t| t.tool.as_ref().map(|v| v.is_correct())))
            .collect()
    };
    let (a, b) = (verdicts("A"), verdicts("B"));
    assert!(a.len() >= 6 && a.iter().all(|v| *v), "A: tool verdicts {a:?}");
    assert_eq!(b.len(), a.len(), "B scored on the same expectations");
    // The native fake answers 500 ms of silence + 200 ms after the end of speech: no turn can
    // be faster (an upper bound would time this machine's scheduler, not voxpipe).
    let native: Vec<u64> = report
        .calls
        .iter()
        .filter(|c| c.pipeline == "A")
        .flat_map(|c| c.turns.iter().filter_map(|t| t.voice_to_voice_ms))
        .collect();
    assert!(native.len() + 1 >= turns, "A answered (nearly) every turn: {native:?}");
    assert!(native.iter().all(|ms| *ms >= 600), "A voice-to-voice {native:?}");
    // The cascade logs its per-stage times to first byte, the LLM's included.
    let cascade_turns: Vec<_> =
        report.calls.iter().filter(|c| c.pipeline == "B").flat_map(|c| c.turns.iter()).collect();
    assert!(cascade_turns.iter().any(|t| t.llm_first_token_ms.is_some()));
    assert!(cascade_turns.iter().any(|t| t.tts_first_audio_ms.is_some() && t.asr_final_ms.is_some()));
    let mut tts: Vec<u64> = cascade_turns.iter().filter_map(|t| t.tts_first_audio_ms).collect();
    tts.sort();
    assert!(!tts.is_empty());
    let median = tts[tts.len() / 2];
    assert!(median >= 200, "TTS time to first audio {tts:?} (fake: +200 ms)");

    let md = std::fs::read_to_string(&report.report).unwrap();
    for row in ["| voice_to_voice_ms |", "| llm_first_token_ms |", "| asr_final_ms |", "| wer_pct |"] {
        assert!(md.contains(row), "{row} in {md}");
    }
    let settings = &md[md.find("## Settings that differ").unwrap()..];
    assert!(
        settings.contains("stage `realtime.openai`") && settings.contains("stage `asr.whisper`"),
        "{settings}"
    );
    assert!(settings.contains("`turn.mode`"), "{settings}");
    assert!(settings.contains("| (offline fakes) first_audio_ms offset | `+0` | `+200` |"), "{settings}");
    assert!(!settings.contains("model instructions"), "both pipelines have the same prompt: {settings}");
    assert!(!settings.contains("tools."), "both pipelines have the same tools: {settings}");
    assert!(md.contains("## Failures\n\nNone."), "{md}");
    assert!(md.contains("calls ran 2 at once and B (`asr.whisper`) compute on this machine"), "{md}");

    let lines = std::fs::read_to_string(&report.results).unwrap();
    assert_eq!(lines.lines().count(), 2 * turns, "one line per turn per call");
    for line in lines.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["pipeline"] == "A" || v["pipeline"] == "B", "{v}");
        assert!(v["scenario"].is_string(), "{v}");
    }
    assert_eq!(report.plots.len(), 3);
    for plot in &report.plots {
        let svg = std::fs::read_to_string(plot).unwrap();
        assert!(svg.contains("<svg") && svg.contains("</svg>"), "{}", plot.display());
        assert!(md.contains(plot.file_name().unwrap().to_str().unwrap()), "plot linked from the report");
    }
    assert!(out.join("B/order-status/1/events.jsonl").is_file());
    assert!(out.join("A/handoff/1/reply.wav").is_file());
}

/// Two short turns for the native fake and the cascade's chat fake alike.
const TWO_TURNS_BOTH: &str = r#"
[[turns]]
say = "Hello, I need to book an appointment."
[[turns]]
say = "Tomorrow morning, please."
gap_ms = 5000

[[fake.realtime.responses]]
user_transcript = "Hello, I need to book an appointment."
text = "Sure, when would you like to come in?"
[[fake.realtime.responses]]
user_transcript = "Tomorrow morning please."
text = "Booked for tomorrow morning. See you then."

[[fake.llm]]
text = "Sure, when would you like to come in?"
[[fake.llm]]
text = "Booked for tomorrow morning. See you then."
"#;

/// The breakdowns of every answered turn of `label`'s successful calls.
fn breakdowns<'a>(report: &'a AbReport, label: &str) -> Vec<(&'a voxpipe_eval::metrics::TurnMetrics, u64)> {
    report
        .calls
        .iter()
        .filter(|c| c.pipeline == label && c.error.is_none())
        .flat_map(|c| c.turns.iter())
        .filter_map(|t| Some((t, t.voice_to_voice_ms?)))
        .collect()
}

fn stage_median(report: &AbReport, label: &str, stage: Stage) -> f64 {
    let mut v: Vec<u64> =
        breakdowns(report, label).iter().filter_map(|(t, _)| t.breakdown.as_ref()?.get(stage)).collect();
    v.sort();
    assert!(!v.is_empty(), "{label}: no `{}` times", stage.name());
    v[v.len() / 2] as f64
}

/// Renders `svg` with `rsvg-convert` (Debian `librsvg2-bin`, installed by scripts/setup.sh) and
/// checks it drew something: well-formed (rsvg parses it) and a PNG larger than a blank one of
/// the same size.
fn assert_renders(svg: &Path) {
    let png = svg.with_extension("png");
    let run = |input: &Path, output: &Path| {
        let out = std::process::Command::new("rsvg-convert")
            .arg("-o")
            .arg(output)
            .arg(input)
            .output()
            .expect("rsvg-convert (Debian package librsvg2-bin; scripts/setup.sh installs it)");
        assert!(out.status.success(), "{}: {}", input.display(), String::from_utf8_lossy(&out.stderr));
        std::fs::metadata(output).unwrap().len()
    };
    let drawn = run(svg, &png);
    let text = std::fs::read_to_string(svg).unwrap();
    let size = |attr: &str| {
        let at = text.find(&format!("{attr}=\"")).unwrap() + attr.len() + 2;
        text[at..at + text[at..].find('"').unwrap()].to_string()
    };
    let blank_svg = svg.with_extension("blank.svg");
    std::fs::write(
        &blank_svg,
        format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{0}" height="{1}"><rect width="{0}" height="{1}" fill="white"/></svg>"#,
            size("width"),
            size("height")
        ),
    )
    .unwrap();
    let blank = run(&blank_svg, &svg.with_extension("blank.png"));
    assert!(drawn > 4 * blank, "{}: PNG of {drawn} bytes, a blank one is {blank}", svg.display());
}

fn cascade_options(scenarios: &Path, out: &Path, pipelines: usize) -> AbOptions {
    let mut opts = AbOptions::new(
        vec![repo_path("pipelines/phone-cascade-fake.toml"); pipelines],
        scenarios.to_path_buf(),
        out.to_path_buf(),
    );
    opts.start_fakes = true;
    opts.progress = false;
    opts
}

#[tokio::test(start_paused = true)]
async fn every_turn_s_stages_sum_to_its_voice_to_voice_and_the_report_prints_the_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let scenarios = dir.path().join("scenarios");
    scenario(&scenarios, "booking", TWO_TURNS_BOTH);
    let out = dir.path().join("out");
    let mut opts = cascade_options(&scenarios, &out, 2);
    opts.pipelines[0] = repo_path("pipelines/native-fake.toml");
    let report = run_ab(opts).await.unwrap();
    assert_eq!(report.failures().count(), 0, "{:?}", report.failures().collect::<Vec<_>>());

    for (label, stages) in [("A", 3), ("B", 6)] {
        let turns = breakdowns(&report, label);
        assert_eq!(turns.len(), 2, "{label}: both turns answered");
        for (t, v2v) in turns {
            let b = t.breakdown.as_ref().unwrap_or_else(|| panic!("{label} turn {}: no breakdown", t.turn));
            assert_eq!(b.stages.len(), stages, "{b:?}");
            assert!(b.total_ms().abs_diff(v2v) <= 20, "{label} turn {}: {b:?} vs {v2v} ms", t.turn);
        }
    }
    // The stages carry the published profile's figures: the native model's first audio after
    // its turn detection, the chat fake's first token, the speech fake's first byte.
    let published = FakeProfile::published();
    let near = |got: f64, want: u64| got >= want as f64 && got <= want as f64 + 150.0;
    let model = stage_median(&report, "A", Stage::ModelFirstAudio);
    assert!(near(model, published.realtime.first_audio_ms.value), "native model first audio {model}");
    let llm = stage_median(&report, "B", Stage::LlmFirstToken);
    assert!(near(llm, published.chat.first_token_ms.value), "LLM first token {llm}");
    let tts = stage_median(&report, "B", Stage::TtsFirstAudio);
    assert!(near(tts, published.speech.first_byte_ms.value), "TTS first audio {tts}");

    let md = std::fs::read_to_string(&report.report).unwrap();
    let profiles = &md[md.find("## Fake latency profiles").expect("profile section")..];
    assert!(profiles.contains("- **A**: profile `published`"), "{profiles}");
    assert!(
        profiles.contains("| fake | key | A `published` | B `published` | used by | source | date |"),
        "{md}"
    );
    assert!(profiles.contains("| chat | `first_token_ms` | 400 | 400 | B |"), "{profiles}");
    assert!(profiles.contains("| realtime | `first_audio_ms` | 600 | 600 | A |"), "{profiles}");
    assert!(!md.contains("different latency profiles"), "same profile: no warning\n{md}");
    let time = &md[md.find("## Where the time goes").expect("breakdown section")..];
    for row in [
        "| end-of-turn wait (`end_of_turn`) |",
        "| LLM first token (`llm_first_token`) |",
        "| **voice-to-voice** |",
    ] {
        assert!(time.contains(row), "{row} in {time}");
    }
    assert!(time.contains("![latency_breakdown.svg](latency_breakdown.svg)"), "{time}");
    let lines = std::fs::read_to_string(&report.results).unwrap();
    assert!(lines.contains("\"breakdown\":{\"architecture\":\"cascade\""), "{lines}");

    assert_eq!(report.plots.len(), 3);
    for plot in &report.plots {
        assert_renders(plot);
    }
}

#[tokio::test(start_paused = true)]
async fn a_fake_made_200_ms_slower_by_a_custom_profile_moves_only_its_own_stage() {
    let dir = tempfile::tempdir().unwrap();
    let scenarios = dir.path().join("scenarios");
    scenario(&scenarios, "booking", TWO_TURNS_BOTH);
    let published = FakeProfile::published();
    let custom = |name: &str, table: &str, key: &str, value: u64| {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, format!("extends = \"published\"\n[{table}]\n{key} = {{ value = {value} }}\n"))
            .unwrap();
        FakeProfile::select(path.to_str().unwrap()).unwrap()
    };
    let out = dir.path().join("out");
    let mut opts = cascade_options(&scenarios, &out, 3);
    opts.fake_profiles = vec![
        published.clone(),
        custom("slow-llm", "chat", "first_token_ms", published.chat.first_token_ms.value + 200),
        custom("slow-tts", "speech", "first_byte_ms", published.speech.first_byte_ms.value + 200),
    ];
    let report = run_ab(opts).await.unwrap();
    assert_eq!(report.failures().count(), 0, "{:?}", report.failures().collect::<Vec<_>>());

    for (label, slowed) in [("B", Stage::LlmFirstToken), ("C", Stage::TtsFirstAudio)] {
        for stage in ALL_STAGES.into_iter().filter(|s| *s != Stage::ModelFirstAudio) {
            let moved = stage_median(&report, label, stage) - stage_median(&report, "A", stage);
            if stage == slowed {
                assert!((150.0..=260.0).contains(&moved), "{label}: `{}` moved {moved} ms", stage.name());
            } else {
                assert!(
                    moved.abs() < 60.0,
                    "{label}: `{}` moved {moved} ms, only {slowed:?} should",
                    stage.name()
                );
            }
        }
    }
    let md = std::fs::read_to_string(&report.report).unwrap();
    let verdicts = &md[md.find("## Verdicts").unwrap()..];
    let warning = verdicts.lines().find(|l| l.contains("different latency profiles")).expect(&md);
    assert!(warning.contains("A `published`, B `slow-llm`, C `slow-tts`"), "{warning}");
    assert!(md.contains("| chat | `first_token_ms` | 400 | 600 | 400 |"), "{md}");
}

/// A scripted reply with markup in it, a reply check that fails and a stale price.
const LISTEN: &str = r#"
[[turns]]
say = "Hi, I would like to check the status of my order."
tool = { name = "lookup_order", arguments = { order_id = "A-1234" } }
reply_must_contain = ["shipped"]
[[turns]]
say = "Can I get a refund?"
gap_ms = 3000
reply_must_contain = ["refund"]

[[fake.realtime.responses]]
user_transcript = "Hi, I would like to check the status of my order."
function_call = { name = "lookup_order", arguments = '{"order_id":"A-1234"}' }
[[fake.realtime.responses]]
text = "Your order <b>A-1234</b> & co has shipped."
[[fake.realtime.responses]]
user_transcript = "Can I get a refund?"
text = "Let me check that for you."
"#;

/// The tags of an HTML page balance (void elements and `/>` aside), and no text holds a raw
/// `<`: every `<` opens a tag, a comment or the doctype.
fn assert_well_formed(html: &str) {
    const VOID: &[&str] = &["meta", "br", "img", "input", "link", "hr", "source"];
    let mut stack: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find('<') {
        rest = &rest[at + 1..];
        if let Some(r) = rest.strip_prefix("!--") {
            rest = &r[r.find("-->").expect("comment closed") + 3..];
            continue;
        }
        let end = rest.find('>').expect("tag closed");
        let tag = &rest[..end];
        rest = &rest[end + 1..];
        if tag.starts_with('!') || tag.starts_with('?') {
            continue;
        }
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == ':')
            .collect();
        assert!(!name.is_empty(), "a raw `<` in text: `<{tag}>`");
        if tag.starts_with('/') {
            let open = stack.pop().unwrap_or_else(|| panic!("`</{name}>` closes nothing"));
            assert_eq!(open, name, "`</{name}>` closes `<{open}>`");
        } else if !tag.ends_with('/') && !VOID.contains(&name.as_str()) {
            if name == "style" {
                rest = &rest[rest.find("</style>").expect("style closed")..];
            }
            stack.push(name);
        }
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
}

/// `src="…"` values of the `<audio>` elements, in order.
fn audio_sources(html: &str) -> Vec<String> {
    html.split("<audio ")
        .skip(1)
        .map(|a| {
            let src = &a[a.find("src=\"").expect("audio has a src") + 5..];
            src[..src.find('"').unwrap()].to_string()
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn report_html_has_every_turn_s_audio_escaped_transcripts_tools_and_failed_checks_marked() {
    let dir = tempfile::tempdir().unwrap();
    let scenarios = dir.path().join("scenarios");
    scenario(&scenarios, "listen", LISTEN);
    scenario(&scenarios, "booking", TWO_TURNS);
    std::fs::write(
        scenarios.join("pricing.toml"),
        "date = \"2020-01-01\"\n[models.\"gpt-realtime-mini\"]\ninput_audio_per_million = 10.0\n\
         output_audio_per_million = 20.0\ninput_text_per_million = 0.6\noutput_text_per_million = 2.4\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let report = run_ab(options(&scenarios, &out)).await.unwrap();
    assert_eq!(report.failures().count(), 0, "{:?}", report.failures().collect::<Vec<_>>());
    assert_eq!(report.html, out.join("report.html"));
    let html = std::fs::read_to_string(&report.html).unwrap();
    assert_well_formed(&html);

    // The caller's audio and each pipeline's reply, per turn: 2 scenarios × 2 turns × (1 + 2).
    let sources = audio_sources(&html);
    assert_eq!(sources.len(), 12, "{sources:?}");
    for src in &sources {
        assert!(!src.starts_with('/') && !src.contains("://"), "relative: {src}");
        assert!(out.join(src).is_file(), "{src} exists beside report.html");
    }
    assert!(sources.contains(&"audio/listen/caller-turn1.wav".to_string()), "{sources:?}");
    assert!(sources.contains(&"audio/listen/B-turn2.wav".to_string()), "{sources:?}");
    // The clips hold what was said: the caller's words and the replies' audio.
    let (caller, _) = read_wav(&out.join("audio/listen/caller-turn1.wav"));
    assert!(caller.len() > 16_000, "the caller's first turn: {} samples", caller.len());
    for label in ["A", "B"] {
        let (reply, rate) = read_wav(&out.join(format!("audio/listen/{label}-turn2.wav")));
        assert!(reply.len() as u32 > rate / 10, "{label}'s reply to turn 2: {} samples", reply.len());
        assert!(reply.iter().any(|s| s.unsigned_abs() > 100), "{label}'s reply is not silence");
    }

    // Transcripts are escaped, tool calls shown with arguments and result.
    assert!(!html.contains("<b>A-1234</b>"), "a scripted reply's markup is not markup");
    assert!(html.contains("Your order &lt;b&gt;A-1234&lt;/b&gt; &amp; co has shipped."), "{html}");
    assert!(
        html.contains(
            "tool <code>lookup_order</code>(<code>{&quot;order_id&quot;:&quot;A-1234&quot;}</code>)"
        )
    );
    assert!(html.contains("unknown tool"), "the tool's result: {html}");
    // The failed reply check is highlighted, the passed ones are not.
    assert!(html.contains("<li class=\"check fail\">✗ FAILED: reply lacks “refund”</li>"), "{html}");
    assert!(html.contains("<li class=\"check pass\">✓ reply phrases</li>"));
    assert!(html.contains("<div class=\"reply failed\">"));
    assert!(
        html.contains("voice-to-voice") && html.contains("· model first audio"),
        "latencies and breakdown"
    );
    assert_eq!(html.matches("<svg").count(), 3, "the plots inlined");

    // Cost per minute, with the price's age.
    let md = std::fs::read_to_string(&report.report).unwrap();
    let cost = &md[md.find("## Cost per minute of conversation").expect("cost section")..];
    let row = cost.lines().find(|l| l.starts_with("| A |")).unwrap();
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    assert!(cells[3].ends_with("USD") && cells[4].ends_with("USD"), "cost and cost per minute: {row}");
    assert!(cells[5].parse::<f64>().unwrap() > 0.0, "input tokens per minute: {row}");
    assert!(cost.contains("**⚠ stale: dated 2020-01-01"), "{cost}");
    assert!(html.contains("<span class=\"stale\">⚠ stale: dated 2020-01-01"), "{html}");
}

/// A judge pipeline whose one LLM stage talks to `base_url` with the key in `JUDGE_KEY`, and
/// the judge file naming it.
fn judge_files(dir: &Path, base_url: &str, extra: &str) -> std::path::PathBuf {
    std::fs::write(
        dir.join("judge-pipeline.toml"),
        format!(
            "name = \"judge\"\n[input]\nkind = \"stdin\"\nsample_rate = 16000\n[output]\nkind = \"stdout\"\n\
             [[stages]]\nkind = \"llm.openai\"\nmodel = \"judge-model\"\n\
             base_url = \"{base_url}\"\napi_key_env = \"JUDGE_KEY\"\n\
             instructions = \"You are a friendly shop agent.\"\n"
        ),
    )
    .unwrap();
    let judge = dir.join("judge.toml");
    std::fs::write(&judge, format!("[judge]\npipeline = \"judge-pipeline.toml\"\n{extra}")).unwrap();
    judge
}

#[tokio::test(start_paused = true)]
async fn the_judge_scores_every_reply_from_the_conversation_and_its_tool_results() {
    use voxpipe_fakes::openai_chat::{ChatFake, ChatFakeConfig, ScriptedReply};
    let answer = "Here you go: {\"task_completed\": {\"score\": 4, \"reason\": \"Answered the question.\"}, \
                  \"factual\": {\"score\": 5, \"reason\": \"Nothing invented.\"}, \"polite\": 3, \
                  \"brief\": {\"score\": 9, \"reason\": \"?\"}}";
    let fake = ChatFake::start(ChatFakeConfig {
        api_key: Some("sk-judge".into()),
        replies: vec![ScriptedReply::text(answer)],
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scenarios = dir.path().join("scenarios");
    scenario(&scenarios, "order", ORDER);
    scenario(&scenarios, "booking", TWO_TURNS);
    let out = dir.path().join("out");
    let mut opts = options(&scenarios, &out);
    opts.judge = Some(judge_files(dir.path(), &fake.base_url(), "concurrency = 2\n"));
    opts.env.push(("JUDGE_KEY".into(), "sk-judge".into()));
    let report = run_ab(opts).await.unwrap();
    assert_eq!(report.failures().count(), 0, "{:?}", report.failures().collect::<Vec<_>>());

    // One request per reply (3 turns × 2 pipelines), each a fresh conversation: the judge's
    // rubric as the system prompt (not the pipeline's), the turn and its tool result as the
    // user message, no tools offered.
    let requests = fake.requests();
    assert_eq!(requests.len(), 6, "{requests:?}");
    for r in &requests {
        let messages = r.body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 2, "{messages:?}");
        let system = messages[0]["content"].as_str().unwrap();
        assert!(system.contains("- factual: Is every fact") && !system.contains("shop agent"), "{system}");
        assert!(r.body.get("tools").is_none_or(|t| t.as_array().is_none_or(Vec::is_empty)), "{:?}", r.body);
        assert_eq!(r.body["model"], "judge-model");
    }
    let users: Vec<&str> =
        requests.iter().map(|r| r.body["messages"][1]["content"].as_str().unwrap()).collect();
    let order = users.iter().find(|u| u.contains("REPLY TO GRADE: Your order has shipped.")).unwrap();
    assert!(order.contains("Agent called tool lookup_order({\"order_id\":\"A-1234\"}) -> error:"), "{order}");
    let second = users.iter().find(|u| u.contains("REPLY TO GRADE: Booked for tomorrow morning.")).unwrap();
    assert!(
        second.contains("The call so far:\nCaller: ") && second.contains("Agent: Sure, when?"),
        "{second}"
    );

    // Every turn carries its scores; a score out of range or without a reason says so.
    for c in &report.calls {
        for t in &c.turns {
            let j = t.judge.as_ref().unwrap_or_else(|| panic!("turn {} of {} unjudged", t.turn, c.scenario));
            assert_eq!(j.error, None);
            assert_eq!(
                (j.score("task_completed"), j.score("factual"), j.score("polite")),
                (Some(4), Some(5), Some(3))
            );
            assert_eq!(j.scores[0].reason, "Answered the question.");
            assert_eq!(j.score("brief"), None);
            assert!(j.scores[3].reason.contains("outside 1–5"), "{:?}", j.scores[3]);
        }
    }
    let lines = std::fs::read_to_string(&report.results).unwrap();
    let first: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(first["judge"]["scores"][0]["score"], 4);

    // Per pipeline: means with intervals and the paired difference to A.
    let md = std::fs::read_to_string(&report.report).unwrap();
    let section = &md[md.find("## Judged quality").expect("a judged-quality section")..];
    assert!(section.contains("llm.openai judge-model"), "{section}");
    assert!(
        section.contains(
            "| task_completed | 4.00 [4.00, 4.00] (3) | 4.00 [4.00, 4.00] (3) | +0.00 [+0.00, +0.00] |"
        ),
        "{section}"
    );
    assert!(section.contains("| brief | – | – | – |"), "{section}");
    let html = std::fs::read_to_string(&report.html).unwrap();
    assert!(
        html.contains("<h2>Judged quality</h2>") && html.contains("judge · factual: <b>5/5</b>"),
        "report.html"
    );
    fake.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_judge_that_cannot_be_reached_leaves_replies_unscored_and_the_report_still_written() {
    let dir = tempfile::tempdir().unwrap();
    let scenarios = dir.path().join("scenarios");
    scenario(&scenarios, "order", ORDER);
    let out = dir.path().join("out");
    let mut opts = options(&scenarios, &out);
    // Port 9 on loopback: nothing listens (connection refused).
    opts.judge = Some(judge_files(dir.path(), "http://127.0.0.1:9/v1", "rubric = [\"factual\"]\n"));
    opts.env.push(("JUDGE_KEY".into(), "sk-judge".into()));
    let report = run_ab(opts).await.unwrap();
    assert_eq!(report.failures().count(), 0);
    for c in &report.calls {
        let j = c.turns[0].judge.as_ref().unwrap();
        assert_eq!(j.scores.len(), 1, "only the rubric's criterion");
        assert!(j.score("factual").is_none());
        assert!(j.error.is_some(), "{j:?}");
    }
    let md = std::fs::read_to_string(&report.report).unwrap();
    assert!(md.contains("Unscored replies:") && md.contains("A · `order` · run 1 · turn 1:"), "{md}");
    assert!(!md.contains("sk-judge"), "the key never reaches the report");
}

#[test]
fn a_judge_file_naming_a_stage_that_is_not_an_llm_says_which_and_what_is_expected() {
    let dir = tempfile::tempdir().unwrap();
    let judge = dir.path().join("judge.toml");
    let pipeline = repo_path("pipelines/cascade-fake.toml");
    std::fs::write(&judge, format!("[judge]\npipeline = \"{}\"\nstage = 0\n", pipeline.display())).unwrap();
    let err = voxpipe_eval::judge::Judge::load(&judge, &[]).unwrap_err().to_string();
    assert!(
        err.contains("judge.stage") && err.contains("asr.whisper") && err.contains("expected an LLM stage"),
        "{err}"
    );
    std::fs::write(
        &judge,
        format!("[judge]\npipeline = \"{}\"\nrubric = [\"empathy\"]\n", pipeline.display()),
    )
    .unwrap();
    let err = voxpipe_eval::judge::Judge::load(&judge, &[]).unwrap_err().to_string();
    assert!(
        err.contains("`empathy` is not a built-in criterion") && err.contains("[judge.questions]"),
        "{err}"
    );
    std::fs::write(
        &judge,
        format!(
            "[judge]\npipeline = \"{}\"\nrubric = [\"empathy\", \"brief\"]\n[judge.questions]\nempathy = \"Kind?\"\n",
            pipeline.display()
        ),
    )
    .unwrap();
    let j = voxpipe_eval::judge::Judge::load(&judge, &[]).unwrap();
    assert_eq!(j.criteria.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["empathy", "brief"]);
    assert!(j.instructions().contains("- empathy: Kind?"));
    // The shipped example loads: cascade-openai.toml's first LLM stage.
    let shipped = voxpipe_eval::judge::Judge::load(&repo_path("scenarios/judge.toml"), &[]).unwrap();
    assert!(
        shipped.describe.starts_with("llm.openai ") && shipped.describe.contains("stages[1]"),
        "{}",
        shipped.describe
    );
    std::fs::write(&judge, "[judge]\npipline = \"x.toml\"\n").unwrap();
    let err = voxpipe_eval::judge::Judge::load(&judge, &[]).unwrap_err().to_string();
    assert!(err.contains("judge.toml") && err.contains("pipline"), "{err}");
}
