//! Model weights in plain row-major matrices, the one list of the model's parameters
//! ([`PARAMS`]), and their safetensors form under TransformerLens names and shapes, so
//! users can load bitgrok models in the tools they already use.
//!
//! Every "for each parameter" (initialisation, AdamW, Grokfast, quantization, the
//! f64 reference, safetensors import and export) goes through [`ModelWeights::params`],
//! [`ModelWeights::params_mut`], [`ModelWeights::map`] or [`ModelWeights::try_build`],
//! all generated from the single list in the `model_weights!` invocation below: adding
//! a parameter is one edit there.
//!
//! In memory every projection is one matrix applied on the right (`x @ W`): the
//! heads of `W_Q`, `W_K`, `W_V` are column blocks of a d × d matrix and the heads
//! of `W_O` are row blocks. On disk they take TransformerLens shapes:
//! `W_Q|W_K|W_V` [n_heads, d_model, d_head] and `W_O` [n_heads, d_head, d_model].

use crate::config::Arch;
pub use crate::engine::safetensors_io::{
    from_safetensors_bytes, is_transformer_lens_buffer, read_safetensors, to_safetensors_bytes,
    NamedTensors,
};
use anyhow::{anyhow, bail, Result};

/// A dense row-major matrix (f32 for the model, f64 for the reference).
#[derive(Clone, Debug, PartialEq)]
pub struct Mat<T = f32> {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<T>,
}

impl<T: Copy + Default> Mat<T> {
    pub fn zeros(rows: usize, cols: usize) -> Mat<T> {
        Mat {
            rows,
            cols,
            data: vec![T::default(); rows * cols],
        }
    }
    pub fn from_vec(rows: usize, cols: usize, data: Vec<T>) -> Mat<T> {
        assert_eq!(data.len(), rows * cols, "matrix data length");
        Mat { rows, cols, data }
    }
    pub fn get(&self, r: usize, c: usize) -> T {
        self.data[r * self.cols + c]
    }
    pub fn row(&self, r: usize) -> &[T] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }
    pub fn row_mut(&mut self, r: usize) -> &mut [T] {
        &mut self.data[r * self.cols..(r + 1) * self.cols]
    }
}

/// A dimension of the model, resolved by [`Dims`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dim {
    /// p + 1 input tokens.
    Vocab,
    /// 3 positions.
    Positions,
    Model,
    Mlp,
    /// p output classes.
    Classes,
    One,
}

/// The sizes of one model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub modulus: usize,
    pub d_model: usize,
    pub heads: usize,
    pub d_mlp: usize,
}

impl Dims {
    pub fn of(self, dim: Dim) -> usize {
        match dim {
            Dim::Vocab => self.modulus + 1,
            Dim::Positions => 3,
            Dim::Model => self.d_model,
            Dim::Mlp => self.d_mlp,
            Dim::Classes => self.modulus,
            Dim::One => 1,
        }
    }
}

/// How a parameter is laid out under its TransformerLens name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// [rows, cols] as in memory.
    Matrix,
    /// [cols] (a vector; rows = 1 in memory).
    Vector,
    /// Heads as column blocks in memory, [n_heads, rows, d_head] on disk.
    HeadCols,
    /// Heads as row blocks in memory, [n_heads, d_head, cols] on disk (same bytes).
    HeadRows,
}

/// Initial value of a parameter (science.md §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// Gaussian with std `1/sqrt(fan_in)`; fan_in is the given dimension.
    Normal(Dim),
    Zeros,
    Ones,
}

/// Everything bitgrok knows about one parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Param {
    /// TransformerLens state-dict name.
    pub name: &'static str,
    /// In-memory shape.
    pub rows: Dim,
    pub cols: Dim,
    pub layout: Layout,
    /// Present only in architectures with this part (`None`: all).
    pub only: Option<Part>,
    /// Quantized by quantized precisions (the six projections, science.md §3).
    pub quantized: bool,
    pub init: Init,
}

impl Param {
    pub fn present(&self, arch: Arch) -> bool {
        self.only.is_none_or(|part| part.in_arch(arch))
    }
    /// In-memory (rows, cols).
    pub fn shape(&self, dims: &Dims) -> (usize, usize) {
        (dims.of(self.rows), dims.of(self.cols))
    }
    /// Shape under the TransformerLens name.
    pub fn disk_shape(&self, dims: &Dims) -> Vec<usize> {
        let (r, c) = self.shape(dims);
        let h = dims.heads;
        match self.layout {
            Layout::Matrix => vec![r, c],
            Layout::Vector => vec![c],
            Layout::HeadCols => vec![h, r, c / h],
            Layout::HeadRows => vec![h, r / h, c],
        }
    }
}

const fn param(name: &'static str, rows: Dim, cols: Dim, layout: Layout, init: Init) -> Param {
    Param {
        name,
        rows,
        cols,
        layout,
        only: None,
        quantized: false,
        init,
    }
}

const fn projection(name: &'static str, rows: Dim, cols: Dim, layout: Layout) -> Param {
    Param {
        quantized: true,
        ..param(name, rows, cols, layout, Init::Normal(rows))
    }
}

/// A part of the model only some architectures have ([`Arch`]'s descriptions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    PositionalEmbedding,
    MlpBiases,
    FinalNorm,
}

impl Part {
    pub fn in_arch(self, arch: Arch) -> bool {
        match self {
            Part::PositionalEmbedding => arch.has_positional_embedding(),
            Part::MlpBiases => arch.has_mlp_biases(),
            Part::FinalNorm => arch.has_final_norm(),
        }
    }
}

const fn only(part: Part, p: Param) -> Param {
    Param {
        only: Some(part),
        ..p
    }
}

/// The field types of the three kinds of parameter, and how each kind is visited.
macro_rules! param_kind {
    (slice mat $x:expr) => {
        Some(&$x.data[..])
    };
    (slice opt_mat $x:expr) => {
        $x.as_ref().map(|m| &m.data[..])
    };
    (slice opt_vec $x:expr) => {
        $x.as_deref()
    };
    (slice_mut mat $x:expr) => {
        Some(&mut $x.data[..])
    };
    (slice_mut opt_mat $x:expr) => {
        $x.as_mut().map(|m| &mut m.data[..])
    };
    (slice_mut opt_vec $x:expr) => {
        $x.as_deref_mut()
    };
    (map mat $x:expr, $f:expr) => {
        Mat {
            rows: $x.rows,
            cols: $x.cols,
            data: $f(&$x.data),
        }
    };
    (map opt_mat $x:expr, $f:expr) => {
        $x.as_ref().map(|m| Mat {
            rows: m.rows,
            cols: m.cols,
            data: $f(&m.data),
        })
    };
    (map opt_vec $x:expr, $f:expr) => {
        $x.as_ref().map(|v| $f(v))
    };
    (build mat $spec:expr, $arch:expr, $dims:expr, $f:expr) => {
        build_one($spec, $dims, &mut *$f).map(|(r, c, v)| Mat {
            rows: r,
            cols: c,
            data: v,
        })?
    };
    (build opt_mat $spec:expr, $arch:expr, $dims:expr, $f:expr) => {
        if $spec.present($arch) {
            Some(build_one($spec, $dims, &mut *$f).map(|(r, c, v)| Mat {
                rows: r,
                cols: c,
                data: v,
            })?)
        } else {
            None
        }
    };
    (build opt_vec $spec:expr, $arch:expr, $dims:expr, $f:expr) => {
        if $spec.present($arch) {
            Some(build_one($spec, $dims, &mut *$f)?.2)
        } else {
            None
        }
    };
}

type BuildFn<'a, T> = dyn FnMut(&'static Param, (usize, usize)) -> Result<Vec<T>> + 'a;

fn build_one<T>(
    spec: &'static Param,
    dims: &Dims,
    f: &mut BuildFn<'_, T>,
) -> Result<(usize, usize, Vec<T>)> {
    let (r, c) = spec.shape(dims);
    let v = f(spec, (r, c))?;
    if v.len() != r * c {
        bail!("{}: {} values, expected {r} × {c}", spec.name, v.len());
    }
    Ok((r, c, v))
}

/// Declares [`ModelWeights`] and [`PARAMS`] from one list, and the visitors over it.
macro_rules! model_weights {
    ($($(#[$doc:meta])* $field:ident: $kind:ident $ty:ty = $spec:expr;)*) => {
        /// All parameters of a one-layer model (science.md §2), f32 for the model and
        /// f64 for the reference. Optional parts exist for one architecture only.
        #[derive(Clone, Debug, PartialEq)]
        pub struct ModelWeights<T = f32> {
            pub arch: Arch,
            pub heads: usize,
            $($(#[$doc])* pub $field: $ty,)*
        }

        /// Every parameter, in the fixed order of all visitors (and of the random draws
        /// of initialisation).
        pub const PARAMS: &[Param] = &[$($spec),*];

        impl<T> ModelWeights<T> {
            /// The parameters present, with their flat data, in [`PARAMS`] order.
            pub fn params(&self) -> Vec<(&'static Param, &[T])> {
                let mut specs = PARAMS.iter();
                let mut out = Vec::with_capacity(PARAMS.len());
                $(
                    let spec = specs.next().expect("one spec per field");
                    if let Some(s) = param_kind!(slice $kind self.$field) {
                        out.push((spec, s));
                    }
                )*
                out
            }

            /// Mutable counterpart of [`ModelWeights::params`], same order.
            pub fn params_mut(&mut self) -> Vec<(&'static Param, &mut [T])> {
                let mut specs = PARAMS.iter();
                let mut out = Vec::with_capacity(PARAMS.len());
                $(
                    let spec = specs.next().expect("one spec per field");
                    if let Some(s) = param_kind!(slice_mut $kind self.$field) {
                        out.push((spec, s));
                    }
                )*
                out
            }

            /// A model of the same shape whose every parameter is `f(param, data)`,
            /// called in [`PARAMS`] order.
            pub fn map<U>(&self, mut f: impl FnMut(&'static Param, &[T]) -> Vec<U>) -> ModelWeights<U> {
                let mut specs = PARAMS.iter();
                ModelWeights {
                    arch: self.arch,
                    heads: self.heads,
                    $($field: {
                        let spec = specs.next().expect("one spec per field");
                        param_kind!(map $kind self.$field, |d: &[T]| f(spec, d))
                    },)*
                }
            }

            /// A model of architecture `arch` and sizes `dims` whose every present
            /// parameter is `f(param, (rows, cols))`, called in [`PARAMS`] order.
            pub fn try_build(
                arch: Arch,
                dims: &Dims,
                mut f: impl FnMut(&'static Param, (usize, usize)) -> Result<Vec<T>>,
            ) -> Result<ModelWeights<T>> {
                let mut specs = PARAMS.iter();
                let f: &mut BuildFn<'_, T> = &mut f;
                Ok(ModelWeights {
                    arch,
                    heads: dims.heads,
                    $($field: {
                        let spec = specs.next().expect("one spec per field");
                        param_kind!(build $kind spec, arch, dims, f)
                    },)*
                })
            }
        }
    };
}

model_weights! {
    /// [p + 1, d]: tokens 0..p-1 and `=` (id p).
    w_e: mat Mat<T> = param(W_E, Dim::Vocab, Dim::Model, Layout::Matrix, Init::Normal(Dim::Model));
    /// [3, d].
    w_pos: opt_mat Option<Mat<T>> = only(
        Part::PositionalEmbedding,
        param(W_POS, Dim::Positions, Dim::Model, Layout::Matrix, Init::Normal(Dim::Model)),
    );
    /// [d, d], heads as column blocks.
    w_q: mat Mat<T> = projection(W_Q, Dim::Model, Dim::Model, Layout::HeadCols);
    w_k: mat Mat<T> = projection(W_K, Dim::Model, Dim::Model, Layout::HeadCols);
    w_v: mat Mat<T> = projection(W_V, Dim::Model, Dim::Model, Layout::HeadCols);
    /// [d, d], heads as row blocks.
    w_o: mat Mat<T> = projection(W_O, Dim::Model, Dim::Model, Layout::HeadRows);
    /// [d, d_mlp].
    w_in: mat Mat<T> = projection(W_IN, Dim::Model, Dim::Mlp, Layout::Matrix);
    b_in: opt_vec Option<Vec<T>> = only(
        Part::MlpBiases,
        param(B_IN, Dim::One, Dim::Mlp, Layout::Vector, Init::Zeros),
    );
    /// [d_mlp, d].
    w_out: mat Mat<T> = projection(W_OUT, Dim::Mlp, Dim::Model, Layout::Matrix);
    b_out: opt_vec Option<Vec<T>> = only(
        Part::MlpBiases,
        param(B_OUT, Dim::One, Dim::Model, Layout::Vector, Init::Zeros),
    );
    /// RMSNorm gain [d].
    ln_final_w: opt_vec Option<Vec<T>> = only(
        Part::FinalNorm,
        param(LN_FINAL_W, Dim::One, Dim::Model, Layout::Vector, Init::Ones),
    );
    /// [d, p].
    w_u: mat Mat<T> = param(W_U, Dim::Model, Dim::Classes, Layout::Matrix, Init::Normal(Dim::Model));
}

impl<T> ModelWeights<T> {
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
    pub fn dims(&self) -> Dims {
        Dims {
            modulus: self.modulus(),
            d_model: self.width(),
            heads: self.heads,
            d_mlp: self.d_mlp(),
        }
    }
}

impl<T: Copy + Default> ModelWeights<T> {
    /// A model of the same shape with every parameter zero.
    pub fn zeros_like(&self) -> ModelWeights<T> {
        self.map(|_, d| vec![T::default(); d.len()])
    }
}

impl ModelWeights {
    /// The tensors of this model under TransformerLens names and shapes, in [`PARAMS`] order.
    pub fn to_named(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let dims = self.dims();
        self.params()
            .into_iter()
            .map(|(spec, data)| {
                let data = match spec.layout {
                    Layout::HeadCols => {
                        let (r, c) = spec.shape(&dims);
                        split_cols_by_head(data, r, c, dims.heads)
                    }
                    _ => data.to_vec(),
                };
                (spec.name.to_string(), spec.disk_shape(&dims), data)
            })
            .collect()
    }

    /// Rebuild a model of architecture `arch` from tensors under TransformerLens names
    /// (optionally all prefixed by `prefix`). Sizes come from `embed.W_E`,
    /// `unembed.W_U`, `blocks.0.attn.W_Q` and `blocks.0.mlp.W_in`; every tensor's
    /// shape is checked against them. Tensors the architecture does not have are
    /// not read (see `model_file` for the strict reader).
    pub fn from_named(tensors: &NamedTensors, prefix: &str, arch: Arch) -> Result<ModelWeights> {
        let dims = infer_dims(tensors, prefix)?;
        ModelWeights::try_build(arch, &dims, |spec, (r, c)| {
            let name = format!("{prefix}{}", spec.name);
            let (shape, data) = tensors
                .get(&name)
                .ok_or_else(|| anyhow!("missing tensor {name}"))?;
            let want = spec.disk_shape(&dims);
            if *shape != want {
                bail!("tensor {name} has shape {shape:?}, expected {want:?}");
            }
            Ok(match spec.layout {
                Layout::HeadCols => join_cols_by_head(data, r, c, dims.heads),
                _ => data.clone(),
            })
        })
    }
}

/// The sizes of a model from its tensors under TransformerLens names.
pub fn infer_dims(tensors: &NamedTensors, prefix: &str) -> Result<Dims> {
    let shape = |name: &str| -> Result<&Vec<usize>> {
        tensors
            .get(&format!("{prefix}{name}"))
            .map(|t| &t.0)
            .ok_or_else(|| anyhow!("missing tensor {prefix}{name}"))
    };
    let (e, u, q, m) = (shape(W_E)?, shape(W_U)?, shape(W_Q)?, shape(W_IN)?);
    if e.len() != 2 || u.len() != 2 || q.len() != 3 || m.len() != 2 {
        bail!("{W_E}, {W_U} and {W_IN} must be 2-D and {W_Q} 3-D");
    }
    let dims = Dims {
        modulus: u[1],
        d_model: e[1],
        heads: q[0],
        d_mlp: m[1],
    };
    for (what, n) in [
        ("d_vocab_out (unembed.W_U columns)", dims.modulus),
        ("d_model", dims.d_model),
        ("n_heads", dims.heads),
        ("d_mlp", dims.d_mlp),
    ] {
        if n == 0 {
            bail!("{what} is 0: a model needs every dimension at least 1");
        }
    }
    if u[0] != dims.d_model {
        bail!("{W_U} shape {u:?} does not match d_model {}", dims.d_model);
    }
    if q[0] * q[2] != dims.d_model {
        bail!("{W_Q} shape {q:?} does not match d_model {}", dims.d_model);
    }
    Ok(dims)
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
/// Prefix of the latent fp32 weights of quantized models in format-1 model files.
pub const LATENT_PREFIX: &str = "latent.";

/// [d, h*dh] (heads as column blocks) -> [h, d, dh] row-major.
fn split_cols_by_head(m: &[f32], d: usize, cols: usize, h: usize) -> Vec<f32> {
    let dh = cols / h;
    let mut out = Vec::with_capacity(m.len());
    for head in 0..h {
        for r in 0..d {
            out.extend_from_slice(&m[r * cols + head * dh..r * cols + (head + 1) * dh]);
        }
    }
    out
}

/// [h, d, dh] row-major -> [d, h*dh].
fn join_cols_by_head(data: &[f32], d: usize, cols: usize, h: usize) -> Vec<f32> {
    let dh = cols / h;
    let mut m = vec![0.0; d * cols];
    for head in 0..h {
        for r in 0..d {
            let src = &data[(head * d + r) * dh..(head * d + r + 1) * dh];
            m[r * cols + head * dh..r * cols + (head + 1) * dh].copy_from_slice(src);
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

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
        for arch in Arch::ALL {
            let w = toy(arch);
            let mut latent = w.clone();
            latent.w_q.data[3] = -42.0;
            let mut tensors = w.to_named();
            tensors.extend(
                latent
                    .to_named()
                    .into_iter()
                    .map(|(n, s, d)| (format!("{LATENT_PREFIX}{n}"), s, d)),
            );
            let meta = BTreeMap::from([("k".to_string(), "v".to_string())]);
            let bytes = to_safetensors_bytes(&tensors, &meta).unwrap();
            let (t, m) = from_safetensors_bytes(&bytes).unwrap();
            assert_eq!(m, meta);
            assert_eq!(ModelWeights::from_named(&t, "", arch).unwrap(), w);
            assert_eq!(
                ModelWeights::from_named(&t, LATENT_PREFIX, arch).unwrap(),
                latent
            );
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
        let err = ModelWeights::from_named(&t, "", Arch::Li2024)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unembed.W_U"), "{err}");
    }
}
