//! Hostile sizes: a server that streams an SSE line without end, or one event larger than the
//! cap, fails the response with a typed `too_large` error naming the provider, instead of the
//! client buffering until the process runs out of memory.

mod support;

use std::sync::Arc;
use support::Harness;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use voxpipe_core::{EventKind, NoTools, ResponseStatus, Secret};
use voxpipe_llm::sse::MAX_EVENT_BYTES;
use voxpipe_llm::{Anthropic, AnthropicConfig, OpenAiChat, OpenAiChatConfig};

/// What the loopback server sends after the response headers.
#[derive(Clone, Copy)]
enum Body {
    /// `data: xxxx…` forever, never a line end.
    EndlessLine,
    /// One Anthropic text delta event whose text is `MAX_EVENT_BYTES` long (valid JSON, so only
    /// the cap stops it), then a proper end.
    OversizeAnthropicEvent,
}

/// A one-connection HTTP server on loopback answering any request with an SSE `body`.
async fn serve(body: Body) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let Ok((mut sock, _)) = listener.accept().await else { return };
        // The request: headers, then a Content-Length body.
        let mut req = Vec::new();
        let mut buf = [0u8; 4096];
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
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
        if sock.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        match body {
            Body::EndlessLine => {
                let _ = sock.write_all(b"data: ").await;
                let chunk = vec![b'x'; 64 * 1024];
                // Until the client hangs up.
                while sock.write_all(&chunk).await.is_ok() {}
            }
            Body::OversizeAnthropicEvent => {
                let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\n\
                    event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n";
                let text = "y".repeat(MAX_EVENT_BYTES);
                let delta = format!(
                    "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{text}\"}}}}\n\n"
                );
                let end = "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
                    event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":2}}\n\n\
                    event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
                for part in [start, delta.as_str(), end] {
                    if sock.write_all(part.as_bytes()).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    format!("http://{addr}/v1")
}

fn provider_errors(events: &[EventKind]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            EventKind::ProviderError { code, message, .. } => Some((code.clone()?, message.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn an_endless_sse_line_fails_the_openai_response_as_too_large() {
    let base_url = serve(Body::EndlessLine).await;
    let config = OpenAiChatConfig { base_url, ..OpenAiChatConfig::default() };
    let stage = Box::new(OpenAiChat::new(config, Some(Secret::new("sk-test"))).unwrap());
    let mut h = Harness::start(stage, Arc::new(NoTools));
    h.say("Hello?").await;
    let turn = h.turn().await;
    assert_eq!(turn.done().status, ResponseStatus::Failed);
    let errors = provider_errors(&h.drain_events());
    assert_eq!(errors.len(), 1, "{errors:?}");
    let (code, message) = &errors[0];
    assert_eq!(code, "too_large");
    assert!(message.starts_with("openai: SSE event larger than the limit of 4194304 bytes"), "{message}");
    h.finish().await.unwrap();
}

#[tokio::test]
async fn an_oversize_sse_event_fails_the_anthropic_response_as_too_large() {
    let base_url = serve(Body::OversizeAnthropicEvent).await;
    let config = AnthropicConfig { base_url, ..AnthropicConfig::default() };
    let stage = Box::new(Anthropic::new(config, Secret::new("sk-ant-test")).unwrap());
    let mut h = Harness::start(stage, Arc::new(NoTools));
    h.say("Hello?").await;
    let turn = h.turn().await;
    assert_eq!(turn.done().status, ResponseStatus::Failed);
    assert!(turn.deltas().is_empty(), "nothing of the oversize event is spoken");
    let errors = provider_errors(&h.drain_events());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, "too_large");
    assert!(errors[0].1.starts_with("anthropic: SSE event larger than the limit"), "{}", errors[0].1);
    h.finish().await.unwrap();
}
