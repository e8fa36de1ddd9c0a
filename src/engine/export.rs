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

use crate::config::Arch;
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
    });
    let norm = match (li, major >= 4) {
        (false, _) => json!({ "normalization_type": null }),
        (true, false) => json!({ "normalization_type": "RMS" }),
        (true, true) => json!({ "normalization_type": null, "final_rms": true }),
    };
    if let (Value::Object(c), Value::Object(n)) = (&mut c, norm) {
        c.extend(n);
    }
    // 3.x has hook points at the q/k/v and MLP inputs only with these set (4.x's
    // bridge always has them: see [`hooks`]).
    if m.act_bits > 0 && major < 4 {
        if let Value::Object(c) = &mut c {
            c.insert("use_split_qkv_input".into(), json!(true));
            c.insert("use_hook_mlp_in".into(), json!(true));
        }
    }
    c
}

/// The TransformerLens majors the export writes a config and hooks for.
pub const MAJORS: [u32; 2] = [3, 4];

/// Where TransformerLens `major` exposes the inputs of the six quantized matrices
/// (W_Q, W_K, W_V, W_O, W_in, W_out), each with how many trailing axes of the hook's
/// tensor hold one token's activations. 3.x (with `use_split_qkv_input` and
/// `use_hook_mlp_in`) gives the q/k/v inputs as `[batch, pos, head, d_model]`, one
/// copy per head; W_O's input is `[batch, pos, head, d_head]` in both, one token
/// spanning all heads. 4.x's bridge has a `hook_in` on each of its linear layers,
/// with no setting needed.
fn quantizer_hooks(major: u32) -> &'static [(&'static str, usize)] {
    if major >= 4 {
        &[
            ("blocks.0.attn.q.hook_in", 1),
            ("blocks.0.attn.k.hook_in", 1),
            ("blocks.0.attn.v.hook_in", 1),
            ("blocks.0.attn.o.hook_in", 2),
            ("blocks.0.mlp.in.hook_in", 1),
            ("blocks.0.mlp.out.hook_in", 1),
        ]
    } else {
        &[
            ("blocks.0.hook_q_input", 1),
            ("blocks.0.hook_k_input", 1),
            ("blocks.0.hook_v_input", 1),
            ("blocks.0.attn.hook_z", 2),
            ("blocks.0.hook_mlp_in", 1),
            ("blocks.0.mlp.hook_post", 1),
        ]
    }
}

/// The forward hooks TransformerLens `major` needs to compute `m`'s function: the
/// activation quantizer at the quantized matrices' inputs, and the attention mix on
/// the pattern. Empty for a plain model.
pub fn hooks(m: &Model, major: u32) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    if m.act_bits > 0 {
        out.extend(
            quantizer_hooks(major).iter().map(
                |&(hook, axes)| json!({ "hook": hook, "apply": "quantize", "token_axes": axes }),
            ),
        );
    }
    if m.attention.rate < 1.0 {
        out.push(json!({ "hook": "blocks.0.attn.hook_pattern", "apply": "mix_attention" }));
    }
    out
}

/// The uniform part of the attention, `[query][key]`: what every entry of the
/// pattern gets on top of `rate·softmax` (zero where the query may not attend).
pub fn uniform_part(m: &Model) -> [[f64; 3]; 3] {
    let causal = attention_direction(m.weights.arch) == "causal";
    let mut u = [[0.0; 3]; 3];
    for (q, row) in u.iter_mut().enumerate() {
        let visible = if causal { q + 1 } else { 3 };
        for cell in row.iter_mut().take(visible) {
            *cell = m.attention.uniform_weight(visible);
        }
    }
    u
}

/// bitgrok's own all-pairs loss and accuracy of a model (its training forward pass),
/// and how close a loader must come to them and to its logits (`logits.safetensors`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Check {
    pub loss: f64,
    pub accuracy: f64,
    /// The largest |logit| over all inputs.
    pub max_abs_logit: f64,
}

impl Check {
    /// Largest allowed difference of a logit, relative to the largest |logit| of its
    /// input (at least 1). Float32 logits summed in another order differ by a few
    /// ulps of the largest term: TransformerLens 3.9 and 4.3 came within 2.7e-6 of
    /// that scale (`make test-interop`, and cells up to p = 113), while leaving out a
    /// hook the cell needs moves them by far more.
    pub const LOGIT_TOLERANCE: f64 = 1e-5;
    /// How many inputs may have a logit off by more than [`Self::LOGIT_TOLERANCE`].
    /// With quantized activations a value on a rounding tie in exact arithmetic
    /// (common where quantized weights meet quantized inputs) may round either way
    /// under another summation order, changing its input's logits: 2 of the 529
    /// inputs of the test's li2024 int4 cell. 1 % of the inputs (at least 2) may.
    pub fn inputs_off_allowed(m: &Model) -> usize {
        let p = m.weights.modulus();
        if m.act_bits > 0 {
            (p * p).div_ceil(100).max(2)
        } else {
            0
        }
    }
    /// Largest allowed |loss − `loss`|: the cross-entropy of an input moves by at
    /// most twice its largest logit change, which is within the tolerance except on
    /// the inputs allowed off, where it is at most 2·`max_abs_logit`.
    pub fn loss_tolerance(&self, m: &Model) -> f64 {
        let p = m.weights.modulus();
        let scale = self.max_abs_logit.max(1.0);
        let off = Self::inputs_off_allowed(m) as f64 / (p * p) as f64;
        2.0 * Self::LOGIT_TOLERANCE * scale + off * 4.0 * scale
    }
}

/// `logits.safetensors`: bitgrok's logits at the read-out position for every input,
/// tensor `logits` `[p², p]`, row `a·p + b`.
pub fn logits_tensors(logits: &[f32], p: usize) -> Vec<StateTensor> {
    vec![f32_tensor("logits", vec![p * p, p], logits)]
}

/// What a user needs besides the config: the input format, the hooks each
/// TransformerLens major needs to compute the cell's function (activation quantizer,
/// attention mix) with their parameters, and what to check a load against: the
/// all-pairs loss and accuracy bitgrok computes (its logits are `logits.safetensors`).
pub fn usage(m: &Model, check: Check) -> Value {
    let p = m.weights.modulus();
    let mix = (m.attention.rate < 1.0).then(|| {
        json!({
            "formula": "pattern[query][key] -> attention_rate * pattern[query][key] + uniform_part[query][key]",
            "uniform_part": uniform_part(m),
        })
    });
    let quantize = (m.act_bits > 0).then_some(
        "per token (over the hook's last token_axes axes): q = 2^(act_bits-1), \
         g = max(max|x|, act_eps), x -> clip(round(clip(x * (q / g), -q-1, q)), -q, q-1) \
         * (g / q), rounding half to even, in float32",
    );
    json!({
        "arch": m.weights.arch.to_string(),
        "modulus": p,
        "input": format!("[a, b, {p}] for a, b in 0..{p} (token {p} is '=')"),
        "eq_token": p,
        "readout_position": 2,
        "label": format!("(a + b) mod {p}"),
        "act_bits": m.act_bits,
        "act_eps": m.act_eps,
        "attention_rate": m.attention.rate,
        "uniform_attention": m.attention.uniform.name(),
        "block_norms_to_replace_by_identity_in_3x": if m.weights.arch == Arch::Li2024 {
            json!(["blocks.0.ln1", "blocks.0.ln2"])
        } else {
            json!([])
        },
        "hooks": MAJORS.iter().map(|&v| (v.to_string(), json!(hooks(m, v)))).collect::<serde_json::Map<_, _>>(),
        "quantize": quantize,
        "mix_attention": mix,
        "check": {
            "all_pairs_loss": check.loss,
            "all_pairs_accuracy": check.accuracy,
            "logits": "logits.safetensors",
            "logit_tolerance": Check::LOGIT_TOLERANCE,
            "logit_tolerance_is": "relative to the largest |logit| of the input's row, at least 1",
            "inputs_off_allowed": Check::inputs_off_allowed(m),
            "loss_tolerance": check.loss_tolerance(m),
            "accuracy_tolerance": Check::inputs_off_allowed(m) as f64 / (p * p) as f64,
        },
    })
}
