//! Model weights in plain row-major matrices, and their safetensors form under
//! TransformerLens names and shapes, so users can load bitgrok models in the tools
//! they already use.
//!
//! In memory every projection is one matrix applied on the right (`x @ W`): the
//! heads of `W_Q`, `W_K`, `W_V` are column blocks of a d × d matrix and the heads
//! of `W_O` are row blocks. On disk they take TransformerLens shapes:
//! `W_Q|W_K|W_V` [n_heads, d_model, d_head] and `W_O` [n_heads, d_head, d_model].
//!
//! A bitgrok model file holds the *effective* weights (what the forward pass used,
//! quantized for quantized precisions) under the plain TransformerLens names, so a
//! model loaded elsewhere behaves exactly as it did here. For quantized models the
//! latent fp32 weights the optimizer updated are stored too, under the same names
//! with the prefix `latent.`.

use crate::config::Arch;
use anyhow::{anyhow, bail, Context, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// A dense row-major f32 matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Mat {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Mat {
    pub fn zeros(rows: usize, cols: usize) -> Mat {
        Mat {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }
    pub fn from_vec(rows: usize, cols: usize, data: Vec<f32>) -> Mat {
        assert_eq!(data.len(), rows * cols, "matrix data length");
        Mat { rows, cols, data }
    }
    pub fn get(&self, r: usize, c: usize) -> f32 {
        self.data[r * self.cols + c]
    }
    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }
}

/// All parameters of a one-layer model (science.md §2). Optional parts exist for
/// one architecture only: `w_pos`, `b_in`, `b_out` for nanda2023, `ln_final_w` for li2024.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelWeights {
    pub arch: Arch,
    pub heads: usize,
    /// [p + 1, d]: tokens 0..p-1 and `=` (id p).
    pub w_e: Mat,
    /// [3, d].
    pub w_pos: Option<Mat>,
    /// [d, d] each, heads as column blocks.
    pub w_q: Mat,
    pub w_k: Mat,
    pub w_v: Mat,
    /// [d, d], heads as row blocks.
    pub w_o: Mat,
    /// [d, d_mlp].
    pub w_in: Mat,
    pub b_in: Option<Vec<f32>>,
    /// [d_mlp, d].
    pub w_out: Mat,
    pub b_out: Option<Vec<f32>>,
    /// RMSNorm gain [d].
    pub ln_final_w: Option<Vec<f32>>,
    /// [d, p].
    pub w_u: Mat,
}

impl ModelWeights {
    pub fn modulus(&self) -> usize {
        self.w_u.cols
    }
    pub fn width(&self) -> usize {
        self.w_e.cols
    }
    pub fn d_head(&self) -> usize {
        self.width() / self.heads
    }
    pub fn d_mlp(&self) -> usize {
        self.w_in.cols
    }

    /// The six matrices that quantized precisions quantize, by TransformerLens name.
    pub fn projections(&self) -> [(&'static str, &Mat); 6] {
        [
            (W_Q, &self.w_q),
            (W_K, &self.w_k),
            (W_V, &self.w_v),
            (W_O, &self.w_o),
            (W_IN, &self.w_in),
            (W_OUT, &self.w_out),
        ]
    }

    /// The tensors of this model under TransformerLens names and shapes, in a fixed order.
    pub fn to_named(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let (d, h, dh) = (self.width(), self.heads, self.d_head());
        let mut out = vec![(
            W_E.to_string(),
            vec![self.w_e.rows, d],
            self.w_e.data.clone(),
        )];
        if let Some(w) = &self.w_pos {
            out.push((W_POS.into(), vec![w.rows, d], w.data.clone()));
        }
        for (name, m) in [(W_Q, &self.w_q), (W_K, &self.w_k), (W_V, &self.w_v)] {
            out.push((name.into(), vec![h, d, dh], split_cols_by_head(m, h)));
        }
        // W_O's head blocks are row blocks, so the row-major layout already is [h, dh, d].
        out.push((W_O.into(), vec![h, dh, d], self.w_o.data.clone()));
        out.push((W_IN.into(), vec![d, self.d_mlp()], self.w_in.data.clone()));
        if let Some(b) = &self.b_in {
            out.push((B_IN.into(), vec![b.len()], b.clone()));
        }
        out.push((W_OUT.into(), vec![self.d_mlp(), d], self.w_out.data.clone()));
        if let Some(b) = &self.b_out {
            out.push((B_OUT.into(), vec![b.len()], b.clone()));
        }
        if let Some(g) = &self.ln_final_w {
            out.push((LN_FINAL_W.into(), vec![g.len()], g.clone()));
        }
        out.push((W_U.into(), vec![d, self.modulus()], self.w_u.data.clone()));
        out
    }

    /// Rebuild a model from tensors under TransformerLens names (optionally all
    /// prefixed by `prefix`). The architecture is inferred: `pos_embed.W_pos` present
    /// means nanda2023, otherwise li2024. Shapes are checked against each other.
    pub fn from_named(
        tensors: &HashMap<String, (Vec<usize>, Vec<f32>)>,
        prefix: &str,
    ) -> Result<ModelWeights> {
        let get = |name: &str| -> Result<&(Vec<usize>, Vec<f32>)> {
            tensors
                .get(&format!("{prefix}{name}"))
                .ok_or_else(|| anyhow!("missing tensor {prefix}{name}"))
        };
        let opt = |name: &str| tensors.get(&format!("{prefix}{name}"));
        let mat = |name: &str, rows: usize, cols: usize| -> Result<Mat> {
            let (shape, data) = get(name)?;
            if shape.as_slice() != [rows, cols] {
                bail!("tensor {prefix}{name} has shape {shape:?}, expected [{rows}, {cols}]");
            }
            Ok(Mat::from_vec(rows, cols, data.clone()))
        };
        let vector = |name: &str, len: usize| -> Result<Option<Vec<f32>>> {
            match opt(name) {
                None => Ok(None),
                Some((shape, data)) if shape.as_slice() == [len] => Ok(Some(data.clone())),
                Some((shape, _)) => {
                    bail!("tensor {prefix}{name} has shape {shape:?}, expected [{len}]")
                }
            }
        };
        let (e_shape, _) = get(W_E)?;
        let (u_shape, _) = get(W_U)?;
        let (q_shape, _) = get(W_Q)?;
        if e_shape.len() != 2 || u_shape.len() != 2 || q_shape.len() != 3 {
            bail!("embed.W_E, unembed.W_U must be 2-D and blocks.0.attn.W_Q 3-D");
        }
        let (vocab, d) = (e_shape[0], e_shape[1]);
        let p = u_shape[1];
        let (h, dh) = (q_shape[0], q_shape[2]);
        if h * dh != d {
            bail!("blocks.0.attn.W_Q shape {q_shape:?} does not match d_model {d}");
        }
        let d_mlp = get(W_IN)?.0.get(1).copied().unwrap_or(0);
        let head_mat = |name: &str| -> Result<Mat> {
            let (shape, data) = get(name)?;
            if shape.as_slice() != [h, d, dh] {
                bail!("tensor {prefix}{name} has shape {shape:?}, expected [{h}, {d}, {dh}]");
            }
            Ok(join_cols_by_head(data, h, d, dh))
        };
        let w_o = {
            let (shape, data) = get(W_O)?;
            if shape.as_slice() != [h, dh, d] {
                bail!("tensor {prefix}{W_O} has shape {shape:?}, expected [{h}, {dh}, {d}]");
            }
            Mat::from_vec(d, d, data.clone())
        };
        let w_pos = match opt(W_POS) {
            Some(_) => Some(mat(W_POS, 3, d)?),
            None => None,
        };
        Ok(ModelWeights {
            arch: if w_pos.is_some() {
                Arch::Nanda2023
            } else {
                Arch::Li2024
            },
            heads: h,
            w_e: mat(W_E, vocab, d)?,
            w_pos,
            w_q: head_mat(W_Q)?,
            w_k: head_mat(W_K)?,
            w_v: head_mat(W_V)?,
            w_o,
            w_in: mat(W_IN, d, d_mlp)?,
            b_in: vector(B_IN, d_mlp)?,
            w_out: mat(W_OUT, d_mlp, d)?,
            b_out: vector(B_OUT, d)?,
            ln_final_w: vector(LN_FINAL_W, d)?,
            w_u: mat(W_U, d, p)?,
        })
    }
}

pub const W_E: &str = "embed.W_E";
pub const W_POS: &str = "pos_embed.W_pos";
pub const W_Q: &str = "blocks.0.attn.W_Q";
pub const W_K: &str = "blocks.0.attn.W_K";
pub const W_V: &str = "blocks.0.attn.W_V";
pub const W_O: &str = "blocks.0.attn.W_O";
pub const W_IN: &str = "blocks.0.mlp.W_in";
pub const B_IN: &str = "blocks.0.mlp.b_in";
pub const W_OUT: &str = "blocks.0.mlp.W_out";
pub const B_OUT: &str = "blocks.0.mlp.b_out";
pub const LN_FINAL_W: &str = "ln_final.w";
pub const W_U: &str = "unembed.W_U";
/// Prefix of the latent fp32 weights of quantized models.
pub const LATENT_PREFIX: &str = "latent.";

/// [d, h*dh] (heads as column blocks) -> [h, d, dh] row-major.
fn split_cols_by_head(m: &Mat, h: usize) -> Vec<f32> {
    let (d, dh) = (m.rows, m.cols / h);
    let mut out = Vec::with_capacity(m.data.len());
    for head in 0..h {
        for r in 0..d {
            out.extend_from_slice(&m.row(r)[head * dh..(head + 1) * dh]);
        }
    }
    out
}

/// [h, d, dh] row-major -> [d, h*dh].
fn join_cols_by_head(data: &[f32], h: usize, d: usize, dh: usize) -> Mat {
    let mut m = Mat::zeros(d, h * dh);
    for head in 0..h {
        for r in 0..d {
            let src = &data[(head * d + r) * dh..(head * d + r + 1) * dh];
            m.data[r * h * dh + head * dh..r * h * dh + (head + 1) * dh].copy_from_slice(src);
        }
    }
    m
}

/// Named f32 tensors plus string metadata: the content of one safetensors file.
pub type NamedTensors = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// Serialise named f32 tensors and metadata to safetensors bytes (names sorted, so
/// the same tensors always give the same bytes).
pub fn to_safetensors_bytes(
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                s.clone(),
                d.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(n, s, b)| {
            Ok((
                n.as_str(),
                safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let meta: HashMap<String, String> = metadata.clone().into_iter().collect();
    let meta = if meta.is_empty() { None } else { Some(meta) };
    Ok(safetensors::serialize(views, &meta)?)
}

/// Parse safetensors bytes holding f32 tensors.
pub fn from_safetensors_bytes(buf: &[u8]) -> Result<(NamedTensors, BTreeMap<String, String>)> {
    let st = SafeTensors::deserialize(buf)?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            bail!(
                "tensor {name} has dtype {:?}; bitgrok reads F32 tensors only",
                view.dtype()
            );
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.insert(name, (view.shape().to_vec(), data));
    }
    let (_, header) = SafeTensors::read_metadata(buf)?;
    let meta = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    Ok((out, meta))
}

/// Read a safetensors file of f32 tensors.
pub fn read_safetensors(path: &Path) -> Result<(NamedTensors, BTreeMap<String, String>)> {
    let buf = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    from_safetensors_bytes(&buf).with_context(|| format!("parsing {}", path.display()))
}

/// The tensors of a model file: effective weights under TransformerLens names, plus
/// the latent weights under `latent.` names when given.
pub fn model_tensors(
    effective: &ModelWeights,
    latent: Option<&ModelWeights>,
) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut t = effective.to_named();
    if let Some(l) = latent {
        t.extend(
            l.to_named()
                .into_iter()
                .map(|(n, s, d)| (format!("{LATENT_PREFIX}{n}"), s, d)),
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(arch: Arch) -> ModelWeights {
        let (p, d, h, m) = (5, 8, 2, 16);
        let seq = |n: usize, off: f32| (0..n).map(|i| i as f32 * 0.5 + off).collect::<Vec<_>>();
        let nanda = arch == Arch::Nanda2023;
        ModelWeights {
            arch,
            heads: h,
            w_e: Mat::from_vec(p + 1, d, seq((p + 1) * d, 0.0)),
            w_pos: nanda.then(|| Mat::from_vec(3, d, seq(3 * d, 1.0))),
            w_q: Mat::from_vec(d, d, seq(d * d, 2.0)),
            w_k: Mat::from_vec(d, d, seq(d * d, 3.0)),
            w_v: Mat::from_vec(d, d, seq(d * d, 4.0)),
            w_o: Mat::from_vec(d, d, seq(d * d, 5.0)),
            w_in: Mat::from_vec(d, m, seq(d * m, 6.0)),
            b_in: nanda.then(|| seq(m, 7.0)),
            w_out: Mat::from_vec(m, d, seq(m * d, 8.0)),
            b_out: nanda.then(|| seq(d, 9.0)),
            ln_final_w: (!nanda).then(|| seq(d, 10.0)),
            w_u: Mat::from_vec(d, p, seq(d * p, 11.0)),
        }
    }

    #[test]
    fn safetensors_round_trip_keeps_every_weight_and_the_arch() {
        for arch in [Arch::Li2024, Arch::Nanda2023] {
            let w = toy(arch);
            let mut latent = w.clone();
            latent.w_q.data[3] = -42.0;
            let meta = BTreeMap::from([("k".to_string(), "v".to_string())]);
            let bytes = to_safetensors_bytes(&model_tensors(&w, Some(&latent)), &meta).unwrap();
            let (t, m) = from_safetensors_bytes(&bytes).unwrap();
            assert_eq!(m, meta);
            assert_eq!(ModelWeights::from_named(&t, "").unwrap(), w);
            assert_eq!(ModelWeights::from_named(&t, LATENT_PREFIX).unwrap(), latent);
        }
    }

    #[test]
    fn head_layout_follows_transformerlens() {
        let w = toy(Arch::Li2024);
        let named = w.to_named();
        let (_, shape, data) = named.iter().find(|(n, _, _)| n == W_Q).unwrap();
        let (h, d, dh) = (shape[0], shape[1], shape[2]);
        for head in 0..h {
            for r in 0..d {
                for j in 0..dh {
                    assert_eq!(data[(head * d + r) * dh + j], w.w_q.get(r, head * dh + j));
                }
            }
        }
    }

    #[test]
    fn wrong_shapes_are_reported_by_name() {
        let w = toy(Arch::Li2024);
        let mut t: NamedTensors = w
            .to_named()
            .into_iter()
            .map(|(n, s, d)| (n, (s, d)))
            .collect();
        t.get_mut(W_U).unwrap().0 = vec![5, 8];
        let err = ModelWeights::from_named(&t, "").unwrap_err().to_string();
        assert!(err.contains("unembed.W_U"), "{err}");
    }
}
