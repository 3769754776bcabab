//! The playout engine shared by every audio sink.
//!
//! Assistant audio arrives faster than real time; the engine queues it and plays it on the
//! call clock in 20 ms ticks, writing silence when nothing is queued, so the output is the
//! assistant's side of the conversation on the same timeline as the caller's input. Every block
//! it plays is recorded in the [`PlayoutTracker`](voxpipe_core::PlayoutTracker) before it is
//! written; an interruption closes the epoch and the next tick writes silence, so the sink goes
//! quiet within one tick (20 ms) of the decision. A held tracker
//! ([`PlayoutTracker::pause`](voxpipe_core::PlayoutTracker::pause)) makes the engine write
//! silence without consuming the queue, so resuming continues at the same sample.

use async_trait::async_trait;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::MissedTickBehavior;
use voxpipe_core::audio::{CHUNK_MS, SampleRate, StreamResampler};
use voxpipe_core::{CallContext, Control, EventKind, Frame, Inbox, ItemId, OutputAudio, Samples, StageError};

/// How long the queue may run dry in the middle of an item before the item counts as over
/// (and the caller as hearing nothing).
const UNDERRUN_GRACE_MS: u64 = 200;
/// While the item's response is still being generated, how long its audio may pause (a server
/// that sends a reply sentence by sentence) before the item counts as over all the same.
const ITEM_GAP_MAX_MS: u64 = 5000;

/// What the sink knows of the responses its audio comes from: whether more of the playing
/// item may still come.
#[derive(Debug, Default)]
struct Producer {
    /// A response started and has not ended (`ResponseStarted` without `ResponseDone` yet).
    open: bool,
    /// The item audio was last queued for.
    last_queued: Option<ItemId>,
    /// The item that was last queued when a response ended: none of its audio is to come.
    done: Option<ItemId>,
}

impl Producer {
    fn observe(&mut self, frame: &Frame) {
        match frame {
            Frame::ResponseStarted(_) => self.open = true,
            Frame::ResponseDone(_) => {
                self.open = false;
                self.done = self.last_queued.clone();
            }
            Frame::OutputAudio(a) => self.last_queued = Some(a.item.clone()),
            _ => {}
        }
    }

    /// Whether `item`, its queued audio all played, may still get more (a pause between bursts
    /// of one reply), rather than being over.
    fn may_continue(&self, item: &ItemId) -> bool {
        self.open && self.done.as_ref() != Some(item)
    }
}

/// Where played audio goes: a file, stdout, a socket.
#[async_trait]
pub trait AudioOut: Send {
    /// Writes played samples (assistant audio or silence) at the output rate.
    async fn write(&mut self, samples: &[i16]) -> Result<(), crate::Error>;
    /// Makes what was written so far durable (called about once a second).
    async fn flush(&mut self) -> Result<(), crate::Error>;
    /// Flushes and closes.
    async fn finish(&mut self) -> Result<(), crate::Error>;
    /// Sees every frame that reaches the sink, before the engine handles it (a transport that
    /// shows live captions reads the transcript fragments here). Default: nothing.
    fn observe(&mut self, frame: &Frame) {
        let _ = frame;
    }
}

struct Queued {
    item: ItemId,
    epoch: u64,
    samples: Samples,
    offset: usize,
    /// Words this audio carries; heard once it has played completely.
    text: Option<std::sync::Arc<str>>,
}

/// Per-turn latency bookkeeping done at the sink, where "first audio" really happens (shared
/// by every sink: the local playout engine and carrier transports).
#[derive(Debug, Default)]
pub struct TurnMetrics {
    /// The current turn number (one per `SpeechStopped`).
    pub turn: u32,
    speech_end_ms: Option<u64>,
    speech_start_ms: Option<u64>,
    measured: bool,
}

impl TurnMetrics {
    /// Notes the caller's speech boundaries as they pass the sink.
    pub fn observe(&mut self, frame: &Frame) {
        match frame {
            Frame::SpeechStarted { at } => self.speech_start_ms = Some(at.as_millis() as u64),
            Frame::SpeechStopped { at } => {
                self.turn += 1;
                self.speech_end_ms = Some(at.as_millis() as u64);
                self.measured = false;
            }
            _ => {}
        }
    }
}

/// Runs the playout loop for one call: the body of every audio sink.
pub async fn run_playout(
    name: &str,
    ctx: CallContext,
    mut input: Inbox,
    rate: SampleRate,
    out: &mut dyn AudioOut,
) -> Result<(), StageError> {
    let fail = |e: crate::Error| StageError::new(name.to_string(), e);
    let mut control = ctx.control.subscribe();
    let mut ticker = tokio::time::interval_at(ctx.clock.start(), Duration::from_millis(CHUNK_MS));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut queue: VecDeque<Queued> = VecDeque::new();
    let mut resampler: Option<StreamResampler> = None;
    let silence = vec![0i16; voxpipe_core::audio::samples_for_ms(rate, 200)];
    let mut written: u64 = 0;
    let mut playing: Option<(ItemId, u64)> = None;
    let mut metrics = TurnMetrics::default();
    let mut end_of_stream = false;
    let mut last_flush = 0u64;
    let mut dry_ms = 0u64;
    let mut producer = Producer::default();

    loop {
        tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => break,
            msg = control.recv() => match msg {
                Ok(Control::Interrupt { onset, .. }) => {
                    queue.clear();
                    // Measured when the caller was hearing the item, not in a pause of it.
                    let audible = dry_ms <= UNDERRUN_GRACE_MS;
                    if let (Some(onset), Some(_), true) = (onset, playing.as_ref(), audible) {
                        // The sink is silent from this tick on: onset -> silence.
                        let value_ms = ctx.clock.now_ms().saturating_sub(onset.as_millis() as u64);
                        ctx.events.emit(EventKind::Metric { name: "interruption_latency_ms".into(), turn: metrics.turn + 1, value_ms }).await;
                    }
                    input.flush_interruptible();
                    if let Some((item, played)) = playing.take() {
                        finished(&ctx, &item, played, rate, true).await;
                    }
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => {}
            },
            frame = input.recv(), if !end_of_stream => match frame.inspect(|f| { out.observe(f); producer.observe(f) }) {
                Some(Frame::OutputAudio(a)) => enqueue(&ctx, &mut queue, &mut resampler, rate, a).map_err(fail)?,
                Some(Frame::ResponseDone(_)) if queue.is_empty() && dry_ms > UNDERRUN_GRACE_MS => {
                    // An item paused for more audio that is not coming: it ended with its last.
                    if let Some((item, played)) = playing.take() {
                        finished(&ctx, &item, played, rate, false).await;
                    }
                }
                Some(f @ (Frame::SpeechStarted { .. } | Frame::SpeechStopped { .. })) => metrics.observe(&f),
                Some(Frame::EndOfStream) | None => end_of_stream = true,
                Some(_) => {}
            },
            _ = ticker.tick() => {
                let due = (ctx.clock.elapsed().as_nanos() * rate as u128 / 1_000_000_000) as u64;
                // Held playout (uncertain caller speech): silence, and the queue keeps its place.
                let held = ctx.playout.is_paused();
                while written < due {
                    let want = (due - written) as usize;
                    let front = if held { None } else { queue.front_mut() };
                    let Some(front) = front else {
                        let n = want.min(silence.len());
                        out.write(&silence[..n]).await.map_err(fail)?;
                        written += n as u64;
                        continue;
                    };
                    let n = want.min(front.samples.len() - front.offset);
                    if !ctx.playout.record_played(&front.item, front.epoch, n, rate) {
                        // Closed epoch: an interruption raced this tick; never play it.
                        queue.clear();
                        continue;
                    }
                    // The same item after a pause goes on: one start and one end per item, and
                    // its played length counts from its first sample.
                    if playing.as_ref().map(|(i, _)| i) != Some(&front.item) {
                        if let Some((item, played)) = playing.take() {
                            finished(&ctx, &item, played, rate, false).await;
                        }
                        playing = Some((front.item.clone(), 0));
                        started(&ctx, &front.item, &mut metrics).await;
                    }
                    // Played straight from the shared buffer: no copy per tick.
                    out.write(&front.samples[front.offset..front.offset + n]).await.map_err(fail)?;
                    written += n as u64;
                    front.offset += n;
                    if front.offset == front.samples.len() {
                        if let Some(words) = &front.text {
                            ctx.playout.record_heard(&front.item, front.epoch, words);
                        }
                        queue.pop_front();
                    }
                    if let Some((_, played)) = playing.as_mut() {
                        *played += n as u64;
                    }
                }
                if queue.is_empty() && !held {
                    // A producer streaming at about real time leaves the queue empty between
                    // chunks: an underrun shorter than the grace is a gap in the same item,
                    // not its end (the caller still hears the assistant mid-sentence).
                    dry_ms += CHUNK_MS;
                    if playing.is_none() || dry_ms > UNDERRUN_GRACE_MS || end_of_stream {
                        // The caller hears nothing now; the item is over unless its response
                        // is still sending audio for it (then this is a pause in it).
                        let paused = playing.as_ref().is_some_and(|(item, _)| producer.may_continue(item));
                        let over = !paused || end_of_stream || dry_ms > ITEM_GAP_MAX_MS;
                        if over && let Some((item, played)) = playing.take() {
                            finished(&ctx, &item, played, rate, false).await;
                        }
                        ctx.playout.set_idle();
                        if end_of_stream {
                            break;
                        }
                    }
                } else {
                    dry_ms = 0;
                }
                if written - last_flush >= rate as u64 {
                    out.flush().await.map_err(fail)?;
                    last_flush = written;
                }
            }
        }
    }
    if let Some((item, played)) = playing.take() {
        finished(&ctx, &item, played, rate, false).await;
    }
    ctx.playout.set_idle();
    out.finish().await.map_err(fail)
}

fn enqueue(
    ctx: &CallContext,
    queue: &mut VecDeque<Queued>,
    resampler: &mut Option<StreamResampler>,
    rate: SampleRate,
    a: OutputAudio,
) -> Result<(), crate::Error> {
    if a.epoch != ctx.playout.epoch() {
        return Ok(()); // produced before an interruption
    }
    let samples = at_rate(resampler, a.chunk, rate)?;
    ctx.playout.set_pending(a.epoch);
    queue.push_back(Queued { item: a.item, epoch: a.epoch, samples, offset: 0, text: a.text });
    Ok(())
}

/// `chunk`'s samples at `rate`: as they are, or through `resampler`, which is kept across the
/// chunks of a stream (and replaced when the input rate changes) so the output stays continuous.
pub fn at_rate(
    resampler: &mut Option<StreamResampler>,
    chunk: voxpipe_core::AudioChunk,
    rate: SampleRate,
) -> Result<Samples, voxpipe_core::audio::ResampleError> {
    if chunk.sample_rate == rate {
        return Ok(chunk.samples);
    }
    let r = match resampler {
        Some(r) if r.from_rate() == chunk.sample_rate => r,
        _ => resampler.insert(StreamResampler::new(chunk.sample_rate, rate)?),
    };
    let mut v = Vec::with_capacity(chunk.samples.len() * rate as usize / chunk.sample_rate as usize + 64);
    r.push(&chunk.samples, &mut v)?;
    Ok(Samples::from_vec(v))
}

/// Logs the start of `item`'s playout and, for the turn's first audio, `voice_to_voice_ms`.
pub async fn started(ctx: &CallContext, item: &ItemId, m: &mut TurnMetrics) {
    ctx.events.emit(EventKind::PlayoutStarted { item: item.to_string() }).await;
    if m.measured {
        return;
    }
    if let Some(end) = m.speech_end_ms {
        let now = ctx.clock.now_ms();
        m.measured = true;
        ctx.events
            .emit(EventKind::Metric {
                name: "voice_to_voice_ms".into(),
                turn: m.turn,
                value_ms: now.saturating_sub(end),
            })
            .await;
    }
}

/// Logs the end of `item`'s playout (`played` samples at `rate`).
pub async fn finished(ctx: &CallContext, item: &ItemId, played: u64, rate: SampleRate, interrupted: bool) {
    let played_ms = voxpipe_core::audio::ms_of(played, rate);
    ctx.events.emit(EventKind::PlayoutFinished { item: item.to_string(), played_ms, interrupted }).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use voxpipe_core::{AudioChunk, InterruptReason, ResponseDone, ResponseStarted, ResponseStatus};

    const RATE: SampleRate = 24_000;

    struct Discard;

    #[async_trait]
    impl AudioOut for Discard {
        async fn write(&mut self, _: &[i16]) -> Result<(), crate::Error> {
            Ok(())
        }
        async fn flush(&mut self) -> Result<(), crate::Error> {
            Ok(())
        }
        async fn finish(&mut self) -> Result<(), crate::Error> {
            Ok(())
        }
    }

    fn audio(ctx: &CallContext, item: &ItemId, ms: u64) -> Frame {
        let samples = Samples::from_vec(vec![1000; voxpipe_core::audio::samples_for_ms(RATE, ms)]);
        let chunk = AudioChunk::new(RATE, ctx.clock.elapsed(), samples);
        Frame::OutputAudio(OutputAudio { item: item.clone(), epoch: ctx.playout.epoch(), chunk, text: None })
    }

    fn started() -> Frame {
        Frame::ResponseStarted(ResponseStarted { response_id: "r".into() })
    }

    fn done() -> Frame {
        let status = ResponseStatus::Completed;
        Frame::ResponseDone(ResponseDone { response_id: "r".into(), status, reason: None, usage: None })
    }

    /// Plays what `script` sends, then returns the events with their times.
    async fn play(script: impl AsyncFnOnce(&CallContext, &voxpipe_core::Outbox)) -> Vec<voxpipe_core::Event> {
        let (ctx, mut events) = CallContext::new(Arc::new(voxpipe_core::NoTools));
        let (tx, rx) = voxpipe_core::channel();
        let sink_ctx = ctx.clone();
        let sink = tokio::spawn(async move { run_playout("test", sink_ctx, rx, RATE, &mut Discard).await });
        script(&ctx, &tx).await;
        tx.send(Frame::EndOfStream).await.unwrap();
        sink.await.unwrap().unwrap();
        drop(ctx);
        let mut out = Vec::new();
        while let Ok(e) = events.try_recv() {
            out.push(e);
        }
        out
    }

    fn starts(events: &[voxpipe_core::Event]) -> usize {
        events.iter().filter(|e| matches!(e.kind, EventKind::PlayoutStarted { .. })).count()
    }

    fn finishes(events: &[voxpipe_core::Event]) -> Vec<(u64, bool)> {
        events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::PlayoutFinished { played_ms, interrupted, .. } => Some((*played_ms, *interrupted)),
                _ => None,
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn an_item_whose_audio_pauses_mid_reply_starts_and_ends_once_with_its_whole_length() {
        let item: ItemId = Arc::from("item_a");
        let events = play(async |ctx, tx| {
            tx.send(started()).await.unwrap();
            tx.send(audio(ctx, &item, 600)).await.unwrap();
            // The next burst comes 900 ms after the first ran out (well past the underrun grace).
            tokio::time::sleep(Duration::from_millis(1500)).await;
            tx.send(audio(ctx, &item, 400)).await.unwrap();
            tx.send(done()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1000)).await;
        })
        .await;
        assert_eq!(starts(&events), 1, "{events:?}");
        assert_eq!(finishes(&events), [(1000, false)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_barge_in_after_a_pause_reports_one_played_length() {
        let item: ItemId = Arc::from("item_a");
        let mut on_interrupt = None;
        let events = play(async |ctx, tx| {
            tx.send(started()).await.unwrap();
            tx.send(audio(ctx, &item, 600)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1500)).await;
            tx.send(audio(ctx, &item, 2000)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
            on_interrupt = ctx.interrupt(InterruptReason::BargeIn, None).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        })
        .await;
        let heard = on_interrupt.expect("the item was playing").played_ms;
        assert_eq!(finishes(&events), [(heard, true)], "the interrupt said {heard} ms: {events:?}");
        assert!(heard.abs_diff(1100) <= 20, "600 ms, then 500 ms of the second burst: {heard}");
        assert_eq!(starts(&events), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_item_is_over_at_the_underrun_once_its_response_is_done() {
        let (a, b): (ItemId, ItemId) = (Arc::from("item_a"), Arc::from("item_b"));
        let events = play(async |ctx, tx| {
            tx.send(started()).await.unwrap();
            tx.send(audio(ctx, &a, 500)).await.unwrap();
            tx.send(done()).await.unwrap();
            // The next response (after a tool call, say) starts while item a still plays.
            tx.send(started()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2000)).await;
            tx.send(audio(ctx, &b, 300)).await.unwrap();
            tx.send(done()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1000)).await;
        })
        .await;
        let finished_a = events.iter().find(|e| matches!(e.kind, EventKind::PlayoutFinished { .. })).unwrap();
        assert!(
            finished_a.t_ms <= 500 + UNDERRUN_GRACE_MS + 40,
            "item a ended with its audio: {finished_a:?}"
        );
        assert_eq!(finishes(&events), [(500, false), (300, false)]);
        assert_eq!(starts(&events), 2);
    }
}
