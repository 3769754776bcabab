//! The process-wide espeak-ng engine: one dedicated thread owns libespeak-ng and serves
//! synthesis and phonemization requests from a bounded queue.
//!
//! espeak-ng's C API keeps its state in globals (current voice, parameters, the synthesis
//! callback) and is not thread-safe, so every call into it happens on the thread named
//! `espeak`, started the first time [`engine`] is called. Async callers send a request and
//! await the answer on a oneshot channel; the runtime never blocks on espeak.

#![allow(unsafe_code)] // FFI into libespeak-ng; every block states its invariant.

use espeakng_sys as sys;
use std::cell::RefCell;
use std::ffi::{CStr, CString, c_int, c_short, c_void};
use std::sync::OnceLock;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, trace};
use voxpipe_core::SampleRate;

/// Requests queued for the espeak thread before senders wait.
const QUEUE_CAPACITY: usize = 8;

/// Lowest and highest speaking rate espeak-ng accepts, words per minute.
pub const RATE_WPM_RANGE: std::ops::RangeInclusive<u32> = 80..=450;
/// Pitch range of espeak-ng (0 to 100, 50 is the voice's normal pitch).
pub const PITCH_RANGE: std::ops::RangeInclusive<u32> = 0..=100;

/// Clause punctuation Piper keeps in its phoneme strings; `true` when it ends a sentence.
const CLAUSE_PUNCTUATION: [(char, bool); 6] =
    [('.', true), ('?', true), ('!', true), (',', false), (':', false), (';', false)];

/// A request to the espeak thread.
enum Job {
    /// Sets the voice, reporting whether espeak-ng knows it.
    CheckVoice { voice: CString, reply: oneshot::Sender<Result<(), String>> },
    /// Speaks `text` and returns PCM16 samples at [`Engine::sample_rate`].
    Synthesize {
        text: CString,
        voice: CString,
        rate_wpm: u32,
        pitch: u32,
        reply: oneshot::Sender<Result<Vec<i16>, String>>,
    },
    /// Converts `text` to IPA, one string per sentence (Piper's convention).
    Phonemize { text: CString, voice: CString, reply: oneshot::Sender<Result<Vec<String>, String>> },
}

/// Handle to the espeak thread.
#[derive(Debug)]
pub(crate) struct Engine {
    jobs: mpsc::Sender<Job>,
    sample_rate: SampleRate,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Job::CheckVoice { .. } => "CheckVoice",
            Job::Synthesize { .. } => "Synthesize",
            Job::Phonemize { .. } => "Phonemize",
        };
        f.write_str(name)
    }
}

static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();

/// The engine, starting the espeak thread on first use (blocks the caller for the few
/// milliseconds espeak-ng needs to load its data, once per process).
///
/// # Errors
/// The reason espeak-ng could not start (e.g. its data directory is missing); the same error
/// is returned on every later call.
pub(crate) fn engine() -> Result<&'static Engine, String> {
    ENGINE.get_or_init(start).as_ref().map_err(Clone::clone)
}

fn start() -> Result<Engine, String> {
    let (jobs, rx) = mpsc::channel(QUEUE_CAPACITY);
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("espeak".into())
        .spawn(move || worker(rx, ready_tx))
        .map_err(|e| format!("cannot start the espeak thread: {e}"))?;
    let sample_rate =
        ready_rx.recv().map_err(|_| "the espeak thread exited during start-up".to_string())??;
    debug!(sample_rate, "espeak-ng initialised");
    Ok(Engine { jobs, sample_rate })
}

impl Engine {
    /// Rate of synthesized samples (22,050 Hz for espeak-ng).
    pub(crate) fn sample_rate(&self) -> SampleRate {
        self.sample_rate
    }

    /// Checks that espeak-ng has `voice`.
    pub(crate) async fn check_voice(&self, voice: &str) -> Result<(), String> {
        let voice = cstring(voice)?;
        self.call(|reply| Job::CheckVoice { voice, reply }).await
    }

    /// Synthesizes `text` with `voice` at `rate_wpm` and `pitch`.
    pub(crate) async fn synthesize(
        &self,
        text: &str,
        voice: &str,
        rate_wpm: u32,
        pitch: u32,
    ) -> Result<Vec<i16>, String> {
        let (text, voice) = (cstring(text)?, cstring(voice)?);
        self.call(|reply| Job::Synthesize { text, voice, rate_wpm, pitch, reply }).await
    }

    /// Converts `text` to IPA phonemes with `voice`, one string per sentence, keeping clause
    /// punctuation (`.`, `?`, `!` end a sentence; `,`, `:`, `;` are followed by a space).
    pub(crate) async fn phonemize(&self, text: &str, voice: &str) -> Result<Vec<String>, String> {
        let (text, voice) = (cstring(text)?, cstring(voice)?);
        self.call(|reply| Job::Phonemize { text, voice, reply }).await
    }

    async fn call<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, String>>) -> Job,
    ) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        self.jobs.send(job(tx)).await.map_err(|_| "the espeak thread has stopped".to_string())?;
        rx.await.map_err(|_| "the espeak thread dropped the request".to_string())?
    }
}

/// Text for C: NUL bytes (never meaningful in speech) become spaces.
fn cstring(s: &str) -> Result<CString, String> {
    CString::new(s.replace('\0', " ")).map_err(|e| e.to_string())
}

thread_local! {
    /// Samples the synthesis callback collects (only ever used on the espeak thread).
    static SINK: RefCell<Vec<i16>> = const { RefCell::new(Vec::new()) };
}

/// espeak-ng's synthesis callback: appends each block of samples to [`SINK`].
unsafe extern "C" fn on_samples(wav: *mut c_short, count: c_int, _events: *mut sys::espeak_EVENT) -> c_int {
    if !wav.is_null() && count > 0 {
        // SAFETY: espeak-ng passes a buffer of `count` valid samples, alive for this call.
        let block = unsafe { std::slice::from_raw_parts(wav, count as usize) };
        SINK.with(|s| s.borrow_mut().extend_from_slice(block));
    }
    0 // go on synthesizing
}

/// The espeak thread: initialises the library, then serves jobs until every sender is gone.
fn worker(mut jobs: mpsc::Receiver<Job>, ready: std::sync::mpsc::SyncSender<Result<SampleRate, String>>) {
    // SAFETY: called once, on this thread, before any other espeak call; a null path means the
    // default data directory. Synchronous mode makes espeak_Synth return only when done.
    let rate = unsafe {
        sys::espeak_Initialize(sys::espeak_AUDIO_OUTPUT_AUDIO_OUTPUT_SYNCHRONOUS, 0, std::ptr::null(), 0)
    };
    if rate <= 0 {
        let _ = ready.send(Err(format!(
            "espeak_Initialize failed ({rate}): is the espeak-ng-data package installed?"
        )));
        return;
    }
    // SAFETY: the callback is a plain function valid for the whole process.
    unsafe { sys::espeak_SetSynthCallback(Some(on_samples)) };
    let _ = ready.send(Ok(rate as SampleRate));
    while let Some(job) = jobs.blocking_recv() {
        trace!(?job, "espeak job");
        match job {
            Job::CheckVoice { voice, reply } => {
                let _ = reply.send(set_voice(&voice));
            }
            Job::Synthesize { text, voice, rate_wpm, pitch, reply } => {
                let _ = reply.send(set_voice(&voice).and_then(|()| synthesize(&text, rate_wpm, pitch)));
            }
            Job::Phonemize { text, voice, reply } => {
                let _ = reply.send(set_voice(&voice).map(|()| phonemize(&text)));
            }
        }
    }
}

fn set_voice(voice: &CStr) -> Result<(), String> {
    // SAFETY: espeak thread; `voice` is a valid NUL-terminated string for the call.
    let err = unsafe { sys::espeak_SetVoiceByName(voice.as_ptr()) };
    if err == sys::espeak_ERROR_EE_OK {
        Ok(())
    } else {
        Err(format!("espeak-ng has no voice {voice:?} (error {err}); `espeak-ng --voices` lists them"))
    }
}

fn synthesize(text: &CStr, rate_wpm: u32, pitch: u32) -> Result<Vec<i16>, String> {
    // SAFETY (all three calls): espeak thread, initialised; plain values and a valid string
    // that outlives espeak_Synth (synchronous mode: it returns when synthesis is done).
    unsafe {
        sys::espeak_SetParameter(sys::espeak_PARAMETER_espeakRATE, rate_wpm as c_int, 0);
        sys::espeak_SetParameter(sys::espeak_PARAMETER_espeakPITCH, pitch as c_int, 0);
    }
    SINK.with(|s| s.borrow_mut().clear());
    let bytes = text.to_bytes_with_nul();
    let err = unsafe {
        sys::espeak_Synth(
            bytes.as_ptr().cast::<c_void>(),
            bytes.len(),
            0,
            sys::espeak_POSITION_TYPE_POS_CHARACTER,
            0,
            sys::espeakCHARS_UTF8,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    let samples = SINK.with(|s| std::mem::take(&mut *s.borrow_mut()));
    if err == sys::espeak_ERROR_EE_OK {
        Ok(samples)
    } else {
        Err(format!("espeak_Synth failed (error {err})"))
    }
}

/// Piper's phonemization: `espeak_TextToPhonemes` in IPA mode, one clause per call.
///
/// espeak-ng 1.51 does not report the clause terminator (1.52's
/// `espeak_TextToPhonemesWithTerminator` does), so it is read from the consumed text: the
/// last punctuation mark before the pointer, once the start of the next clause (which 1.51
/// already steps into) and white space are stripped.
fn phonemize(text: &CStr) -> Vec<String> {
    let bytes = text.to_bytes_with_nul();
    let base = bytes.as_ptr();
    let mut ptr: *const c_void = base.cast();
    let mut sentences = Vec::new();
    let mut current = String::new();
    while !ptr.is_null() {
        let before = (ptr as usize) - (base as usize);
        // SAFETY: espeak thread; `ptr` points into `bytes` (NUL-terminated, alive for the loop);
        // espeak advances it within the text or sets it to null at the end. The returned
        // string is espeak's static buffer, copied before the next call.
        let phonemes = unsafe {
            let out = sys::espeak_TextToPhonemes(
                &mut ptr,
                sys::espeakCHARS_UTF8 as c_int,
                sys::espeakPHONEMES_IPA as c_int,
            );
            if out.is_null() { String::new() } else { CStr::from_ptr(out).to_string_lossy().into_owned() }
        };
        let after = if ptr.is_null() { bytes.len() - 1 } else { (ptr as usize) - (base as usize) };
        let consumed = String::from_utf8_lossy(&bytes[before.min(after)..after]);
        current.push_str(phonemes.trim());
        match clause_terminator(&consumed, !ptr.is_null()) {
            Some((mark, true)) => {
                current.push(mark);
                sentences.push(std::mem::take(&mut current));
            }
            Some((mark, false)) => {
                current.push(mark);
                current.push(' ');
            }
            None if !current.is_empty() && !current.ends_with(' ') => current.push(' '),
            None => {}
        }
    }
    let rest = current.trim_end();
    if !rest.is_empty() {
        sentences.push(rest.to_string());
    }
    sentences
}

/// The punctuation ending the clause espeak just consumed, and whether it ends a sentence.
/// `more` is true when text follows (the consumed span then ends inside the next clause).
fn clause_terminator(consumed: &str, more: bool) -> Option<(char, bool)> {
    let mut s = consumed;
    if more {
        s = s.trim_end_matches(|c: char| c.is_alphanumeric());
    }
    let last = s.trim_end().chars().next_back()?;
    CLAUSE_PUNCTUATION.iter().copied().find(|&(c, _)| c == last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminators_are_read_from_the_consumed_text() {
        assert_eq!(clause_terminator("Hello, t", true), Some((',', false)));
        assert_eq!(clause_terminator("his is a test of the Piper voice. H", true), Some(('.', true)));
        assert_eq!(clause_terminator("ine!  G", true), Some(('!', true)));
        assert_eq!(clause_terminator("ow are you? F", true), Some(('?', true)));
        assert_eq!(clause_terminator("o.", false), Some(('.', true)));
        assert_eq!(clause_terminator("mith paid $5.50 at 7:30 today", false), None);
    }
}
