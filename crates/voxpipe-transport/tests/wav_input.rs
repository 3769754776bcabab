//! The WAV source reads any common PCM WAV and G.711 call recordings (one channel or the mix),
//! and rejects broken ones with a clear error.

use std::io::Write;
use voxpipe_transport::Error;
use voxpipe_transport::wav::read_wav;

fn write(
    path: &std::path::Path,
    spec: hound::WavSpec,
    f: impl Fn(&mut hound::WavWriter<std::io::BufWriter<std::fs::File>>),
) {
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    f(&mut w);
    w.finalize().unwrap();
}

#[test]
fn stereo_24_bit_48k_is_mixed_down_and_resampled() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 24,
        sample_format: hound::SampleFormat::Int,
    };
    write(&p, spec, |w| {
        for i in 0..48_000 {
            let v = ((i as f32 * 0.05).sin() * 4_000_000.0) as i32;
            w.write_sample(v).unwrap();
            w.write_sample(v).unwrap();
        }
    });
    let (samples, rate) = read_wav(&p, Some(16_000)).unwrap();
    assert_eq!(rate, 16_000);
    assert!(samples.len().abs_diff(16_000) <= 2);
    let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap();
    assert!((14_000..=16_500).contains(&peak), "24-bit scaled to 16-bit: {peak}");
}

#[test]
fn float_and_8_bit_files_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 22_050,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    write(&p, spec, |w| (0..2205).for_each(|_| w.write_sample(0.5f32).unwrap()));
    let (s, rate) = read_wav(&p, None).unwrap();
    assert_eq!((s.len(), rate, s[0]), (2205, 22_050, 16_384));
    let p8 = dir.path().join("b.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8_000,
        bits_per_sample: 8,
        sample_format: hound::SampleFormat::Int,
    };
    write(&p8, spec, |w| (0..800).for_each(|_| w.write_sample(64i8).unwrap()));
    let (s, _) = read_wav(&p8, None).unwrap();
    assert_eq!(s[0], 64 << 8);
}

#[test]
fn a_truncated_wav_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    write(&p, spec, |w| (0..16_000).for_each(|_| w.write_sample(100i16).unwrap()));
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = read_wav(&p, None).unwrap_err();
    assert!(matches!(e, Error::TruncatedWav { declared: 16_000, .. }), "{e}");
    assert!(e.to_string().contains("truncated WAV"), "{e}");
}

/// A RIFF/WAVE file in a format hound does not write: `tag`, 8 bits per sample.
fn coded_wav(path: &std::path::Path, tag: u16, channels: u16, rate: u32, data: &[u8]) {
    let mut fmt = Vec::new();
    fmt.extend_from_slice(&tag.to_le_bytes());
    fmt.extend_from_slice(&channels.to_le_bytes());
    fmt.extend_from_slice(&rate.to_le_bytes());
    fmt.extend_from_slice(&(rate * channels as u32).to_le_bytes()); // bytes per second
    fmt.extend_from_slice(&channels.to_le_bytes()); // block align
    fmt.extend_from_slice(&8u16.to_le_bytes()); // bits per sample
    fmt.extend_from_slice(&0u16.to_le_bytes()); // no extension
    let mut f = std::fs::File::create(path).unwrap();
    let riff_len = 4 + 8 + fmt.len() + 8 + data.len();
    f.write_all(b"RIFF").unwrap();
    f.write_all(&(riff_len as u32).to_le_bytes()).unwrap();
    f.write_all(b"WAVEfmt ").unwrap();
    f.write_all(&(fmt.len() as u32).to_le_bytes()).unwrap();
    f.write_all(&fmt).unwrap();
    f.write_all(b"data").unwrap();
    f.write_all(&(data.len() as u32).to_le_bytes()).unwrap();
    f.write_all(data).unwrap();
}

fn tone(freq: f32, amp: f32, n: usize, rate: f32) -> Vec<i16> {
    (0..n).map(|i| ((i as f32 * freq * std::f32::consts::TAU / rate).sin() * amp) as i16).collect()
}

fn peak(s: &[i16]) -> u16 {
    s.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0)
}

#[test]
fn a_stereo_mu_law_call_recording_gives_the_channel_asked_for() {
    use voxpipe_core::audio::g711::encode_ulaw;
    use voxpipe_transport::wav::read_wav_channel;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("call.wav");
    // A contact-centre recording: the caller on the left, the agent (louder) on the right.
    let caller = tone(440.0, 4000.0, 8000, 8000.0);
    let agent = tone(1000.0, 12_000.0, 8000, 8000.0);
    let interleaved: Vec<i16> = caller.iter().zip(&agent).flat_map(|(&c, &a)| [c, a]).collect();
    let mut coded = Vec::new();
    encode_ulaw(&interleaved, &mut coded);
    coded_wav(&p, 7, 2, 8000, &coded);

    let (left, rate) = read_wav_channel(&p, Some(0), None).unwrap();
    assert_eq!((left.len(), rate), (8000, 8000));
    // μ-law keeps about 12 bits of precision at these levels.
    let err = left.iter().zip(&caller).map(|(a, b)| (a - b).unsigned_abs()).max().unwrap();
    assert!(err <= 130, "caller decoded within μ-law's step: max error {err}");
    let (right, _) = read_wav_channel(&p, Some(1), None).unwrap();
    assert!((11_500..=12_300).contains(&peak(&right)), "the agent's side: {}", peak(&right));
    let (mixed, _) = read_wav(&p, None).unwrap();
    assert!(peak(&mixed) > peak(&left) && peak(&mixed) < peak(&right), "the mix is the mean");

    // Resampled for a 16 kHz ASR like any other input.
    let (up, rate) = read_wav_channel(&p, Some(0), Some(16_000)).unwrap();
    assert_eq!(rate, 16_000);
    assert!(up.len().abs_diff(16_000) <= 2 && (3_800..=4_200).contains(&peak(&up)), "{}", peak(&up));

    let e = read_wav_channel(&p, Some(2), None).unwrap_err().to_string();
    assert!(
        e.contains("call.wav: channel 2 asked for, but the file has 2 channel(s) (channels count from 0)"),
        "{e}"
    );
}

#[test]
fn an_a_law_recording_is_read_and_a_short_one_is_a_truncation() {
    use voxpipe_core::audio::g711::encode_alaw;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("alaw.wav");
    let voice = tone(300.0, 9000.0, 4000, 8000.0);
    let mut coded = Vec::new();
    encode_alaw(&voice, &mut coded);
    coded_wav(&p, 6, 1, 8000, &coded);
    let (s, rate) = read_wav(&p, None).unwrap();
    assert_eq!((s.len(), rate), (4000, 8000));
    let err = s.iter().zip(&voice).map(|(a, b)| (a - b).unsigned_abs()).max().unwrap();
    assert!(err <= 300, "max error {err}");

    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 1000]).unwrap();
    let e = read_wav(&p, None).unwrap_err();
    assert!(matches!(e, Error::TruncatedWav { declared: 4000, found: 3000, .. }), "{e}");

    // A header claiming 4 GB of data is reported, not believed (no 4 GB buffer).
    let mut bytes = std::fs::read(&p).unwrap();
    let at = bytes.len() - 3000 - 4;
    bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&p, &bytes).unwrap();
    let e = read_wav(&p, None).unwrap_err();
    assert!(matches!(e, Error::TruncatedWav { declared: 4_294_967_295, found: 3000, .. }), "{e}");
}

#[test]
fn an_unsupported_format_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // Format tag 0x55 (MP3) and 0x31 (GSM 6.10, common in old call recorders): not decoded.
    let p = dir.path().join("mp3.wav");
    coded_wav(&p, 0x55, 1, 16_000, &[0u8; 100]);
    let e = read_wav(&p, None).unwrap_err();
    assert!(matches!(e, Error::BadWav { .. }), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("unsupported or malformed WAV (format tag 0x0055 (MPEG layer 3) is not supported"),
        "{e}"
    );
    coded_wav(&p, 0x31, 1, 8_000, &[0u8; 100]);
    let text = read_wav(&p, None).unwrap_err().to_string();
    assert!(text.contains("(GSM 6.10)") && text.contains("sox"), "says how to convert: {text}");
    // Not a WAV at all.
    std::fs::write(&p, b"hello world, not audio").unwrap();
    assert!(matches!(read_wav(&p, None).unwrap_err(), Error::BadWav { .. }));
}

#[test]
fn a_missing_file_names_the_path() {
    let e = read_wav(std::path::Path::new("/nonexistent/call.wav"), None).unwrap_err().to_string();
    assert!(e.starts_with("cannot read /nonexistent/call.wav"), "{e}");
}

#[test]
fn sox_s_mu_law_and_a_law_files_decode_exactly_as_sox_decodes_them() {
    use voxpipe_transport::wav::read_wav_channel;
    let dir = tempfile::tempdir().unwrap();
    let sox = |args: &[&str]| {
        let out = std::process::Command::new("sox")
            .current_dir(dir.path())
            .args(args)
            .output()
            .expect("sox (scripts/setup.sh installs it)");
        assert!(out.status.success(), "sox {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    // sox writes a `fact` chunk between fmt and data, as recorders do.
    sox(&[
        "-n", "-r", "8000", "-c", "2", "-e", "u-law", "mu.wav", "synth", "0.5", "sine", "440", "sine", "1000",
    ]);
    sox(&["mu.wav", "-e", "signed-integer", "-b", "16", "mu-pcm.wav"]);
    sox(&["-n", "-r", "8000", "-c", "1", "-e", "a-law", "a.wav", "synth", "0.3", "sine", "300"]);
    sox(&["a.wav", "-e", "signed-integer", "-b", "16", "a-pcm.wav"]);
    for (coded, pcm, channels) in [("mu.wav", "mu-pcm.wav", 2), ("a.wav", "a-pcm.wav", 1)] {
        for c in 0..channels {
            let ours = read_wav_channel(&dir.path().join(coded), Some(c), None).unwrap();
            let sox_s = read_wav_channel(&dir.path().join(pcm), Some(c), None).unwrap();
            assert_eq!(ours.1, 8000);
            assert!(ours.0 == sox_s.0, "{coded} channel {c} differs from sox's decoding");
        }
    }
}
