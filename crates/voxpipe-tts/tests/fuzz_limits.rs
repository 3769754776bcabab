//! Hostile sizes: an ElevenLabs socket that sends a message larger than the cap fails the
//! reply with a typed protocol error naming the provider and the limit, instead of buffering
//! up to tungstenite's default of 64 MiB per message.

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use voxpipe_core::Secret;
use voxpipe_tts::elevenlabs::MAX_MESSAGE_BYTES;
use voxpipe_tts::{ElevenLabs, ElevenLabsConfig, SynthEvent, Synthesizer, TextChunk};

#[tokio::test]
async fn an_oversize_websocket_message_fails_the_reply_with_a_protocol_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        // The init message and the text, then valid audio larger than the cap, then the end.
        let _ = ws.next().await;
        let _ = ws.next().await;
        let audio = "A".repeat(MAX_MESSAGE_BYTES);
        let _ = ws.send(Message::text(format!(r#"{{"audio":"{audio}"}}"#))).await;
        let _ = ws.send(Message::text(r#"{"isFinal":true}"#)).await;
        while ws.next().await.is_some() {}
    });
    let mut config = ElevenLabsConfig::with_voice("voice_1");
    config.ws_url = format!("ws://{addr}/v1");
    config.max_retries = 0;
    let el = ElevenLabs::new(config, Secret::new("xi-test")).unwrap();
    let (text_tx, text_rx) = mpsc::channel(4);
    let (events_tx, mut events_rx) = mpsc::channel(16);
    text_tx.send(TextChunk { text: "Hello there.".into(), is_last: true }).await.unwrap();
    el.speak_reply(text_rx, events_tx).await.unwrap();
    let mut events = Vec::new();
    while let Some(e) = events_rx.recv().await {
        events.push(e);
    }
    assert!(
        !events.iter().any(|e| matches!(e, SynthEvent::Audio { .. })),
        "no audio from the oversize message"
    );
    let Some(SynthEvent::Failed(e)) = events.last() else { panic!("{events:?}") };
    let msg = e.to_string();
    assert!(msg.starts_with("tts.elevenlabs: protocol error"), "{msg}");
    assert!(msg.contains(&format!("the limit is {MAX_MESSAGE_BYTES} bytes")), "{msg}");
}
