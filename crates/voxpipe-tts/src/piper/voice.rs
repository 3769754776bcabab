//! A Piper voice: its `.onnx.json` (phoneme id map, inference defaults, sample rate), the
//! phoneme-id encoding, and the ONNX session that turns ids into audio.

use crate::Error;
use ort::environment::Environment;
use ort::session::Session;
use ort::value::Tensor;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use unicode_normalization::UnicodeNormalization;
use voxpipe_core::SampleRate;

/// Beginning of utterance, end of utterance and padding symbols (Piper's convention).
pub const BOS: &str = "^";
/// End-of-utterance symbol.
pub const EOS: &str = "$";
/// Padding symbol, placed after BOS and after every phoneme.
pub const PAD: &str = "_";

/// The parts of a Piper `.onnx.json` this crate reads.
#[derive(Debug, Clone, Deserialize)]
pub struct VoiceFile {
    /// Output audio.
    pub audio: AudioSection,
    /// The espeak-ng voice that phonemizes for this model.
    pub espeak: EspeakSection,
    /// Default synthesis scales.
    pub inference: InferenceSection,
    /// `espeak` for every voice this crate can drive.
    #[serde(default = "default_phoneme_type")]
    pub phoneme_type: String,
    /// Phoneme (one Unicode scalar) to model ids.
    pub phoneme_id_map: HashMap<String, Vec<i64>>,
    /// Phoneme substitutions applied before the id map.
    #[serde(default)]
    pub phoneme_map: HashMap<String, Vec<String>>,
    /// Number of speakers (a `sid` input exists when > 1).
    #[serde(default = "one")]
    pub num_speakers: u32,
}

/// `audio` section of the voice file.
#[derive(Debug, Clone, Deserialize)]
pub struct AudioSection {
    /// Output rate, Hz (22,050 for medium voices).
    pub sample_rate: SampleRate,
}

/// `espeak` section of the voice file.
#[derive(Debug, Clone, Deserialize)]
pub struct EspeakSection {
    /// espeak-ng voice name, e.g. `en-us`.
    pub voice: String,
}

/// `inference` section of the voice file.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct InferenceSection {
    /// Noise added to the generator (expressiveness).
    pub noise_scale: f32,
    /// Phoneme duration multiplier (> 1 is slower).
    pub length_scale: f32,
    /// Noise added to the duration predictor.
    pub noise_w: f32,
}

fn default_phoneme_type() -> String {
    "espeak".into()
}

fn one() -> u32 {
    1
}

impl VoiceFile {
    /// Reads and checks `path` (the `.onnx.json`).
    ///
    /// # Errors
    /// [`Error::Config`] when the file is missing, unreadable, or lacks the symbols Piper
    /// needs.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let config = |detail: String| Error::Config { field: "voice", detail };
        let bytes = std::fs::read(path).map_err(|e| {
            config(format!(
                "cannot read the Piper voice config {}: {e}; it must sit beside the .onnx file \
                 (run `voxpipe models pull piper-joe` for the default voice)",
                path.display()
            ))
        })?;
        let file: Self = serde_json::from_slice(&bytes)
            .map_err(|e| config(format!("{} is not a Piper voice config: {e}", path.display())))?;
        if file.phoneme_type != "espeak" {
            let detail = format!("phoneme_type {:?} is not supported (only \"espeak\")", file.phoneme_type);
            return Err(config(detail));
        }
        for symbol in [BOS, EOS, PAD] {
            if file.phoneme_id_map.get(symbol).is_none_or(Vec::is_empty) {
                return Err(config(format!("{}: phoneme_id_map has no {symbol:?}", path.display())));
            }
        }
        if file.audio.sample_rate == 0 {
            return Err(config(format!("{}: audio.sample_rate is 0", path.display())));
        }
        Ok(file)
    }

    /// Encodes the phonemes of one sentence: BOS, PAD, then each phoneme's ids followed by
    /// PAD, then EOS. Phonemes are NFD-decomposed first (as Piper does); phonemes absent from
    /// the map are skipped and counted.
    pub fn phoneme_ids(&self, phonemes: &str) -> (Vec<i64>, usize) {
        let map = &self.phoneme_id_map;
        let ids_of = |s: &str| map.get(s).map(Vec::as_slice).unwrap_or_default();
        let pad = ids_of(PAD);
        let mut ids = Vec::with_capacity(2 * phonemes.len() + 4);
        ids.extend_from_slice(ids_of(BOS));
        ids.extend_from_slice(pad);
        let mut missing = 0;
        let mut buf = [0u8; 4];
        let mut push = |p: &str, ids: &mut Vec<i64>| match map.get(p) {
            Some(v) => {
                ids.extend_from_slice(v);
                ids.extend_from_slice(pad);
            }
            None => missing += 1,
        };
        for c in phonemes.nfd() {
            let p: &str = c.encode_utf8(&mut buf);
            match self.phoneme_map.get(p) {
                Some(subs) => subs.iter().for_each(|s| push(s, &mut ids)),
                None => push(p, &mut ids),
            }
        }
        ids.extend_from_slice(ids_of(EOS));
        (ids, missing)
    }
}

/// Synthesis scales passed to the model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scales {
    /// Generator noise.
    pub noise_scale: f32,
    /// Duration multiplier.
    pub length_scale: f32,
    /// Duration-predictor noise.
    pub noise_w: f32,
}

/// A loaded voice model; one per model file per process, shared by every [`Piper`](super::Piper).
pub struct VoiceModel {
    session: Mutex<Session>,
    path: PathBuf,
}

impl std::fmt::Debug for VoiceModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceModel").field("path", &self.path).finish_non_exhaustive()
    }
}

/// Models loaded in this process, by path.
static MODELS: Mutex<Vec<(PathBuf, Weak<VoiceModel>)>> = Mutex::new(Vec::new());

impl VoiceModel {
    /// Loads `path` on `env`, or returns the copy already loaded in this process (blocking).
    ///
    /// # Errors
    /// [`Error::Config`] when onnxruntime cannot load the model.
    pub fn load_shared(env: &Environment, path: &Path, threads: u16) -> Result<Arc<Self>, Error> {
        let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let mut models = MODELS.lock().unwrap_or_else(|p| p.into_inner());
        models.retain(|(_, w)| w.strong_count() > 0);
        if let Some(model) = models.iter().find(|(p, _)| *p == key).and_then(|(_, w)| w.upgrade()) {
            return Ok(model);
        }
        let config = |e: ort::Error| Error::Config {
            field: "voice",
            detail: format!("onnxruntime cannot load the Piper voice {}: {e}", path.display()),
        };
        // Non-spinning threads: idle pool threads that spin steal the cores whisper and the
        // LLM need between sentences.
        let build = || -> ort::Result<Session> {
            Session::builder(env)?
                .with_intra_threads(threads.max(1) as usize)?
                .with_inter_threads(1)?
                .with_intra_op_spinning(false)?
                .with_inter_op_spinning(false)?
                .commit_from_file(path)
        };
        let session = build().map_err(config)?;
        let model = Arc::new(Self { session: Mutex::new(session), path: key.clone() });
        models.push((key, Arc::downgrade(&model)));
        Ok(model)
    }

    /// Runs the model on one sentence's ids (blocking; seconds of CPU for long sentences):
    /// float audio at the voice's rate.
    ///
    /// # Errors
    /// The onnxruntime error message.
    pub fn infer(&self, ids: Vec<i64>, scales: Scales, speaker: Option<i64>) -> Result<Vec<f32>, String> {
        let n = ids.len();
        let input = Tensor::from_array(([1usize, n], ids)).map_err(|e| e.to_string())?;
        let lengths = Tensor::from_array(([1usize], vec![n as i64])).map_err(|e| e.to_string())?;
        let s = vec![scales.noise_scale, scales.length_scale, scales.noise_w];
        let scales = Tensor::from_array(([3usize], s)).map_err(|e| e.to_string())?;
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = match speaker {
            Some(sid) => {
                let sid = Tensor::from_array(([1usize], vec![sid])).map_err(|e| e.to_string())?;
                session.run(ort::inputs!["input" => input, "input_lengths" => lengths, "scales" => scales, "sid" => sid])
            }
            None => session.run(ort::inputs!["input" => input, "input_lengths" => lengths, "scales" => scales]),
        }
        .map_err(|e| e.to_string())?;
        let (_, audio) = outputs[0].try_extract_tensor::<f32>().map_err(|e| e.to_string())?;
        Ok(audio.to_vec())
    }
}

/// Float audio to PCM16 the way Piper does: scaled so the loudest sample reaches full scale
/// (peaks under 0.01 are not amplified more than 100x), clamped.
pub fn to_pcm16(audio: &[f32]) -> Vec<i16> {
    let peak = audio.iter().fold(0.01f32, |m, s| m.max(s.abs()));
    let scale = f32::from(i16::MAX) / peak;
    audio.iter().map(|s| (s * scale).clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voice(map: &[(&str, i64)]) -> VoiceFile {
        VoiceFile {
            audio: AudioSection { sample_rate: 22_050 },
            espeak: EspeakSection { voice: "en-us".into() },
            inference: InferenceSection { noise_scale: 0.667, length_scale: 1.0, noise_w: 0.8 },
            phoneme_type: "espeak".into(),
            phoneme_id_map: map.iter().map(|(k, v)| (k.to_string(), vec![*v])).collect(),
            phoneme_map: HashMap::new(),
            num_speakers: 1,
        }
    }

    #[test]
    fn ids_are_bos_pad_phonemes_interleaved_with_pad_then_eos() {
        let v = voice(&[("_", 0), ("^", 1), ("$", 2), ("h", 20), ("ˈ", 120), ("a", 14)]);
        let (ids, missing) = v.phoneme_ids("hˈa");
        assert_eq!(ids, vec![1, 0, 20, 0, 120, 0, 14, 0, 2]);
        assert_eq!(missing, 0);
    }

    #[test]
    fn unknown_phonemes_are_skipped_and_counted() {
        let v = voice(&[("_", 0), ("^", 1), ("$", 2), ("a", 14)]);
        let (ids, missing) = v.phoneme_ids("aXa");
        assert_eq!(ids, vec![1, 0, 14, 0, 14, 0, 2]);
        assert_eq!(missing, 1);
    }

    #[test]
    fn precomposed_characters_are_decomposed_before_lookup() {
        let v = voice(&[("_", 0), ("^", 1), ("$", 2), ("c", 16), ("\u{327}", 140)]);
        let (ids, _) = v.phoneme_ids("ç");
        assert_eq!(ids, vec![1, 0, 16, 0, 140, 0, 2]);
    }

    #[test]
    fn pcm16_conversion_normalises_the_peak_and_keeps_silence_quiet() {
        assert_eq!(to_pcm16(&[0.5, -0.25, 0.0]), vec![32767, -16383, 0]);
        let quiet = to_pcm16(&[0.001, -0.001]);
        assert_eq!(quiet, vec![3276, -3276]);
    }
}
