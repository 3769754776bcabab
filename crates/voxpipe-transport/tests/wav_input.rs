//! The WAV source reads any common PCM WAV and rejects broken ones with a clear error.

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

#[test]
fn an_unsupported_format_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // A RIFF/WAVE file with format tag 85 (MP3), which voxpipe does not decode.
    let p = dir.path().join("mp3.wav");
    let mut f = std::fs::File::create(&p).unwrap();
    let mut fmt = Vec::new();
    fmt.extend_from_slice(&85u16.to_le_bytes()); // format tag
    fmt.extend_from_slice(&1u16.to_le_bytes()); // channels
    fmt.extend_from_slice(&16_000u32.to_le_bytes());
    fmt.extend_from_slice(&2_000u32.to_le_bytes());
    fmt.extend_from_slice(&1u16.to_le_bytes());
    fmt.extend_from_slice(&0u16.to_le_bytes());
    let data = [0u8; 100];
    let riff_len = 4 + 8 + fmt.len() + 8 + data.len();
    f.write_all(b"RIFF").unwrap();
    f.write_all(&(riff_len as u32).to_le_bytes()).unwrap();
    f.write_all(b"WAVEfmt ").unwrap();
    f.write_all(&(fmt.len() as u32).to_le_bytes()).unwrap();
    f.write_all(&fmt).unwrap();
    f.write_all(b"data").unwrap();
    f.write_all(&(data.len() as u32).to_le_bytes()).unwrap();
    f.write_all(&data).unwrap();
    drop(f);
    let e = read_wav(&p, None).unwrap_err();
    assert!(matches!(e, Error::BadWav { .. }), "{e}");
    assert!(e.to_string().contains("unsupported or malformed WAV"), "{e}");
    // Not a WAV at all.
    std::fs::write(&p, b"hello world, not audio").unwrap();
    assert!(matches!(read_wav(&p, None).unwrap_err(), Error::BadWav { .. }));
}

#[test]
fn a_missing_file_names_the_path() {
    let e = read_wav(std::path::Path::new("/nonexistent/call.wav"), None).unwrap_err().to_string();
    assert!(e.starts_with("cannot read /nonexistent/call.wav"), "{e}");
}
