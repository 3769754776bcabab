//! Hostile sizes: a transcription endpoint that answers with a body larger than the cap gets a
//! typed `TooLarge` error naming the provider, instead of the client reading it all.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use voxpipe_asr::openai::MAX_BODY_BYTES;
use voxpipe_asr::{Error, OpenAiTranscribeConfig, OpenAiTranscriber};
use voxpipe_core::Secret;

/// A one-connection HTTP server on loopback answering with a valid transcription whose text
/// is `MAX_BODY_BYTES` long.
async fn oversize_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let Ok((mut sock, _)) = listener.accept().await else { return };
        let mut req = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let Ok(n) = sock.read(&mut buf).await else { return };
            if n == 0 {
                return;
            }
            req.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&req).to_ascii_lowercase();
            if let Some(end) = text.find("\r\n\r\n") {
                let len = text
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    .unwrap_or(0);
                if req.len() >= end + 4 + len {
                    break;
                }
            }
        }
        let body = format!(r#"{{"text":"{}"}}"#, "a".repeat(MAX_BODY_BYTES));
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = sock.write_all(head.as_bytes()).await;
        let _ = sock.write_all(body.as_bytes()).await;
    });
    format!("http://{addr}/v1")
}

#[tokio::test]
async fn an_oversize_transcription_body_is_a_typed_error() {
    let cfg =
        OpenAiTranscribeConfig { base_url: oversize_server().await, ..OpenAiTranscribeConfig::default() };
    let client = OpenAiTranscriber::with_key(&cfg, Secret::new("sk-test"));
    let err = client.transcribe(&[0; 1600]).await.unwrap_err();
    assert!(matches!(err, Error::TooLarge { provider: "asr.openai", limit: MAX_BODY_BYTES }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("asr.openai: response body larger than the limit of {MAX_BODY_BYTES} bytes")
    );
    assert!(!err.is_retryable());
}
