//! Fuzz target (proptest, on stable): the WAV reader (hound for PCM and float, the RIFF walk
//! for G.711). Under `cargo test` it runs a few hundred cases; `scripts/fuzz.sh` runs it for
//! minutes.
//!
//! Property: any file reads to samples or a typed error naming the file, never a panic; a
//! successful read yields no more samples than the file's bytes can hold (times the resampling
//! ratio).

#[path = "../../voxpipe-llm/tests/fuzz_support/mod.rs"]
mod fuzz_support;

use fuzz_support::fuzz;
use proptest::prelude::*;
use voxpipe_transport::wav::read_wav_channel;

/// The fields of a `fmt ` chunk, favouring the values readers trip on.
#[derive(Debug, Clone)]
struct Fmt {
    tag: u16,
    channels: u16,
    rate: u32,
    bits: u16,
    block_align: u16,
    /// Bytes of the chunk (16 is the minimum; 40 with the extensible sub-format).
    size: u32,
    sub_tag: u16,
}

fn fmt() -> impl Strategy<Value = Fmt> {
    (
        prop_oneof![Just(1u16), Just(3), Just(6), Just(7), Just(0xFFFE), Just(2), any::<u16>()],
        prop_oneof![Just(1u16), Just(2), Just(0), Just(u16::MAX), any::<u16>()],
        prop_oneof![Just(8000u32), Just(16_000), Just(0), Just(1), Just(u32::MAX), any::<u32>()],
        prop_oneof![Just(16u16), Just(8), Just(24), Just(32), Just(0), Just(12), any::<u16>()],
        prop_oneof![Just(2u16), Just(1), Just(0), any::<u16>()],
        prop_oneof![Just(16u32), Just(18), Just(40), Just(0), Just(15), Just(u32::MAX)],
        prop_oneof![Just(1u16), Just(3), Just(7), any::<u16>()],
    )
        .prop_map(|(tag, channels, rate, bits, block_align, size, sub_tag)| Fmt {
            tag,
            channels,
            rate,
            bits,
            block_align,
            size,
            sub_tag,
        })
}

/// A RIFF/WAVE file from its parts: the fmt chunk, an optional chunk before it, the data chunk
/// with a declared size that may lie, and a RIFF size that may lie too.
fn wav() -> impl Strategy<Value = Vec<u8>> {
    (
        fmt(),
        proptest::collection::vec(any::<u8>(), 0..256),
        prop_oneof![Just(None), any::<u32>().prop_map(Some), Just(Some(u32::MAX)), Just(Some(0))],
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(None), any::<u32>().prop_map(Some)],
    )
        .prop_map(|(f, data, declared, extra_chunk, data_first, riff_size)| {
            let mut fmt = Vec::new();
            fmt.extend(f.tag.to_le_bytes());
            fmt.extend(f.channels.to_le_bytes());
            fmt.extend(f.rate.to_le_bytes());
            fmt.extend(f.rate.wrapping_mul(f.block_align as u32).to_le_bytes());
            fmt.extend(f.block_align.to_le_bytes());
            fmt.extend(f.bits.to_le_bytes());
            fmt.extend(22u16.to_le_bytes());
            fmt.extend(f.bits.to_le_bytes());
            fmt.extend(3u32.to_le_bytes());
            fmt.extend(f.sub_tag.to_le_bytes());
            fmt.extend([0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71]);
            fmt.truncate((f.size as usize).min(fmt.len()));
            let chunk = |id: &[u8], size: u32, body: &[u8]| {
                let mut c = id.to_vec();
                c.extend(size.to_le_bytes());
                c.extend(body);
                c
            };
            let fmt_chunk = chunk(b"fmt ", f.size, &fmt);
            let data_chunk = chunk(b"data", declared.unwrap_or(data.len() as u32), &data);
            let mut body = b"WAVE".to_vec();
            if extra_chunk {
                body.extend(chunk(b"LIST", 5, b"odd\0\0\0"));
            }
            if data_first {
                body.extend(&data_chunk);
                body.extend(&fmt_chunk);
            } else {
                body.extend(&fmt_chunk);
                body.extend(&data_chunk);
            }
            let mut out = b"RIFF".to_vec();
            out.extend(riff_size.unwrap_or(body.len() as u32).to_le_bytes());
            out.extend(body);
            out
        })
}

#[test]
fn fuzz_wav_reader() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("call.wav");
    let file = prop_oneof![
        6 => wav(),
        1 => (wav(), 0.0..1.0f64).prop_map(|(w, f)| w[..(w.len() as f64 * f) as usize].to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..128),
    ];
    let channel = prop_oneof![Just(None), Just(Some(0u16)), Just(Some(1)), any::<u16>().prop_map(Some)];
    let target = prop_oneof![3 => Just(None), 1 => Just(Some(16_000u32)), 1 => Just(Some(8000))];
    fuzz("wav_reader", 512, (file, channel, target), |(bytes, channel, target)| {
        std::fs::write(&path, &bytes).unwrap();
        match read_wav_channel(&path, channel, target) {
            Ok((samples, rate)) => {
                prop_assert!(rate > 0);
                if let Some(t) = target {
                    prop_assert_eq!(rate, t);
                } else {
                    // At least one byte per sample of every channel, in a file this long.
                    prop_assert!(
                        samples.len() <= bytes.len(),
                        "{} samples from {} bytes",
                        samples.len(),
                        bytes.len()
                    );
                }
            }
            Err(e) => prop_assert!(e.to_string().contains("call.wav"), "{e}"),
        }
        Ok(())
    });
}

/// `fuzz_wav_reader` (the 60 s run, killed by the OOM killer at 23 GB): a header declaring a
/// sample rate near `u32::MAX`, read with a target rate, made the FFT resampler allocate tens
/// of gigabytes. Such rates are now a `BadWav` error naming the rate.
#[test]
fn wav_sample_rate_near_u32_max_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("call.wav");
    // (format tag, bits, rate): G.711 through the RIFF walk, PCM through hound (whose check of
    // the byte rate limits it to rates whose byte rate fits in 32 bits).
    let max = voxpipe_transport::wav::MAX_SAMPLE_RATE;
    for (tag, bits, rate) in
        [(7u16, 8u16, max + 1), (1, 16, max + 1), (7, 8, u32::MAX), (1, 16, 2_000_000_000)]
    {
        let align = bits / 8;
        // hound's writer cannot write such a header (its byte rate overflows): by hand.
        let mut f = b"RIFF".to_vec();
        f.extend(236u32.to_le_bytes());
        f.extend(b"WAVEfmt ");
        f.extend(16u32.to_le_bytes());
        f.extend(tag.to_le_bytes());
        f.extend(1u16.to_le_bytes());
        f.extend(rate.to_le_bytes());
        f.extend(rate.wrapping_mul(align as u32).to_le_bytes());
        f.extend(align.to_le_bytes());
        f.extend(bits.to_le_bytes());
        f.extend(b"data");
        f.extend(200u32.to_le_bytes());
        f.extend([0u8; 200]);
        std::fs::write(&path, f).unwrap();
        let err = read_wav_channel(&path, None, Some(16_000)).unwrap_err().to_string();
        assert!(err.contains(&format!("sample rate {rate} Hz")), "{err}");
    }
}
