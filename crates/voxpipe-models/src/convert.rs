//! CTranslate2 whisper `model.bin` → whisper.cpp ggml, following the layout of whisper.cpp's
//! `models/convert-pt-to-ggml.py`:
//!
//! 1. `u32` magic `0x67676d6c`, then eleven `i32` hparams: n_vocab, n_audio_ctx,
//!    n_audio_state, n_audio_head, n_audio_layer, n_text_ctx, n_text_state, n_text_head,
//!    n_text_layer, n_mels, ftype (1 = f16; 2007 = q8_0 weights, quantisation version 2).
//! 2. Mel filters: `i32` n_mel, `i32` n_fft bins, then n_mel × bins `f32`.
//! 3. Vocabulary: `i32` count, then per token `i32` length and the token's bytes.
//! 4. Tensors: `i32` n_dims, `i32` name length, `i32` type (0 f32, 1 f16, 8 q8_0), dims
//!    innermost first, the name, the data. Weights are f16; biases, norms, conv biases (as
//!    `[n, 1]`) and positional embeddings are f32, as the reference converter writes them.
//!    With [`Weights::Q8_0`] the 2-D weight matrices are q8_0 instead, as whisper.cpp's
//!    `quantize` tool writes them: blocks of 32 values along a row, each an f16 scale and 32
//!    `i8`s (the convolution kernels stay f16).

use crate::ct2::{Ct2Model, DType, Variable};
use crate::error::{Error, Result};
use crate::mel;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Bumped when the converter's output changes, so cached conversions are redone.
pub const CONVERTER_VERSION: &str = "ct2-ggml-1";

const GGML_MAGIC: u32 = 0x6767_6d6c;

/// ggml tensor type ids.
const TYPE_F32: i32 = 0;
const TYPE_F16: i32 = 1;
const TYPE_Q8_0: i32 = 8;
/// Values per q8_0 block, and its size in bytes (f16 scale + 32 `i8`).
const Q8_0_BLOCK: usize = 32;
const Q8_0_BYTES: usize = 34;

/// How the weight matrices are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Weights {
    /// Half precision, like the reference converter.
    #[default]
    F16,
    /// 8-bit blocks (ggml q8_0): half the size, and a faster decode on a CPU (whisper.cpp
    /// multiplies them with integer dot products).
    Q8_0,
}

impl Weights {
    /// The header's `ftype`: ggml's `GGML_FTYPE_MOSTLY_Q8_0` (7) carries the quantisation
    /// version (2) × 1000, as whisper.cpp's `quantize` writes it.
    fn ftype(self) -> i32 {
        match self {
            Weights::F16 => 1,
            Weights::Q8_0 => 2 * 1000 + 7,
        }
    }
}

/// whisper.cpp model hyper-parameters, as stored in the ggml header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hparams {
    /// Vocabulary size (rows of the token embedding).
    pub n_vocab: i32,
    /// Encoder positions (1500 for 30 s).
    pub n_audio_ctx: i32,
    /// Encoder width.
    pub n_audio_state: i32,
    /// Encoder attention heads.
    pub n_audio_head: i32,
    /// Encoder layers.
    pub n_audio_layer: i32,
    /// Decoder positions (448).
    pub n_text_ctx: i32,
    /// Decoder width.
    pub n_text_state: i32,
    /// Decoder attention heads.
    pub n_text_head: i32,
    /// Decoder layers.
    pub n_text_layer: i32,
    /// Mel bands.
    pub n_mels: i32,
    /// 1 = f16 weights, 2007 = q8_0.
    pub ftype: i32,
}

/// What a conversion wrote (read back from the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgmlSummary {
    /// The header.
    pub hparams: Hparams,
    /// Vocabulary tokens stored.
    pub n_tokens: usize,
    /// Tensors stored.
    pub n_tensors: usize,
    /// File size in bytes.
    pub file_bytes: u64,
}

struct OutTensor {
    name: String,
    /// Shape outermost first.
    shape: Vec<usize>,
    /// `TYPE_F32`, `TYPE_F16` or `TYPE_Q8_0`.
    ttype: i32,
    src_dtype: DType,
    data: Vec<u8>,
}

/// Converts the CTranslate2 whisper model in `ct2_dir` (`model.bin`, `vocabulary.txt`) to a
/// ggml file at `out_path` with `weights`, written atomically and verified by reading it back.
///
/// # Errors
/// [`Error::Ct2`] if the model is not a float CTranslate2 v6 whisper model, [`Error::Verify`]
/// if the output does not read back, [`Error::Io`] on file errors.
pub fn convert_ct2_to_ggml(ct2_dir: &Path, out_path: &Path, weights: Weights) -> Result<GgmlSummary> {
    let model_path = ct2_dir.join("model.bin");
    let bytes = std::fs::read(&model_path).map_err(Error::io("read CTranslate2 model", &model_path))?;
    let ct2_err = |reason: String| Error::Ct2 { reason, path: model_path.clone() };
    let model = Ct2Model::parse(&bytes).map_err(ct2_err)?;
    drop(bytes);
    if model.spec != "WhisperSpec" {
        return Err(ct2_err(format!("expected spec WhisperSpec, got {}", model.spec)));
    }
    let vocab_path = ct2_dir.join("vocabulary.txt");
    let vocab = std::fs::read_to_string(&vocab_path).map_err(Error::io("read vocabulary", &vocab_path))?;
    let tokens =
        vocabulary_bytes(&vocab).map_err(|reason| Error::Ct2 { reason, path: vocab_path.clone() })?;

    let (hparams, tensors) = plan(&model, weights).map_err(ct2_err)?;
    let expected_tensors = tensors.len();
    let tmp = tmp_path(out_path);
    write_ggml(&tmp, &hparams, &tokens, tensors).map_err(Error::io("write ggml model", &tmp))?;
    let summary = read_ggml_summary(&tmp)?;
    let verify_err = |reason: String| Error::Verify { reason, path: tmp.clone() };
    if summary.hparams != hparams {
        return Err(verify_err(format!("header reads back as {:?}, wrote {hparams:?}", summary.hparams)));
    }
    if summary.n_tensors != expected_tensors || summary.n_tokens != tokens.len() {
        return Err(verify_err(format!(
            "expected {expected_tensors} tensors and {} tokens, read {} and {}",
            tokens.len(),
            summary.n_tensors,
            summary.n_tokens
        )));
    }
    std::fs::rename(&tmp, out_path).map_err(Error::io("move ggml model into place", out_path))?;
    Ok(summary)
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

/// The tokens of a CTranslate2 `vocabulary.txt` before `<|endoftext|>`, as bytes.
fn vocabulary_bytes(text: &str) -> Result<Vec<Vec<u8>>, String> {
    let inverse = mel::unicode_to_byte();
    let mut out = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        if line == "<|endoftext|>" {
            return Ok(out);
        }
        let bytes = mel::token_to_bytes(line, &inverse)
            .ok_or_else(|| format!("line {}: token {line:?} is not in GPT-2 byte encoding", i + 1))?;
        out.push(bytes);
    }
    Err("no <|endoftext|> token".into())
}

fn get<'a>(m: &'a Ct2Model, name: &str) -> Result<&'a Variable, String> {
    m.get(name).ok_or_else(|| format!("missing variable `{name}`"))
}

fn count_layers(m: &Ct2Model, side: &str) -> usize {
    (0..).take_while(|i| m.variables.contains_key(&format!("{side}/layer_{i}/ffn/linear_0/weight"))).count()
}

/// Maps CTranslate2 variables to whisper.cpp tensors and derives the hparams.
fn plan(m: &Ct2Model, weights: Weights) -> Result<(Hparams, Vec<OutTensor>), String> {
    let conv1 = get(m, "encoder/conv1/weight")?;
    let enc_pe = get(m, "encoder/position_encodings/encodings")?;
    let dec_pe = get(m, "decoder/position_encodings/encodings")?;
    let emb = get(m, "decoder/embeddings/weight")?;
    let heads = |side: &str| -> Result<i32, String> {
        get(m, &format!("{side}/num_heads"))?
            .as_int()
            .map(|h| h as i32)
            .ok_or(format!("{side}/num_heads is not an integer"))
    };
    let hp = Hparams {
        n_vocab: emb.shape[0] as i32,
        n_audio_ctx: enc_pe.shape[0] as i32,
        n_audio_state: enc_pe.shape[1] as i32,
        n_audio_head: heads("encoder")?,
        n_audio_layer: count_layers(m, "encoder") as i32,
        n_text_ctx: dec_pe.shape[0] as i32,
        n_text_state: dec_pe.shape[1] as i32,
        n_text_head: heads("decoder")?,
        n_text_layer: count_layers(m, "decoder") as i32,
        n_mels: conv1.shape.get(1).copied().ok_or("encoder/conv1/weight is not 3-D")? as i32,
        ftype: weights.ftype(),
    };
    let mut p = Planner { m, weights, out: Vec::new() };
    p.whole("encoder/position_encodings/encodings", "encoder.positional_embedding")?;
    for c in ["conv1", "conv2"] {
        p.whole(&format!("encoder/{c}/weight"), &format!("encoder.{c}.weight"))?;
        let bias = get(m, &format!("encoder/{c}/bias"))?;
        p.push(format!("encoder.{c}.bias"), vec![bias.len(), 1], bias, 0, bias.len());
    }
    for i in 0..hp.n_audio_layer {
        let (src, dst) = (format!("encoder/layer_{i}"), format!("encoder.blocks.{i}"));
        p.fused(
            &format!("{src}/self_attention/linear_0"),
            &format!("{dst}.attn"),
            &["query", "key", "value"],
        )?;
        p.linear(&format!("{src}/self_attention/linear_1"), &format!("{dst}.attn.out"))?;
        p.norm(&format!("{src}/self_attention/layer_norm"), &format!("{dst}.attn_ln"))?;
        p.ffn(&src, &dst)?;
    }
    p.norm("encoder/layer_norm", "encoder.ln_post")?;
    p.whole("decoder/position_encodings/encodings", "decoder.positional_embedding")?;
    p.whole("decoder/embeddings/weight", "decoder.token_embedding.weight")?;
    for i in 0..hp.n_text_layer {
        let (src, dst) = (format!("decoder/layer_{i}"), format!("decoder.blocks.{i}"));
        p.fused(
            &format!("{src}/self_attention/linear_0"),
            &format!("{dst}.attn"),
            &["query", "key", "value"],
        )?;
        p.linear(&format!("{src}/self_attention/linear_1"), &format!("{dst}.attn.out"))?;
        p.norm(&format!("{src}/self_attention/layer_norm"), &format!("{dst}.attn_ln"))?;
        p.linear(&format!("{src}/attention/linear_0"), &format!("{dst}.cross_attn.query"))?;
        p.fused(&format!("{src}/attention/linear_1"), &format!("{dst}.cross_attn"), &["key", "value"])?;
        p.linear(&format!("{src}/attention/linear_2"), &format!("{dst}.cross_attn.out"))?;
        p.norm(&format!("{src}/attention/layer_norm"), &format!("{dst}.cross_attn_ln"))?;
        p.ffn(&src, &dst)?;
    }
    p.norm("decoder/layer_norm", "decoder.ln")?;
    Ok((hp, p.out))
}

struct Planner<'a> {
    m: &'a Ct2Model,
    weights: Weights,
    out: Vec<OutTensor>,
}

impl Planner<'_> {
    /// Adds elements `[start, start + n)` of `v` as tensor `name` with `shape`.
    fn push(&mut self, name: String, shape: Vec<usize>, v: &Variable, start: usize, n: usize) {
        let es = v.dtype.size();
        // The reference converter keeps 1-D tensors, conv biases and positional embeddings f32.
        let f16 = shape.len() >= 2
            && !name.ends_with("conv1.bias")
            && !name.ends_with("conv2.bias")
            && !name.ends_with("positional_embedding");
        // whisper.cpp's `quantize` converts exactly the 2-D f16 matrices (rows a multiple of
        // the block): the ones its loader creates with the model's weight type.
        let q8 = self.weights == Weights::Q8_0
            && f16
            && shape.len() == 2
            && shape.last().is_some_and(|&row| row % Q8_0_BLOCK == 0);
        let ttype = match (q8, f16) {
            (true, _) => TYPE_Q8_0,
            (false, true) => TYPE_F16,
            (false, false) => TYPE_F32,
        };
        let data = v.data[start * es..(start + n) * es].to_vec();
        self.out.push(OutTensor { name, shape, ttype, src_dtype: v.dtype, data });
    }

    fn whole(&mut self, src: &str, dst: &str) -> Result<(), String> {
        let v = get(self.m, src)?;
        self.push(dst.to_string(), v.shape.clone(), v, 0, v.len());
        Ok(())
    }

    fn linear(&mut self, src: &str, dst: &str) -> Result<(), String> {
        self.whole(&format!("{src}/weight"), &format!("{dst}.weight"))?;
        self.whole(&format!("{src}/bias"), &format!("{dst}.bias"))
    }

    fn norm(&mut self, src: &str, dst: &str) -> Result<(), String> {
        self.whole(&format!("{src}/gamma"), &format!("{dst}.weight"))?;
        self.whole(&format!("{src}/beta"), &format!("{dst}.bias"))
    }

    fn ffn(&mut self, src: &str, dst: &str) -> Result<(), String> {
        self.norm(&format!("{src}/ffn/layer_norm"), &format!("{dst}.mlp_ln"))?;
        self.linear(&format!("{src}/ffn/linear_0"), &format!("{dst}.mlp.0"))?;
        self.linear(&format!("{src}/ffn/linear_1"), &format!("{dst}.mlp.2"))
    }

    /// Splits a fused projection (rows stacked as `parts`) into one linear per part; `key` has
    /// no bias in whisper.
    fn fused(&mut self, src: &str, dst: &str, parts: &[&str]) -> Result<(), String> {
        let w = get(self.m, &format!("{src}/weight"))?;
        let b = get(self.m, &format!("{src}/bias"))?;
        if w.shape.len() != 2 || w.shape[0] % parts.len() != 0 || b.len() != w.shape[0] {
            return Err(format!(
                "`{src}`: cannot split weight {:?} / bias {:?} into {parts:?}",
                w.shape, b.shape
            ));
        }
        let (rows, cols) = (w.shape[0] / parts.len(), w.shape[1]);
        for (k, part) in parts.iter().enumerate() {
            self.push(format!("{dst}.{part}.weight"), vec![rows, cols], w, k * rows * cols, rows * cols);
            if *part != "key" {
                self.push(format!("{dst}.{part}.bias"), vec![rows], b, k * rows, rows);
            }
        }
        Ok(())
    }
}

fn write_ggml(path: &Path, hp: &Hparams, tokens: &[Vec<u8>], tensors: Vec<OutTensor>) -> std::io::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let i32w = |w: &mut BufWriter<std::fs::File>, v: i32| w.write_all(&v.to_le_bytes());
    w.write_all(&GGML_MAGIC.to_le_bytes())?;
    for v in [
        hp.n_vocab,
        hp.n_audio_ctx,
        hp.n_audio_state,
        hp.n_audio_head,
        hp.n_audio_layer,
        hp.n_text_ctx,
        hp.n_text_state,
        hp.n_text_head,
        hp.n_text_layer,
        hp.n_mels,
        hp.ftype,
    ] {
        i32w(&mut w, v)?;
    }
    let n_fft = 400;
    let filters = mel::mel_filters(16_000, n_fft, hp.n_mels as usize);
    i32w(&mut w, hp.n_mels)?;
    i32w(&mut w, (n_fft / 2 + 1) as i32)?;
    for f in filters {
        w.write_all(&f.to_le_bytes())?;
    }
    i32w(&mut w, tokens.len() as i32)?;
    for t in tokens {
        i32w(&mut w, t.len() as i32)?;
        w.write_all(t)?;
    }
    for t in tensors {
        i32w(&mut w, t.shape.len() as i32)?;
        i32w(&mut w, t.name.len() as i32)?;
        i32w(&mut w, t.ttype)?;
        for &d in t.shape.iter().rev() {
            i32w(&mut w, d as i32)?;
        }
        w.write_all(t.name.as_bytes())?;
        write_data(&mut w, &t)?;
    }
    w.flush()?;
    w.into_inner().map_err(|e| e.into_error())?.sync_all()
}

fn write_data(w: &mut impl Write, t: &OutTensor) -> std::io::Result<()> {
    match (t.src_dtype, t.ttype) {
        (DType::F16, TYPE_F16) | (DType::F32, TYPE_F32) => w.write_all(&t.data),
        (src, TYPE_Q8_0) => w.write_all(&quantize_q8_0(&decode_f32(src, &t.data)?)),
        (src, ttype) => {
            let mut buf = Vec::with_capacity(t.data.len() * 2);
            for v in decode_f32(src, &t.data)? {
                if ttype == TYPE_F16 {
                    buf.extend_from_slice(&half::f32_to_f16(v).to_le_bytes());
                } else {
                    buf.extend_from_slice(&v.to_le_bytes());
                }
            }
            w.write_all(&buf)
        }
    }
}

/// ggml's reference q8_0 quantisation (`quantize_row_q8_0_ref`): per block of 32 values, the
/// scale `max|x| / 127` as f16, then each value divided by it and rounded.
pub(crate) fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    debug_assert_eq!(values.len() % Q8_0_BLOCK, 0);
    let mut out = Vec::with_capacity(values.len() / Q8_0_BLOCK * Q8_0_BYTES);
    for block in values.chunks_exact(Q8_0_BLOCK) {
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&half::f32_to_f16(d).to_le_bytes());
        out.extend(block.iter().map(|v| ((v * id).round() as i8) as u8));
    }
    out
}

fn decode_f32(dtype: DType, data: &[u8]) -> std::io::Result<Vec<f32>> {
    Ok(match dtype {
        DType::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        DType::F16 => {
            data.chunks_exact(2).map(|b| half::f16_to_f32(u16::from_le_bytes([b[0], b[1]]))).collect()
        }
        DType::BF16 => data
            .chunks_exact(2)
            .map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16))
            .collect(),
        other => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("cannot convert {other:?} weights (quantised CTranslate2 models are not supported)"),
            ));
        }
    })
}

/// Reads a ggml whisper file's header and walks its tensors.
///
/// # Errors
/// [`Error::Verify`] if the file is not a whisper ggml file or is truncated.
pub fn read_ggml_summary(path: &Path) -> Result<GgmlSummary> {
    let file = std::fs::File::open(path).map_err(Error::io("open ggml model", path))?;
    let file_bytes = file.metadata().map_err(Error::io("stat ggml model", path))?.len();
    let mut r = BufReader::with_capacity(1 << 16, file);
    let bad = |reason: String| Error::Verify { reason, path: path.to_path_buf() };
    let mut i32r = || -> Result<i32> {
        let mut b = [0u8; 4];
        r.read_exact(&mut b).map_err(|e| bad(format!("truncated header: {e}")))?;
        Ok(i32::from_le_bytes(b))
    };
    if i32r()? as u32 != GGML_MAGIC {
        return Err(bad("bad magic: not a ggml file".into()));
    }
    let mut h = [0i32; 11];
    for v in &mut h {
        *v = i32r()?;
    }
    let hparams = Hparams {
        n_vocab: h[0],
        n_audio_ctx: h[1],
        n_audio_state: h[2],
        n_audio_head: h[3],
        n_audio_layer: h[4],
        n_text_ctx: h[5],
        n_text_state: h[6],
        n_text_head: h[7],
        n_text_layer: h[8],
        n_mels: h[9],
        ftype: h[10],
    };
    let (rows, cols) = (i32r()?, i32r()?);
    if rows != hparams.n_mels || cols != 201 {
        return Err(bad(format!("mel filters are {rows}x{cols}, expected {}x201", hparams.n_mels)));
    }
    let skip =
        |r: &mut BufReader<std::fs::File>, n: i64| r.seek_relative(n).map_err(|e| bad(format!("seek: {e}")));
    skip(&mut r, rows as i64 * cols as i64 * 4)?;
    let read_i32 = |r: &mut BufReader<std::fs::File>| -> std::io::Result<i32> {
        let mut b = [0u8; 4];
        r.read_exact(&mut b)?;
        Ok(i32::from_le_bytes(b))
    };
    let n_tokens = read_i32(&mut r).map_err(|e| bad(format!("vocabulary: {e}")))?;
    for _ in 0..n_tokens {
        let len = read_i32(&mut r).map_err(|e| bad(format!("vocabulary: {e}")))?;
        skip(&mut r, len as i64)?;
    }
    let mut n_tensors = 0;
    loop {
        let n_dims = match read_i32(&mut r) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(bad(format!("tensor header: {e}"))),
        };
        let name_len = read_i32(&mut r).map_err(|e| bad(format!("tensor header: {e}")))?;
        let ttype = read_i32(&mut r).map_err(|e| bad(format!("tensor header: {e}")))?;
        if !(1..=4).contains(&n_dims) || ![TYPE_F32, TYPE_F16, TYPE_Q8_0].contains(&ttype) {
            return Err(bad(format!("tensor {n_tensors}: bad header n_dims={n_dims} type={ttype}")));
        }
        let mut elements = 1i64;
        for _ in 0..n_dims {
            elements *= read_i32(&mut r).map_err(|e| bad(format!("tensor dims: {e}")))? as i64;
        }
        skip(&mut r, name_len as i64)?;
        let bytes = match ttype {
            TYPE_F32 => elements * 4,
            TYPE_F16 => elements * 2,
            _ if elements % Q8_0_BLOCK as i64 != 0 => {
                return Err(bad(format!("tensor {n_tensors}: q8_0 with {elements} values")));
            }
            _ => elements / Q8_0_BLOCK as i64 * Q8_0_BYTES as i64,
        };
        skip(&mut r, bytes)?;
        n_tensors += 1;
    }
    let pos = r.stream_position().map_err(|e| bad(format!("position: {e}")))?;
    if pos != file_bytes {
        return Err(bad(format!("tensor data runs past the end of the file ({pos} > {file_bytes} bytes)")));
    }
    Ok(GgmlSummary { hparams, n_tokens: n_tokens as usize, n_tensors, file_bytes })
}

use std::io::Seek;

/// IEEE half-precision conversions (round to nearest even).
mod half {
    /// f16 bits to f32.
    pub fn f16_to_f32(h: u16) -> f32 {
        let sign = ((h >> 15) as u32) << 31;
        let exp = ((h >> 10) & 0x1f) as u32;
        let man = (h & 0x3ff) as u32;
        let bits = match exp {
            0 if man == 0 => sign,
            0 => {
                // Subnormal: normalise.
                let shift = man.leading_zeros() - 21;
                let man = (man << shift) & 0x3ff;
                sign | ((127 - 15 + 1 - shift) << 23) | (man << 13)
            }
            0x1f => sign | 0x7f80_0000 | (man << 13),
            _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
        };
        f32::from_bits(bits)
    }

    /// f32 to f16 bits.
    pub fn f32_to_f16(f: f32) -> u16 {
        let x = f.to_bits();
        let sign = ((x >> 16) & 0x8000) as u16;
        let exp = ((x >> 23) & 0xff) as i32;
        let man = x & 0x7f_ffff;
        if exp == 0xff {
            return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
        }
        let e = exp - 127 + 15;
        if e >= 0x1f {
            return sign | 0x7c00;
        }
        if e <= 0 {
            if e < -10 {
                return sign;
            }
            let man = man | 0x80_0000;
            let shift = (14 - e) as u32;
            let half = 1u32 << (shift - 1);
            let rest = man & ((1 << shift) - 1);
            let mut v = man >> shift;
            if rest > half || (rest == half && v & 1 == 1) {
                v += 1;
            }
            return sign | v as u16;
        }
        let mut v = ((e as u32) << 10) | (man >> 13);
        let rest = man & 0x1fff;
        if rest > 0x1000 || (rest == 0x1000 && v & 1 == 1) {
            v += 1;
        }
        sign | v as u16
    }
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;
