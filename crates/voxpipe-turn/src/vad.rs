//! Voice activity detection: a speech probability per fixed-size frame.

/// A frame-level voice activity detector.
///
/// Implementations take frames of exactly [`Vad::frame_samples`] mono PCM16 samples at
/// [`Vad::sample_rate`] (8 or 16 kHz; callers resample) and return the probability that the
/// frame is speech. Smoothing over time (minimum speech and silence durations) is the caller's
/// job, so every VAD is judged by the same rules.
pub trait Vad: Send {
    /// Input rate: 8000 or 16000.
    fn sample_rate(&self) -> u32;
    /// Samples per frame.
    fn frame_samples(&self) -> usize;
    /// Speech probability of one frame, 0..=1.
    ///
    /// # Errors
    /// A model failure; the controller reports it and falls back to the energy VAD.
    fn process(&mut self, frame: &[i16]) -> Result<f32, VadError>;
    /// Forgets all state (between calls).
    fn reset(&mut self);
}

/// The VAD of one call, as the turn controller runs it: a synchronous [`Vad`] of its own, or
/// a stream of the process's shared Silero engine (awaited, run in batches off the async
/// threads).
pub enum CallVad {
    /// A VAD run inline (the energy VAD, a test double).
    Own(Box<dyn Vad>),
    /// One stream of the shared Silero engine.
    #[cfg(feature = "silero")]
    Shared(crate::silero_shared::SileroStream),
}

impl CallVad {
    /// Input rate.
    pub fn sample_rate(&self) -> u32 {
        match self {
            CallVad::Own(v) => v.sample_rate(),
            #[cfg(feature = "silero")]
            CallVad::Shared(s) => s.sample_rate(),
        }
    }

    /// Samples per frame.
    pub fn frame_samples(&self) -> usize {
        match self {
            CallVad::Own(v) => v.frame_samples(),
            #[cfg(feature = "silero")]
            CallVad::Shared(s) => s.frame_samples(),
        }
    }

    /// Speech probability of one frame.
    ///
    /// # Errors
    /// As the VAD's.
    pub async fn process(&mut self, frame: &[i16]) -> Result<f32, VadError> {
        match self {
            CallVad::Own(v) => v.process(frame),
            #[cfg(feature = "silero")]
            CallVad::Shared(s) => s.process(frame).await,
        }
    }
}

impl std::fmt::Debug for CallVad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallVad::Own(v) => write!(f, "CallVad::Own({} Hz)", v.sample_rate()),
            #[cfg(feature = "silero")]
            CallVad::Shared(s) => write!(f, "CallVad::Shared({s:?})"),
        }
    }
}

impl<V: Vad + 'static> From<Box<V>> for CallVad {
    fn from(v: Box<V>) -> Self {
        CallVad::Own(v)
    }
}

impl From<Box<dyn Vad>> for CallVad {
    fn from(v: Box<dyn Vad>) -> Self {
        CallVad::Own(v)
    }
}

/// A VAD could not run.
#[derive(Debug, thiserror::Error)]
pub enum VadError {
    /// The model could not be loaded.
    #[error("cannot load the VAD model: {0}")]
    Load(String),
    /// Inference failed.
    #[error("VAD inference failed: {0}")]
    Inference(String),
}

/// A model-free VAD: frame energy against an adaptive noise floor, mapped to a probability.
///
/// Cheap (one pass over 20 ms) and good enough for clean audio; noise bursts and music fool
/// it, which is what Silero is for.
#[derive(Debug, Clone)]
pub struct EnergyVad {
    rate: u32,
    frame: usize,
    /// Tracked noise floor in dBFS.
    floor_db: f32,
    /// Level above the floor (dB) that maps to probability 0.5.
    margin_db: f32,
    /// Absolute level (dBFS) below which nothing is speech.
    min_db: f32,
}

impl EnergyVad {
    /// An energy VAD at `rate` (8000 or 16000) with 20 ms frames.
    pub fn new(rate: u32) -> Self {
        Self { rate, frame: (rate / 50) as usize, floor_db: -70.0, margin_db: 15.0, min_db: -50.0 }
    }
}

impl Vad for EnergyVad {
    fn sample_rate(&self) -> u32 {
        self.rate
    }

    fn frame_samples(&self) -> usize {
        self.frame
    }

    fn process(&mut self, frame: &[i16]) -> Result<f32, VadError> {
        let db = voxpipe_core::audio::rms_dbfs(frame);
        // The floor follows quiet frames quickly and loud frames very slowly.
        let alpha = if db < self.floor_db { 0.3 } else { 0.005 };
        self.floor_db += alpha * (db - self.floor_db);
        self.floor_db = self.floor_db.clamp(-90.0, -35.0);
        if db < self.min_db {
            return Ok(0.0);
        }
        let over = db - self.floor_db - self.margin_db;
        Ok(1.0 / (1.0 + (-over / 3.0).exp()))
    }

    fn reset(&mut self) {
        self.floor_db = -70.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_not_speech_and_a_tone_is() {
        let mut v = EnergyVad::new(16_000);
        let silence = vec![0i16; 320];
        for _ in 0..10 {
            assert!(v.process(&silence).unwrap() < 0.1);
        }
        let tone: Vec<i16> = (0..320).map(|i| ((i as f32 * 0.12).sin() * 8000.0) as i16).collect();
        assert!(v.process(&tone).unwrap() > 0.9);
        let hiss: Vec<i16> = (0..320).map(|i| if i % 2 == 0 { 20 } else { -20 }).collect();
        assert!(v.process(&hiss).unwrap() < 0.1, "a −64 dBFS hiss is not speech");
    }
}
