//! Export to TransformerLens: a state dict that
//! `HookedTransformer.load_state_dict(..., strict=True)` accepts, and the configs that
//! build the matching model.
//!
//! TransformerLens's `HookedTransformer` has parameters bitgrok's models do not (all
//! biases, li2024's positional embedding) and two buffers per attention layer (`mask`,
//! `IGNORE`); the export writes them as zeros (the buffers as TransformerLens makes
//! them), so the function is unchanged. TransformerLens 3.x has no "final norm only"
//! setting: for li2024 its config asks for RMS norms everywhere, and the block norms
//! `blocks.0.ln1`, `blocks.0.ln2` must be replaced by identities before loading (the
//! state dict has no `ln1.w`/`ln2.w`); see `scripts/load_transformer_lens.py`.

use crate::config::{Arch, UniformAttention};
use crate::engine::model_file::{attention_direction, attention_scale, Model};
use crate::engine::weights::ModelWeights;
use anyhow::Result;
use safetensors::Dtype;
use serde_json::{json, Value};

/// One tensor of the state dict: name, dtype, shape, little-endian bytes.
pub type StateTensor = (String, Dtype, Vec<usize>, Vec<u8>);

fn f32_tensor(name: &str, shape: Vec<usize>, data: &[f32]) -> StateTensor {
    let bytes = data.iter().flat_map(|x| x.to_le_bytes()).collect();
    (name.to_string(), Dtype::F32, shape, bytes)
}

/// The TransformerLens state dict of `w`, sorted by name.
pub fn state_dict(w: &ModelWeights) -> Vec<StateTensor> {
    let (p, d, h, dh, m) = (w.modulus(), w.width(), w.heads, w.d_head(), w.d_mlp());
    let mut out: Vec<StateTensor> = w
        .to_named()
        .into_iter()
        .map(|(n, s, data)| f32_tensor(&n, s, &data))
        .collect();
    let zeros = |name: &str, shape: Vec<usize>| {
        let n = shape.iter().product();
        f32_tensor(name, shape, &vec![0.0; n])
    };
    if w.w_pos.is_none() {
        out.push(zeros("pos_embed.W_pos", vec![3, d]));
    }
    for b in ["b_Q", "b_K", "b_V"] {
        out.push(zeros(&format!("blocks.0.attn.{b}"), vec![h, dh]));
    }
    out.push(zeros("blocks.0.attn.b_O", vec![d]));
    if w.b_in.is_none() {
        out.push(zeros("blocks.0.mlp.b_in", vec![m]));
    }
    if w.b_out.is_none() {
        out.push(zeros("blocks.0.mlp.b_out", vec![d]));
    }
    out.push(zeros("unembed.b_U", vec![p]));
    // Buffers, as TransformerLens registers them: a lower-triangular bool mask over
    // n_ctx = 3 positions (used only when attention is causal) and IGNORE = -inf.
    let mask: Vec<u8> = (0..9).map(|i| u8::from(i % 3 <= i / 3)).collect();
    out.push(("blocks.0.attn.mask".into(), Dtype::BOOL, vec![3, 3], mask));
    out.push(f32_tensor(
        "blocks.0.attn.IGNORE",
        vec![],
        &[f32::NEG_INFINITY],
    ));
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// safetensors bytes of a state dict, with `metadata`.
pub fn state_dict_bytes(
    tensors: &[StateTensor],
    metadata: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    crate::engine::safetensors_io::serialize(tensors, metadata)
}

/// `HookedTransformerConfig` keyword arguments for TransformerLens `major` (3 or 4).
/// 3.x: li2024 uses `normalization_type = "RMS"` with eps 0 and needs its block norms
/// replaced by identities (module doc). 4.x: `final_rms = true` with no block norms.
pub fn config(m: &Model, major: u32) -> Value {
    let w = &m.weights;
    let (p, d, h) = (w.modulus(), w.width(), w.heads);
    let li = w.arch == Arch::Li2024;
    let mut c = json!({
        "n_layers": 1,
        "d_model": d,
        "n_heads": h,
        "d_head": w.d_head(),
        "d_mlp": w.d_mlp(),
        "d_vocab": p + 1,
        "d_vocab_out": p,
        "n_ctx": 3,
        "act_fn": "relu",
        "attention_dir": attention_direction(w.arch),
        "use_attn_scale": true,
        // TransformerLens divides the scores by attn_scale.
        "attn_scale": 1.0 / attention_scale(w.arch, d, h),
        "positional_embedding_type": "standard",
        "eps": 0.0,
        "default_prepend_bos": false,
        "dtype": "float32",
    });
    let norm = match (li, major >= 4) {
        (false, _) => json!({ "normalization_type": null }),
        (true, false) => json!({ "normalization_type": "RMS" }),
        (true, true) => json!({ "normalization_type": null, "final_rms": true }),
    };
    if let (Value::Object(c), Value::Object(n)) = (&mut c, norm) {
        c.extend(n);
    }
    c
}

/// What a user needs besides the config: the input format and, for cells trained
/// with quantized activations or an attention rate below 1, the hooks TransformerLens
/// needs to match.
pub fn usage(m: &Model) -> Value {
    let p = m.weights.modulus();
    json!({
        "arch": m.weights.arch.to_string(),
        "input": format!("[a, b, {p}] for a, b in 0..{p} (token {p} is '=')"),
        "readout_position": 2,
        "label": format!("(a + b) mod {p}"),
        "act_bits": m.act_bits,
        "act_eps": m.act_eps,
        "attention_rate": m.attention.rate,
        "attention_rate_hook": if m.attention.uniform == UniformAttention::Sum {
            json!({
                "blocks.0.attn.hook_pattern": "pattern -> rate * pattern + (1 - rate) at every position each query may attend to (model.uniform_attention = sum: rows sum to n - (n - 1) * rate)",
            })
        } else if m.attention.rate < 1.0 {
            json!({
                "blocks.0.attn.hook_pattern": "pattern -> rate * pattern + (1 - rate) * uniform over the positions each query may attend to (all 3 when bidirectional; positions <= the query's when causal)",
            })
        } else {
            json!(null)
        },
        "block_norms_to_replace_by_identity_in_3x": if m.weights.arch == Arch::Li2024 {
            json!(["blocks.0.ln1", "blocks.0.ln2"])
        } else {
            json!([])
        },
        "activation_quantization_hooks": if m.act_bits > 0 {
            json!({
                "blocks.0.hook_q_input / hook_k_input / hook_v_input (use_split_qkv_input)":
                    "quantize per token over d_model",
                "blocks.0.attn.hook_z": "quantize per token over all heads together (n_heads × d_head)",
                "blocks.0.hook_mlp_in (use_hook_mlp_in)": "quantize per token over d_model",
                "blocks.0.mlp.hook_post": "quantize per token over d_mlp",
                "quantizer": "g = max(max|x|, act_eps); x -> clip(round(x * (2^(b-1) / g)), -2^(b-1), 2^(b-1) - 1) * (g / 2^(b-1)), rounding half to even, in float32",
            })
        } else {
            json!(null)
        },
    })
}
