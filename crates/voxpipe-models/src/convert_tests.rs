use super::*;
use crate::ct2::{self, Ct2Model, DType, Variable};
use std::collections::BTreeMap;

const D: usize = 4;

fn f16_var(shape: &[usize], seed: usize) -> Variable {
    let n: usize = shape.iter().product();
    let data = (0..n).flat_map(|i| half::f32_to_f16((seed * 1000 + i) as f32 / 64.0).to_le_bytes()).collect();
    Variable { shape: shape.to_vec(), dtype: DType::F16, data }
}

fn synthetic_model() -> Ct2Model {
    let mut v = BTreeMap::new();
    let mut seed = 0;
    let mut add = |v: &mut BTreeMap<String, Variable>, name: &str, shape: &[usize]| {
        seed += 1;
        v.insert(name.to_string(), f16_var(shape, seed));
    };
    add(&mut v, "encoder/position_encodings/encodings", &[6, D]);
    add(&mut v, "encoder/conv1/weight", &[D, 80, 3]);
    add(&mut v, "encoder/conv1/bias", &[D]);
    add(&mut v, "encoder/conv2/weight", &[D, D, 3]);
    add(&mut v, "encoder/conv2/bias", &[D]);
    add(&mut v, "encoder/layer_norm/gamma", &[D]);
    add(&mut v, "encoder/layer_norm/beta", &[D]);
    add(&mut v, "decoder/position_encodings/encodings", &[5, D]);
    add(&mut v, "decoder/embeddings/weight", &[7, D]);
    add(&mut v, "decoder/layer_norm/gamma", &[D]);
    add(&mut v, "decoder/layer_norm/beta", &[D]);
    for side in ["encoder", "decoder"] {
        let l = format!("{side}/layer_0");
        add(&mut v, &format!("{l}/self_attention/linear_0/weight"), &[3 * D, D]);
        add(&mut v, &format!("{l}/self_attention/linear_0/bias"), &[3 * D]);
        add(&mut v, &format!("{l}/self_attention/linear_1/weight"), &[D, D]);
        add(&mut v, &format!("{l}/self_attention/linear_1/bias"), &[D]);
        add(&mut v, &format!("{l}/self_attention/layer_norm/gamma"), &[D]);
        add(&mut v, &format!("{l}/self_attention/layer_norm/beta"), &[D]);
        add(&mut v, &format!("{l}/ffn/linear_0/weight"), &[4 * D, D]);
        add(&mut v, &format!("{l}/ffn/linear_0/bias"), &[4 * D]);
        add(&mut v, &format!("{l}/ffn/linear_1/weight"), &[D, 4 * D]);
        add(&mut v, &format!("{l}/ffn/linear_1/bias"), &[D]);
        add(&mut v, &format!("{l}/ffn/layer_norm/gamma"), &[D]);
        add(&mut v, &format!("{l}/ffn/layer_norm/beta"), &[D]);
    }
    let l = "decoder/layer_0/attention";
    add(&mut v, &format!("{l}/linear_0/weight"), &[D, D]);
    add(&mut v, &format!("{l}/linear_0/bias"), &[D]);
    add(&mut v, &format!("{l}/linear_1/weight"), &[2 * D, D]);
    add(&mut v, &format!("{l}/linear_1/bias"), &[2 * D]);
    add(&mut v, &format!("{l}/linear_2/weight"), &[D, D]);
    add(&mut v, &format!("{l}/linear_2/bias"), &[D]);
    add(&mut v, &format!("{l}/layer_norm/gamma"), &[D]);
    add(&mut v, &format!("{l}/layer_norm/beta"), &[D]);
    for side in ["encoder", "decoder"] {
        v.insert(
            format!("{side}/num_heads"),
            Variable { shape: vec![], dtype: DType::I16, data: 2i16.to_le_bytes().to_vec() },
        );
    }
    let mut aliases = BTreeMap::new();
    aliases.insert("decoder/projection/weight".into(), "decoder/embeddings/weight".into());
    Ct2Model { version: 6, spec: "WhisperSpec".into(), revision: 3, variables: v, aliases }
}

/// Reads every tensor of a ggml file: name → (dims innermost first, type, data).
fn read_tensors(path: &Path) -> BTreeMap<String, (Vec<i32>, i32, Vec<u8>)> {
    let b = std::fs::read(path).unwrap();
    let i32at = |p: usize| i32::from_le_bytes(b[p..p + 4].try_into().unwrap());
    let mut p = 4 + 11 * 4;
    p += 8 + (i32at(48) * i32at(52) * 4) as usize;
    let n_tokens = i32at(p);
    p += 4;
    for _ in 0..n_tokens {
        p += 4 + i32at(p) as usize;
    }
    let mut out = BTreeMap::new();
    while p < b.len() {
        let (n_dims, name_len, ttype) = (i32at(p), i32at(p + 4) as usize, i32at(p + 8));
        p += 12;
        let dims: Vec<i32> = (0..n_dims as usize).map(|i| i32at(p + 4 * i)).collect();
        p += 4 * n_dims as usize;
        let name = String::from_utf8(b[p..p + name_len].to_vec()).unwrap();
        p += name_len;
        let elements = dims.iter().product::<i32>() as usize;
        let n = match ttype {
            0 => elements * 4,
            1 => elements * 2,
            _ => elements / 32 * 34,
        };
        out.insert(name, (dims, ttype, b[p..p + n].to_vec()));
        p += n;
    }
    out
}

#[test]
fn converts_a_synthetic_ct2_model_to_the_whisper_cpp_layout() {
    let dir = std::env::temp_dir().join(format!("voxpipe-convert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = synthetic_model();
    std::fs::write(dir.join("model.bin"), ct2::write(&model)).unwrap();
    std::fs::write(dir.join("vocabulary.txt"), "!\nĠhello\nĊ\n<|endoftext|>\n<|startoftranscript|>\n")
        .unwrap();
    let out = dir.join("ggml.bin");
    let summary = convert_ct2_to_ggml(&dir, &out, Weights::F16).unwrap();
    assert_eq!(summary.n_tokens, 3);
    // encoder: pe, conv×4, ln_post×2 + 15 per layer; decoder: pe, emb, ln×2 + 24 per layer.
    assert_eq!(summary.n_tensors, 7 + 15 + 4 + 24);
    let hp = summary.hparams;
    assert_eq!(
        (hp.n_vocab, hp.n_audio_ctx, hp.n_audio_state, hp.n_audio_head, hp.n_audio_layer),
        (7, 6, 4, 2, 1)
    );
    assert_eq!(
        (hp.n_text_ctx, hp.n_text_state, hp.n_text_head, hp.n_text_layer, hp.n_mels),
        (5, 4, 2, 1, 80)
    );

    let t = read_tensors(&out);
    assert_eq!(t.len(), summary.n_tensors);
    // Fused q/k/v split by rows; key has no bias; value bias is the last third.
    let fused = &model.variables["encoder/layer_0/self_attention/linear_0/weight"].data;
    let row_bytes = D * D * 2;
    assert_eq!(t["encoder.blocks.0.attn.query.weight"].2, fused[..row_bytes]);
    assert_eq!(t["encoder.blocks.0.attn.key.weight"].2, fused[row_bytes..2 * row_bytes]);
    assert_eq!(t["encoder.blocks.0.attn.value.weight"].2, fused[2 * row_bytes..]);
    assert!(!t.contains_key("encoder.blocks.0.attn.key.bias"));
    let vb = &t["encoder.blocks.0.attn.value.bias"];
    assert_eq!((vb.0.clone(), vb.1), (vec![D as i32], 0), "biases are f32");
    let src_bias = &model.variables["encoder/layer_0/self_attention/linear_0/bias"].data;
    let want: Vec<u8> = src_bias[2 * D * 2..]
        .chunks_exact(2)
        .flat_map(|c| half::f16_to_f32(u16::from_le_bytes([c[0], c[1]])).to_le_bytes())
        .collect();
    assert_eq!(vb.2, want);
    // Cross-attention k/v come from linear_1; query from linear_0.
    assert!(t.contains_key("decoder.blocks.0.cross_attn.key.weight"));
    assert!(t.contains_key("decoder.blocks.0.cross_attn.value.bias"));
    assert!(!t.contains_key("decoder.blocks.0.cross_attn.key.bias"));
    // Shapes are written innermost first; conv biases as [n, 1] f32; positional embeddings f32.
    assert_eq!(t["encoder.conv1.weight"].0, vec![3, 80, D as i32]);
    assert_eq!(t["encoder.conv1.weight"].1, 1);
    assert_eq!((t["encoder.conv1.bias"].0.clone(), t["encoder.conv1.bias"].1), (vec![1, D as i32], 0));
    assert_eq!(t["encoder.positional_embedding"].1, 0);
    assert_eq!(t["decoder.token_embedding.weight"].0, vec![D as i32, 7]);
    assert_eq!(t["encoder.blocks.0.mlp.0.weight"].0, vec![D as i32, 4 * D as i32]);
    assert!(t.contains_key("decoder.blocks.0.cross_attn_ln.weight"));
    assert!(t.contains_key("decoder.ln.bias") && t.contains_key("encoder.ln_post.weight"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_variables_are_named_in_the_error() {
    let dir = std::env::temp_dir().join(format!("voxpipe-convert-missing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut model = synthetic_model();
    model.variables.remove("decoder/layer_0/attention/linear_2/bias");
    std::fs::write(dir.join("model.bin"), ct2::write(&model)).unwrap();
    std::fs::write(dir.join("vocabulary.txt"), "!\n<|endoftext|>\n").unwrap();
    let err = convert_ct2_to_ggml(&dir, &dir.join("out.bin"), Weights::F16).unwrap_err().to_string();
    assert!(err.contains("decoder/layer_0/attention/linear_2/bias"), "{err}");
    assert!(!dir.join("out.bin").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn half_precision_round_trips() {
    for v in [0.0f32, 1.0, -2.5, 0.000_061_035_156, 65504.0, 1e-7, 3.140_625] {
        let back = half::f16_to_f32(half::f32_to_f16(v));
        assert!((back - v).abs() <= v.abs() * 1e-3 + 1e-7, "{v} -> {back}");
    }
    assert_eq!(half::f32_to_f16(1.0), 0x3c00);
    assert_eq!(half::f32_to_f16(-2.0), 0xc000);
    assert_eq!(half::f16_to_f32(0x0001), 5.960_464_5e-8);
    assert!(half::f16_to_f32(half::f32_to_f16(1e6)).is_infinite());
}

#[test]
fn q8_0_blocks_match_ggml_reference_quantisation() {
    let values: Vec<f32> = (0..64).map(|i| (i as f32 - 20.0) / 8.0).collect();
    let q = quantize_q8_0(&values);
    assert_eq!(q.len(), 2 * 34);
    for (b, block) in values.chunks(32).enumerate() {
        let bytes = &q[b * 34..(b + 1) * 34];
        let d = half::f16_to_f32(u16::from_le_bytes([bytes[0], bytes[1]]));
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!((d - amax / 127.0).abs() <= d * 1e-3, "scale {d} for max {amax}");
        for (i, &v) in block.iter().enumerate() {
            let back = (bytes[2 + i] as i8) as f32 * d;
            assert!((back - v).abs() <= d * 0.51, "{v} -> {back}");
        }
        // The largest magnitude maps to ±127.
        assert!(bytes[2..].iter().any(|&x| (x as i8).unsigned_abs() == 127));
    }
    // An all-zero block has scale 0 and zero values.
    assert!(quantize_q8_0(&[0.0; 32]).iter().all(|&b| b == 0));
}

#[test]
fn a_q8_0_conversion_quantises_the_weight_matrices_and_reads_back() {
    let dir = std::env::temp_dir().join(format!("voxpipe-convert-q8-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.bin"), ct2::write(&synthetic_model())).unwrap();
    std::fs::write(dir.join("vocabulary.txt"), "!\nĠhello\nĊ\n<|endoftext|>\n").unwrap();
    let out = dir.join("ggml-q8.bin");
    let summary = convert_ct2_to_ggml(&dir, &out, Weights::Q8_0).unwrap();
    assert_eq!(summary.hparams.ftype, 2007, "GGML_FTYPE_MOSTLY_Q8_0 with quantisation version 2");
    // Rows of 4 values are not whole q8_0 blocks: such matrices stay f16, as whisper.cpp's
    // `quantize` leaves them (real models have rows of 384 and more).
    let t = read_tensors(&out);
    assert_eq!(t["encoder.blocks.0.mlp.0.weight"].1, 1);
    assert_eq!(t.len(), summary.n_tensors);
    std::fs::remove_dir_all(&dir).unwrap();
}
