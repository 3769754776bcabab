//! Model files that are missing or not GGUF fail with errors that say what to run: in the
//! engine, and through the stage and its worker.

mod support;

use std::path::PathBuf;
use voxpipe_core::Frame;
use voxpipe_llm_local::{LocalLlm, LocalLlmConfig};
use voxpipe_llm_worker::{Error, LocalModel};

/// A fresh directory under the system temp dir.
fn scratch(name: &str) -> PathBuf {
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let dir = std::env::temp_dir().join(format!("voxpipe-llm-worker-{name}-{}-{nonce}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Deterministic pseudo-random bytes (xorshift64).
fn noise(len: usize, mut state: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[tokio::test]
async fn a_missing_model_file_names_the_pull_command() {
    let path = scratch("missing").join("nothing-here.gguf");
    let config = LocalLlmConfig { model: path.display().to_string(), ..Default::default() };
    let err = LocalLlm::load(config).await.unwrap_err();
    assert!(matches!(err, voxpipe_llm_local::Error::ModelNotFound { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("voxpipe models pull smollm2-135m"), "{message}");
    assert!(message.contains("nothing-here.gguf"), "{message}");
}

#[tokio::test]
async fn a_corrupt_gguf_fails_to_load_with_the_pull_command() {
    let dir = scratch("corrupt");
    let random = dir.join("random.gguf");
    std::fs::write(&random, noise(1 << 16, 0x9E37_79B9_7F4A_7C15)).unwrap();
    // A valid magic and version with a garbage header behind it.
    let truncated = dir.join("truncated.gguf");
    let mut bytes = b"GGUF".to_vec();
    bytes.extend_from_slice(&3u32.to_le_bytes());
    bytes.extend_from_slice(&noise(4096, 42));
    std::fs::write(&truncated, bytes).unwrap();

    for path in [random, truncated] {
        let p = path.clone();
        let err = tokio::task::spawn_blocking(move || LocalModel::load(&p)).await.unwrap().unwrap_err();
        assert!(matches!(err, Error::ModelLoad { .. }), "{}: {err:?}", path.display());
        let message = err.to_string();
        assert!(message.contains("voxpipe models pull smollm2-135m"), "{message}");
        assert!(message.contains(&*path.file_name().unwrap().to_string_lossy()), "{message}");

        // Through the stage: the worker reports the same error, and exits.
        let config = LocalLlmConfig {
            model: path.display().to_string(),
            worker: Some(support::worker()),
            ..Default::default()
        };
        let err = LocalLlm::load(config).await.unwrap_err();
        let voxpipe_llm_local::Error::Worker { code, fatal, .. } = &err else { panic!("{err:?}") };
        assert_eq!((code.as_str(), *fatal), ("model_load", true));
        let message = err.to_string();
        assert!(message.starts_with("llm.local: llama.cpp could not load"), "{message}");
        assert!(message.contains("voxpipe models pull smollm2-135m"), "{message}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_stage_whose_model_is_missing_fails_the_call_with_the_hint() {
    let path = scratch("stage").join("absent.gguf");
    let config = LocalLlmConfig { model: path.display().to_string(), ..Default::default() };
    let mut call = support::start(LocalLlm::new(config).unwrap());
    call.input.send(Frame::EndOfStream).await.unwrap();
    let err = call.task.await.unwrap().unwrap_err();
    assert_eq!(err.stage, "llm.local");
    assert!(err.to_string().contains("voxpipe models pull smollm2-135m"), "{err}");
    assert!(call.output.recv().await.is_none(), "nothing is forwarded by a stage that failed to start");
}

#[test]
fn bad_config_values_are_rejected_before_the_call() {
    let config = LocalLlmConfig { threads: 0, ..Default::default() };
    let err = LocalLlm::new(config).unwrap_err();
    assert!(err.to_string().contains("threads"), "{err}");
}
