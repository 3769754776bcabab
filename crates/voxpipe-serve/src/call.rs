//! One live call: the stream starts, the call's pipeline is built around it, it runs on its
//! own task tree and cancellation token, and when it ends everything is flushed: the stereo
//! recording, the event log, a summary, metrics and the post-call webhook. Nothing a call does
//! reaches another call.

use crate::metrics::{LatencyLabels, OutcomeLabels, PipelineLabel};
use crate::{App, LiveCall, Slot};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};
use voxpipe_core::{EndReason, Event, EventKind, EventWriter, Observed, RunOptions, Sink, Source};
use voxpipe_transport::recording::CallRecorder;
use voxpipe_twilio::transport::{SocketIn, StreamEnd, StreamState, accept};

/// What the call's event observer passes to the call-control task.
#[derive(Debug)]
enum Watch {
    Handoff(Option<String>),
    PlayoutStarted,
    PlayoutFinished,
}

/// Writes the event log with the call's assignment on every line.
struct TaggedJsonl {
    out: std::io::BufWriter<std::fs::File>,
    tags: serde_json::Map<String, serde_json::Value>,
}

impl EventWriter for TaggedJsonl {
    fn write(&mut self, event: &Event) -> std::io::Result<()> {
        use std::io::Write;
        let mut v = serde_json::to_value(event)?;
        if let Some(o) = v.as_object_mut() {
            for (k, t) in &self.tags {
                o.insert(k.clone(), t.clone());
            }
        }
        serde_json::to_writer(&mut self.out, &v)?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }
    fn finish(&mut self) -> std::io::Result<()> {
        use std::io::Write;
        self.out.flush()?;
        self.out.get_ref().sync_data()
    }
}

/// Where a call came from, and what only that kind of call has.
pub(crate) enum Carrier {
    /// A Twilio Media Stream: REST hang-up and transfer.
    Twilio {
        /// How the stream ended.
        state: Arc<StreamState>,
    },
    /// A browser over WebRTC: the page hears the call's events.
    Browser {
        /// How the connection ended.
        state: Arc<voxpipe_webrtc::CallState>,
        /// The page's data channel.
        page: voxpipe_webrtc::PageEvents,
        /// Closes the connection.
        close: CancellationToken,
    },
}

/// One call ready to run: its identity, its transport halves and where it came from.
pub(crate) struct Leg {
    /// The call's id (Twilio's call SID, or the server's id of a browser call).
    pub id: String,
    /// The pipeline's name.
    pub pipeline: String,
    /// How it was picked.
    pub assigned_by: String,
    /// The caller (a phone number, or the page's client address).
    pub from: String,
    /// The caller's audio.
    pub source: Box<dyn Source>,
    /// The assistant's audio.
    pub sink: Box<dyn Sink>,
    /// The carrier.
    pub carrier: Carrier,
}

/// What a call keeps on disk.
pub(crate) struct CallFiles {
    dir: Option<PathBuf>,
    events: Option<Box<dyn EventWriter>>,
    /// The stereo recording, when the transport records.
    pub recorder: Option<CallRecorder>,
}

/// Opens the call's directory: its event log (every line tagged with the call's assignment)
/// and, at `rate`, its recording. Failures are logged and counted; the call goes on without.
pub(crate) fn open_files(
    app: &App,
    id: &str,
    pipeline: &str,
    assigned_by: &str,
    rate: Option<u32>,
) -> CallFiles {
    let dir = app.loaded.config.recordings_dir.as_ref().map(|d| d.join(safe_name(id)));
    let mut files = CallFiles { dir: dir.clone(), events: None, recorder: None };
    let Some(dir) = &dir else { return files };
    if let Err(e) = std::fs::create_dir_all(dir) {
        error!(error = %e, dir = %dir.display(), "cannot create the call's directory; not recording");
        app.metrics.error("recording");
        files.dir = None;
        return files;
    }
    if let Some(rate) = rate {
        match CallRecorder::create(&dir.join("recording.wav"), rate) {
            Ok(r) => files.recorder = Some(r),
            Err(e) => {
                error!(error = %e, "cannot create the recording");
                app.metrics.error("recording");
            }
        }
    }
    match std::fs::File::create(dir.join("events.jsonl")) {
        Ok(f) => {
            let mut tags = serde_json::Map::new();
            tags.insert("call_sid".into(), id.into());
            tags.insert("pipeline".into(), pipeline.into());
            tags.insert("assigned_by".into(), assigned_by.into());
            files.events = Some(Box::new(TaggedJsonl { out: std::io::BufWriter::new(f), tags }));
        }
        Err(e) => {
            error!(error = %e, "cannot create the event log");
            app.metrics.error("recording");
        }
    }
    files
}

/// Runs one call on an accepted Twilio socket.
pub async fn run(
    app: Arc<App>,
    slot: Slot,
    inbound: mpsc::Receiver<SocketIn>,
    outbound: mpsc::Sender<String>,
) {
    let c = &app.loaded.config;
    // Held until the call is wrapped up: the socket stays open until then (a REST hang-up
    // must reach the carrier before the stream closes behind it).
    let _keep_open = outbound.clone();
    let mut stream = match accept(inbound, outbound, c.twilio.stream.clone(), c.dtmf.clone()).await {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "media stream did not start");
            app.metrics.error("stream_start");
            return;
        }
    };
    let call_sid = stream.start.call_sid.clone();
    let params = stream.start.custom_parameters.clone();
    let name = params.get("pipeline").cloned().unwrap_or_default();
    let assigned_by = params.get("assigned_by").cloned().unwrap_or_else(|| "default".into());
    let from = params.get("from").cloned().unwrap_or_default();
    let files = open_files(&app, &call_sid, &name, &assigned_by, Some(voxpipe_twilio::transport::RATE));
    if let Some(r) = &files.recorder {
        stream.record_to(r.clone());
    }
    let leg = Leg {
        id: call_sid,
        pipeline: name,
        assigned_by,
        from,
        source: Box::new(stream.source),
        sink: Box::new(stream.sink),
        carrier: Carrier::Twilio { state: stream.state.clone() },
    };
    run_leg(app, slot, leg, files).await;
}

/// The call's events the page shows: captions, tool calls, latencies, speech and playout.
fn for_page(e: &Event) -> bool {
    matches!(
        e.kind,
        EventKind::UserTranscript(_)
            | EventKind::AssistantTranscript(_)
            | EventKind::ToolCall(_)
            | EventKind::ToolResult(_)
            | EventKind::Metric { .. }
            | EventKind::SpeechStarted { .. }
            | EventKind::SpeechStopped { .. }
            | EventKind::PlayoutStarted { .. }
            | EventKind::PlayoutFinished { .. }
            | EventKind::Interrupt { .. }
            | EventKind::ProviderError { .. }
            | EventKind::Reconnected { .. }
            | EventKind::Failover { .. }
            | EventKind::CallEnded { .. }
    )
}

/// Runs one call, from building its pipeline to its summary.
pub(crate) async fn run_leg(app: Arc<App>, slot: Slot, leg: Leg, files: CallFiles) {
    let Leg { id: call_sid, pipeline: name, assigned_by, from, source, sink, carrier } = leg;
    let span = info_span!("call", call_sid = %call_sid);
    async move {
        let CallFiles { dir, events, recorder } = files;
        let Some((_, pipeline_config)) = app.loaded.pipelines.iter().find(|(e, _)| e.name == name) else {
            warn!(pipeline = %name, "the call names no pipeline of this server; closing it");
            app.metrics.error("unknown_pipeline");
            return;
        };
        // Bounded: the observer never waits; the control task drains it (a few events per turn).
        let (watch_tx, watch_rx) = mpsc::channel(256);
        let transcript = Arc::new(Mutex::new(Vec::<String>::new()));
        let page = match &carrier {
            Carrier::Browser { page, .. } => Some(page.clone()),
            Carrier::Twilio { .. } => None,
        };
        let observer = {
            let metrics = app.metrics.clone();
            let transcript = transcript.clone();
            let pipeline = name.clone();
            move |e: &Event| {
                if let Some(page) = &page
                    && for_page(e)
                    && let Ok(text) = serde_json::to_string(e)
                {
                    page.send(text);
                }
                match &e.kind {
                    EventKind::Metric { name, value_ms, .. } => {
                        let metric = name.strip_suffix("_ms").unwrap_or(name).to_string();
                        metrics
                            .turn_latency
                            .get_or_create(&LatencyLabels { pipeline: pipeline.clone(), metric })
                            .observe(*value_ms as f64 / 1000.0);
                    }
                    EventKind::UserTranscript(t) if t.is_final => transcript
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(format!("user: {}", t.text.trim())),
                    EventKind::AssistantTranscript(t) if t.is_final => transcript
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(format!("assistant: {}", t.text.trim())),
                    EventKind::ProviderError { stage, .. } => metrics.error(&format!("provider:{stage}")),
                    EventKind::Reconnected { stage, took_ms, .. } => {
                        metrics.recovery(&format!("reconnect:{stage}"), Duration::from_millis(*took_ms))
                    }
                    EventKind::Failover { stage, after_ms, .. } => {
                        metrics.recovery(&format!("failover:{stage}"), Duration::from_millis(*after_ms))
                    }
                    EventKind::Error { stage, .. } => metrics.error(&format!("component:{stage}")),
                    EventKind::Handoff { target, .. } => {
                        let _ = watch_tx.try_send(Watch::Handoff(target.clone()));
                    }
                    EventKind::PlayoutStarted { .. } => {
                        let _ = watch_tx.try_send(Watch::PlayoutStarted);
                    }
                    EventKind::PlayoutFinished { .. } => {
                        let _ = watch_tx.try_send(Watch::PlayoutFinished);
                    }
                    _ => {}
                }
                Ok(())
            }
        };
        let events: Box<dyn EventWriter> = Box::new(Observed::new(events, observer));
        let pipeline =
            match voxpipe_config::build_call(pipeline_config, &app.env, source, vec![sink], Some(events))
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    error!(pipeline = %name, error = %e, "the pipeline could not be built; ending the call");
                    app.metrics.error("build");
                    if let Some(r) = recorder {
                        let _ = r.finish();
                    }
                    if let Carrier::Browser { close, .. } = &carrier {
                        close.cancel();
                    }
                    return;
                }
            };
        let cancel = CancellationToken::new();
        let started_at =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        app.calls.lock().unwrap_or_else(|e| e.into_inner()).insert(
            call_sid.clone(),
            LiveCall {
                call_sid: call_sid.clone(),
                pipeline: name.clone(),
                assigned_by: assigned_by.clone(),
                from: from.clone(),
                started_at,
                cancel: cancel.clone(),
            },
        );
        let gauge = app.metrics.active_calls.get_or_create(&PipelineLabel { pipeline: name.clone() }).clone();
        gauge.inc();
        info!(pipeline = %name, by = %assigned_by, "call started");
        let clock = std::time::Instant::now();

        let max = Duration::from_secs(app.loaded.config.limits.max_call_secs);
        let timed_out = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let limit = tokio::spawn({
            let cancel = cancel.clone();
            let timed_out = timed_out.clone();
            async move {
                tokio::time::sleep(max).await;
                timed_out.store(true, std::sync::atomic::Ordering::SeqCst);
                warn!(max_secs = max.as_secs(), "call reached its maximum length; ending it");
                cancel.cancel();
            }
        });
        let transferred = Arc::new(Mutex::new(None::<String>));
        let control = match &carrier {
            Carrier::Twilio { .. } => Some(tokio::spawn(transfer_on_handoff(
                app.clone(),
                call_sid.clone(),
                watch_rx,
                transferred.clone(),
            ))),
            // A browser call cannot be transferred: the handoff is in the event log.
            Carrier::Browser { .. } => None,
        };

        let result = pipeline.run(RunOptions { handle_ctrl_c: false, cancel: Some(cancel.clone()) }).await;
        limit.abort();
        if let Some(control) = control {
            control.abort();
        }
        let transferred = transferred.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let carrier_outcome = match &carrier {
            Carrier::Twilio { state } => match state.end() {
                Some(StreamEnd::Stop) => Some("hangup"),
                Some(StreamEnd::SocketLost(_)) => Some("socket_lost"),
                None => None,
            },
            Carrier::Browser { state, .. } => state.end().map(|e| e.outcome()),
        };
        let outcome = match (&result, carrier_outcome) {
            _ if transferred.is_some() => "transferred",
            (Ok(EndReason::EndCall), _) => {
                if let Carrier::Twilio { .. } = &carrier
                    && let Err(e) = app.rest.hang_up(&call_sid).await
                {
                    // The goodbye has played (its marks came back): hang up through the API.
                    warn!(error = %e, "end_call: the hang-up request failed; closing the stream instead");
                    app.metrics.error("twilio_rest");
                }
                "end_call"
            }
            (Err(_), _) => "error",
            (_, Some(ended)) => ended,
            _ if timed_out.load(std::sync::atomic::Ordering::SeqCst) => "max_duration",
            _ if app.is_draining() => "drained",
            _ => "completed",
        };
        if let Carrier::Browser { close, page, .. } = &carrier {
            page.send(serde_json::json!({ "type": "call_summary", "outcome": outcome }).to_string());
            // Let the last page messages go out before the connection closes.
            tokio::time::sleep(Duration::from_millis(200)).await;
            close.cancel();
        }
        if let Err(e) = &result {
            warn!(error = %e, "the call ended with an error");
        }
        let recording = match recorder.map(|r| r.finish()) {
            Some(Err(e)) => {
                error!(error = %e, "the recording could not be completed");
                app.metrics.error("recording");
                None
            }
            Some(Ok(())) => dir.as_ref().map(|d| d.join("recording.wav")),
            None => None,
        };
        let bad_messages = match &carrier {
            Carrier::Twilio { state } => state.stats.bad_messages.load(std::sync::atomic::Ordering::Relaxed),
            Carrier::Browser { state, .. } => state.bad_packets.load(std::sync::atomic::Ordering::Relaxed),
        };
        let duration_ms = clock.elapsed().as_millis() as u64;
        let summary = serde_json::json!({
            "call_sid": call_sid,
            "pipeline": name,
            "assigned_by": assigned_by,
            "from": from,
            "outcome": outcome,
            "transferred_to": transferred,
            "started_at": started_at,
            "duration_ms": duration_ms,
            "transcript": *transcript.lock().unwrap_or_else(|e| e.into_inner()),
            "recording": recording.as_ref().map(|p| p.display().to_string()),
            "events": dir.as_ref().map(|d| d.join("events.jsonl").display().to_string()),
            "bad_messages": bad_messages,
            "playout_delay_ms": match &carrier {
                Carrier::Browser { state, .. } => state.playout_delay().map(|d| serde_json::json!(d)),
                Carrier::Twilio { .. } => None,
            },
        });
        if let Some(d) = &dir
            && let Err(e) =
                std::fs::write(d.join("call.json"), serde_json::to_vec_pretty(&summary).unwrap_or_default())
        {
            error!(error = %e, "cannot write the call summary");
        }
        if let Some(w) = &app.webhook {
            let payload =
                serde_json::json!({ "type": "call.ended", "timestamp": started_at, "data": summary });
            w.send(format!("msg_{call_sid}"), payload, app.metrics.clone());
        }
        app.calls.lock().unwrap_or_else(|e| e.into_inner()).remove(&call_sid);
        gauge.dec();
        app.metrics
            .calls_total
            .get_or_create(&OutcomeLabels { pipeline: name.clone(), outcome: outcome.into() })
            .inc();
        info!(outcome, duration_ms, "call ended");
        drop(slot);
    }
    .instrument(span)
    .await
}

/// A transfer: once the model has handed off and its last words have played, the live call
/// is redirected with `<Dial>`; Twilio then ends the stream.
async fn transfer_on_handoff(
    app: Arc<App>,
    call_sid: String,
    mut rx: mpsc::Receiver<Watch>,
    done: Arc<Mutex<Option<String>>>,
) {
    let target = loop {
        match rx.recv().await {
            Some(Watch::Handoff(Some(t))) => break t,
            Some(Watch::Handoff(None)) => warn!("handoff without a destination: nothing to dial"),
            Some(_) => {}
            None => return,
        }
    };
    // Let the words after the handoff ("I'll put you through") start and finish playing.
    let until = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut playing = false;
    loop {
        let wait = if playing { until } else { tokio::time::Instant::now() + Duration::from_millis(1500) };
        match tokio::time::timeout_at(wait.min(until), rx.recv()).await {
            Ok(Some(Watch::PlayoutStarted)) => playing = true,
            Ok(Some(Watch::PlayoutFinished)) if playing => break,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let twiml = voxpipe_twilio::twiml::dial(&target, app.loaded.config.twilio.transfer_caller_id.as_deref());
    info!(%target, "transferring the call");
    match app.rest.redirect(&call_sid, &twiml).await {
        Ok(()) => *done.lock().unwrap_or_else(|e| e.into_inner()) = Some(target),
        Err(e) => {
            warn!(error = %e, "transfer failed");
            app.metrics.error("twilio_rest");
        }
    }
}

/// A call SID as a directory name (Twilio's are letters and digits; anything else is dropped).
fn safe_name(sid: &str) -> PathBuf {
    let s: String = sid.chars().filter(|c| c.is_ascii_alphanumeric()).take(64).collect();
    PathBuf::from(if s.is_empty() { "call".to_string() } else { s })
}
