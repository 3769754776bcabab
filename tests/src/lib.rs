//! Helpers shared by the end-to-end tests in `tests/*.rs`: synthetic calls, WAV analysis and
//! event-log reading; [`chromium`] for the tests that open a page in a headless browser.

use std::path::{Path, PathBuf};

pub mod chromium;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the repo root").to_path_buf()
}

/// A path under the repository root.
pub fn repo_path(rel: &str) -> PathBuf {
    repo_root().join(rel)
}

/// A sine "voice" at `hz`, `ms` long, at amplitude `amp` (0..1). The fakes' energy VADs hear
/// it as speech.
pub fn tone(rate: u32, hz: f32, ms: u64, amp: f32) -> Vec<i16> {
    let n = (rate as u64 * ms / 1000) as usize;
    (0..n)
        .map(|i| ((2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin() * amp * 32767.0) as i16)
        .collect()
}

/// Digital silence.
pub fn silence(rate: u32, ms: u64) -> Vec<i16> {
    vec![0; (rate as u64 * ms / 1000) as usize]
}

/// Writes mono PCM16.
pub fn write_wav(path: &Path, rate: u32, samples: &[i16]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    for &s in samples {
        w.write_sample(s).expect("write sample");
    }
    w.finalize().expect("finalize wav");
}

/// Reads a mono PCM16 WAV: (samples, rate).
pub fn read_wav(path: &Path) -> (Vec<i16>, u32) {
    let mut r = hound::WavReader::open(path).expect("open wav");
    let rate = r.spec().sample_rate;
    (r.samples::<i16>().map(|s| s.expect("sample")).collect(), rate)
}

/// Regions (start ms, end ms) where 10 ms windows have any sample above `threshold`, merging
/// gaps shorter than `min_gap_ms`.
pub fn active_regions(samples: &[i16], rate: u32, threshold: i16, min_gap_ms: u64) -> Vec<(u64, u64)> {
    let win = (rate / 100) as usize;
    let mut regions: Vec<(u64, u64)> = Vec::new();
    for (i, w) in samples.chunks(win).enumerate() {
        if w.iter().any(|s| s.unsigned_abs() > threshold as u16) {
            let start = i as u64 * 10;
            let end = start + (w.len() as u64 * 1000 / rate as u64);
            match regions.last_mut() {
                Some(last) if start <= last.1 + min_gap_ms => last.1 = end,
                _ => regions.push((start, end)),
            }
        }
    }
    regions
}

/// The event log as JSON values.
pub fn read_events(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("read event log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each event-log line is JSON"))
        .collect()
}

/// Events of one `type`.
pub fn events_of<'a>(events: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

/// Sample rate of scripted calls.
pub const CALL_RATE: u32 = 16_000;
const RATE: u32 = CALL_RATE;

/// A scripted call: segments placed one after another, with the known time of each.
#[derive(Debug, Default)]
pub struct Call {
    /// The caller's audio.
    pub samples: Vec<i16>,
    /// (label, start ms, end ms) of each sound placed.
    pub marks: Vec<(String, u64, u64)>,
}

impl Call {
    /// Where the next sound goes, in ms.
    pub fn now_ms(&self) -> u64 {
        self.samples.len() as u64 * 1000 / RATE as u64
    }
    /// Appends silence.
    pub fn silence(mut self, ms: u64) -> Self {
        self.samples.extend(silence(RATE, ms));
        self
    }
    /// Appends a 300 Hz tone labelled `label` (energy VADs hear it as speech).
    pub fn tone(mut self, label: &str, ms: u64) -> Self {
        let start = self.now_ms();
        self.samples.extend(tone(RATE, 300.0, ms, 0.3));
        self.marks.push((label.into(), start, start + ms));
        self
    }
    /// espeak-ng speech, trimmed to its voiced part so the marks are the speech boundaries.
    pub fn say(mut self, label: &str, text: &str) -> Self {
        let speech = espeak(text);
        let start = self.now_ms();
        self.marks.push((label.into(), start, start + speech.len() as u64 * 1000 / RATE as u64));
        self.samples.extend(speech);
        self
    }
    /// (start, end) ms of the sound labelled `label`.
    pub fn mark(&self, label: &str) -> (u64, u64) {
        let m = self.marks.iter().find(|m| m.0 == label).unwrap_or_else(|| panic!("no mark {label}"));
        (m.1, m.2)
    }
    /// Writes the call as a 16 kHz WAV.
    pub fn write(&self, path: &Path) {
        write_wav(path, RATE, &self.samples);
    }
}

/// `text` spoken by espeak-ng at 16 kHz, with leading and trailing silence removed.
pub fn espeak(text: &str) -> Vec<i16> {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("say.wav");
    let status = std::process::Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "165", "-w"])
        .arg(&wav)
        .arg(text)
        .status()
        .expect("espeak-ng runs (installed by scripts/setup.sh)");
    assert!(status.success(), "espeak-ng failed");
    let reader = hound::WavReader::open(&wav).unwrap();
    let rate = reader.spec().sample_rate;
    let s: Vec<i16> = reader.into_samples::<i16>().map(Result::unwrap).collect();
    let s = voxpipe_core::audio::resample_all(&s, rate, RATE).unwrap();
    let loud = |x: &i16| x.unsigned_abs() > 300;
    let a = s.iter().position(loud).unwrap();
    let b = s.iter().rposition(loud).unwrap();
    s[a..=b].to_vec()
}

/// Arguments to run `pipeline` on `input`, writing `reply.wav` and `events.jsonl` into `dir`.
pub fn run_args(dir: &Path, pipeline: PathBuf, input: PathBuf) -> voxpipe_cli::RunArgs {
    voxpipe_cli::RunArgs {
        pipeline,
        input: Some(input),
        output: Some(dir.join("reply.wav")),
        events: Some(dir.join("events.jsonl")),
        profile: None,
        sets: Vec::new(),
        quiet: true,
    }
}

/// A cascade pipeline file on the provider fakes (transcription → chat → speech at these base
/// URLs, key from `FAKE_API_KEY`), its turns decided by the energy VAD; its `[input]` and
/// `[output]` are unused under `voxpipe serve`.
pub fn fake_cascade_pipeline(name: &str, asr: &str, llm: &str, tts: &str) -> String {
    format!(
        r#"name = "{name}"
[input]
kind = "wav"
path = "unused.wav"
[output]
kind = "wav"
path = "unused-reply.wav"
[turn]
mode = "local"
vad = "energy"
[[stages]]
kind = "asr.openai"
base_url = "{asr}"
api_key_env = "FAKE_API_KEY"
[[stages]]
kind = "llm.openai"
base_url = "{llm}"
api_key_env = "FAKE_API_KEY"
[[stages]]
kind = "tts.openai"
base_url = "{tts}"
api_key_env = "FAKE_API_KEY"
"#
    )
}

/// Writes a serve file in `dir`: `head` (its settings), then one `[[pipelines]]` entry per
/// `(name, pipeline TOML)`, each pipeline in a file of its own. Returns the serve file's path.
pub fn write_serve_file(dir: &Path, head: String, pipelines: &[(&str, String)]) -> PathBuf {
    let mut serve = head;
    for (name, toml) in pipelines {
        let file = dir.join(format!("{name}.toml"));
        std::fs::write(&file, toml).unwrap();
        serve += &format!("[[pipelines]]\nname = \"{name}\"\nfile = \"{}\"\n", file.display());
    }
    let path = dir.join("serve.toml");
    std::fs::write(&path, serve).unwrap();
    path
}

/// The Realtime fake's script for `samples/two-turns.wav`: what it hears the caller say in
/// each of the two turns, and what it answers.
pub fn two_turn_script() -> Vec<voxpipe_fakes::realtime::ScriptedResponse> {
    use voxpipe_fakes::realtime::ScriptedResponse;
    vec![
        ScriptedResponse {
            user_transcript: Some("I would like to check my order.".into()),
            ..ScriptedResponse::say("Sure, what is the order number?")
        },
        ScriptedResponse {
            user_transcript: Some("Book an appointment tomorrow.".into()),
            ..ScriptedResponse::say("Done, see you tomorrow morning.")
        },
    ]
}
