//! Fused operations of the fast pass, recorded on the dfdx tape with hand-written
//! backward passes. Each one replaces a chain of dfdx element-wise ops (which run
//! single-threaded and allocate a buffer per op) by one or two passes over memory.
//! Every backward pass *adds* into the input gradients, as dfdx ops do.
//!
//! Determinism: parallel loops split rows (or heads, or column blocks) into fixed
//! chunks, each computed in a fixed order, and reductions across chunks add in chunk
//! order; matrix products go through `gemm` with the current rayon pool's threads,
//! which splits the output, not the summation. Results therefore do not depend on
//! the thread count (a test checks this bit for bit at the seed study's cell size).

use super::chains;
pub use super::fused::attention_mlp;
use super::kernels::{
    column_sums, position_weights, rms_gain_partial, rms_rows_backward, rms_rows_forward,
};
use super::relu_products::{relu_t_times, relu_times, NonzeroBits};
use super::softmax;
use super::{Tp, T2};
use crate::config::AttentionMix;
use dfdx::prelude::*;
use rayon::prelude::*;
use std::sync::Arc;

/// Rows per parallel task. Fixed, so that chunked reductions sum in the same order
/// whatever the number of threads.
pub(super) const ROWS_PER_TASK: usize = 64;

/// Record an op with inputs `inputs` (all 2-D, contiguous) and output `out` of `shape`.
/// `backward(dout, dinputs)` adds the input gradients.
pub(super) fn record<S: Shape>(
    inputs: Vec<T2>,
    out: Vec<f32>,
    shape: S,
    backward: impl FnOnce(&[f32], &mut [&mut [f32]]) + 'static,
) -> Tensor<S, f32, Cpu, Tp> {
    let dev: Cpu = Default::default();
    let mut tape: Tp = Default::default();
    let mut ghosts = Vec::with_capacity(inputs.len());
    for t in inputs {
        let (t, t_tape) = t.split_tape();
        tape = tape.merge(t_tape);
        ghosts.push(t.ghost());
    }
    let out = dev.tensor_from_vec(out, shape);
    let out_ghost = out.ghost();
    tape.add_backward_op(move |grads| {
        for g in &ghosts {
            grads.try_alloc_for(g)?;
        }
        let dout = grads.get_or_alloc_mut(&out_ghost)?;
        let mut seen: Vec<(*const f32, usize)> = vec![(dout.as_ptr(), dout.len())];
        // SAFETY: `dout` points into the heap buffer of the output's gradient, which
        // lives in `grads` for the whole backward op: no gradient is inserted or removed
        // below (every input was allocated above), and inserting would move only the
        // `Vec` header, not its heap buffer. Aliasing with the `&mut` slices below is
        // ruled out by the distinct-buffer assert.
        let dout: &[f32] = unsafe { std::slice::from_raw_parts(dout.as_ptr(), dout.len()) };
        let mut dins: Vec<&mut [f32]> = Vec::with_capacity(ghosts.len());
        for g in &ghosts {
            let buf = grads.get_or_alloc_mut(g)?;
            let (ptr, len) = (buf.as_mut_ptr(), buf.len());
            // Distinct tensor ids have distinct gradient buffers; dfdx's own
            // `many_and_ref` asserts the ids, which it does not expose, so the buffers
            // are compared instead (empty buffers cannot alias).
            assert!(
                len == 0 || seen.iter().all(|&(q, n)| n == 0 || !std::ptr::eq(q, ptr)),
                "record: two tensors of one op share a gradient buffer (same tensor id)"
            );
            seen.push((ptr, len));
            // SAFETY: `ptr..ptr+len` is the live heap buffer of this input's gradient
            // (see above), and the assert guarantees that no other slice handed to
            // `backward` overlaps it.
            dins.push(unsafe { std::slice::from_raw_parts_mut(ptr, len) });
        }
        backward(dout, &mut dins);
        Ok(())
    });
    out.put_tape(tape)
}

thread_local! {
    /// Buffers of earlier ops kept for later ones on this thread (see [`Scratch`]).
    static SCRATCH: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The most buffers a thread keeps for reuse.
const SCRATCH_KEPT: usize = 16;

/// A buffer of floats whose contents are left from an earlier use, for an output that
/// is written in full before it is read. It goes back to its thread's pool when
/// dropped, so a step's largest buffers are neither zeroed nor faulted in afresh
/// every step. Reading it before writing it would make results depend on earlier
/// steps: only whole-buffer outputs use it.
///
/// It starts on a 64-byte boundary: the kernels' 32-byte loads then never straddle
/// two cache lines (which costs the skipping products a third of their time).
pub(super) struct Scratch {
    buf: Vec<f32>,
    start: usize,
    len: usize,
}

/// Floats in a cache line: a buffer that many longer can start on any boundary.
const LINE_FLOATS: usize = 16;

impl Scratch {
    pub(super) fn new(len: usize) -> Self {
        let need = len + LINE_FLOATS - 1;
        // The smallest kept buffer that is large enough, or a new one.
        let mut buf = SCRATCH
            .with(|pool| {
                let mut pool = pool.borrow_mut();
                let best = (0..pool.len())
                    .filter(|&i| pool[i].capacity() >= need)
                    .min_by_key(|&i| pool[i].capacity());
                best.map(|i| pool.swap_remove(i))
            })
            .unwrap_or_default();
        if buf.len() < need {
            buf.resize(need, 0.0);
        }
        let start = buf.as_ptr().align_offset(64);
        assert!(start < LINE_FLOATS, "f32 buffers are 4-byte aligned");
        Scratch { buf, start, len }
    }
}

impl std::ops::Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[self.start..self.start + self.len]
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.buf);
        let _ = SCRATCH.try_with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < SCRATCH_KEPT {
                pool.push(v);
            }
        });
    }
}

/// A matrix's elements, row-major (one `memcpy`; `as_vec` walks them one by one).
pub(super) fn data<T>(t: &Tensor<(usize, usize), f32, Cpu, T>) -> Vec<f32> {
    let mut v = vec![0.0; t.shape().0 * t.shape().1];
    t.copy_into(&mut v);
    v
}

/// Row-major matrix product `c (+)= op(a) · op(b)` with `op(a)` [m, k] and `op(b)` [k, n];
/// `ta`/`tb` say that `a`/`b` are stored transposed. The bits are `gemm`'s
/// ([`gemm_matmul`]); where it applies, our kernel computes them ([`super::chains`]).
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    c: &mut [f32],
    a: &[f32],
    ta: bool,
    b: &[f32],
    tb: bool,
    (m, k, n): (usize, usize, usize),
    accumulate: bool,
) {
    assert!(c.len() >= m * n && a.len() >= m * k && b.len() >= k * n);
    let shape = (m, k, n);
    // Our kernel needs finite operands. A NaN or an infinity among them makes a whole
    // row or column of the result non-finite (it enters every FMA chain of that row
    // or column and stays), so a finite result proves them finite: where the result
    // is smaller than the operands, it is checked instead (when accumulating, `c` is
    // copied to start again from rather than checked), and `gemm` recomputes a
    // non-finite one.
    if chains::shape_applies(shape) && m * n < m * k + k * n {
        let before = accumulate.then(|| c[..m * n].to_vec());
        chains::matmul(c, a, ta, b, tb, shape, accumulate);
        if chains::all_finite(&c[..m * n]) {
            return;
        }
        if let Some(before) = before {
            c[..m * n].copy_from_slice(&before);
        }
    } else if chains::applies(c, a, b, shape, accumulate) {
        chains::matmul(c, a, ta, b, tb, shape, accumulate);
        return;
    }
    gemm_matmul(c, a, ta, b, tb, shape, accumulate);
}

/// [`matmul`] with `c`'s rows handed out in blocks of `block_rows`, each to
/// `then(first row, its rows of c)` as soon as it is computed (by our kernel; after
/// the whole product where `gemm` computes it); the results in block order.
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul_by_rows<R: Send>(
    c: &mut [f32],
    a: &[f32],
    ta: bool,
    b: &[f32],
    tb: bool,
    (m, k, n): (usize, usize, usize),
    accumulate: bool,
    block_rows: usize,
    then: impl Fn(usize, &mut [f32]) -> R + Sync,
) -> Vec<R> {
    if chains::applies(c, a, b, (m, k, n), accumulate) {
        return chains::matmul_by_rows(c, a, ta, b, tb, (m, k, n), accumulate, block_rows, then);
    }
    gemm_matmul(c, a, ta, b, tb, (m, k, n), accumulate);
    c[..m * n]
        .par_chunks_mut(block_rows * n)
        .enumerate()
        .map(|(blk, rows)| then(blk * block_rows, rows))
        .collect()
}

/// [`matmul`] by the `gemm` crate (0.15.5, pinned: its chains are the contract).
#[allow(clippy::too_many_arguments)]
pub fn gemm_matmul(
    c: &mut [f32],
    a: &[f32],
    ta: bool,
    b: &[f32],
    tb: bool,
    (m, k, n): (usize, usize, usize),
    accumulate: bool,
) {
    assert!(c.len() >= m * n && a.len() >= m * k && b.len() >= k * n);
    if m == 0 || n == 0 {
        return;
    }
    // (row stride, column stride) of op(a) and op(b).
    let (a_rs, a_cs) = if ta { (1, m as isize) } else { (k as isize, 1) };
    let (b_rs, b_cs) = if tb { (1, k as isize) } else { (n as isize, 1) };
    // SAFETY: the assert above bounds every index gemm touches: op(a) is m × k and
    // op(b) k × n with the strides given, c is m × n row-major; c does not overlap a or
    // b (it is a distinct `&mut` borrow).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(rayon::current_num_threads()),
        )
    }
}

pub(super) fn add_into(dst: &mut [f32], src: &[f32]) {
    const BLOCK: usize = 1 << 14;
    dst.par_chunks_mut(BLOCK)
        .zip(src.par_chunks(BLOCK))
        .for_each(|(d, s)| {
            for (d, s) in d.iter_mut().zip(s) {
                *d += s;
            }
        });
}

/// Column sums of a row-major [rows, cols] buffer added into `dst`: f64 sums over
/// fixed chunks of [`ROWS_PER_TASK`] rows ([`chunk_column_sums`]), added in chunk
/// order (deterministic whatever the thread count).
pub(super) fn add_column_sums(dst: &mut [f32], x: &[f32], cols: usize) {
    let parts: Vec<Vec<f64>> = x
        .par_chunks(cols * ROWS_PER_TASK)
        .map(|chunk| chunk_column_sums(chunk, cols))
        .collect();
    add_chunk_sums(dst, parts);
}

/// One chunk's part of [`add_column_sums`].
pub(super) fn chunk_column_sums(chunk: &[f32], cols: usize) -> Vec<f64> {
    let mut acc = vec![0.0f64; cols];
    column_sums(chunk, cols, &mut acc);
    acc
}

/// The chunks' column sums added in chunk order, then into `dst`.
pub(super) fn add_chunk_sums(dst: &mut [f32], parts: impl IntoIterator<Item = Vec<f64>>) {
    let mut acc = vec![0.0f64; dst.len()];
    for p in parts {
        for (a, v) in acc.iter_mut().zip(p) {
            *a += v;
        }
    }
    for (d, a) in dst.iter_mut().zip(acc) {
        *d += a as f32;
    }
}

/// Per-token activation quantization with a straight-through backward pass.
pub fn quantize_activations(x: T2, bits: u32, eps: f64) -> T2 {
    let (rows, cols) = *x.shape();
    let mut out = data(&x);
    crate::engine::quant::quantize_rows(&mut out, cols, bits, eps);
    record(vec![x], out, (rows, cols), |dout, dins| {
        add_into(dins[0], dout)
    })
}

/// Attention read-out at position 2: for every example `i` with table rows
/// `rows[i] = [r0, r1, r2]` and every head `h`, the weights are
/// `rate·softmax_j(scores[r_j, h]) + uniform` ([`position_weights`]) and the
/// output's head block is `Σ_j w_j · v[r_j, head h]`.
/// `scores` [table rows, heads] (already scaled), `v` [table rows, d] -> [n, d].
pub fn attend(scores: T2, v: T2, rows: Arc<Vec<[u32; 3]>>, heads: usize, mix: AttentionMix) -> T2 {
    let (rate, uniform) = (mix.rate as f32, mix.uniform_weight_f32());
    let (_, d) = *v.shape();
    let dh = d / heads;
    let n = rows.len();
    let s = data(&scores);
    let vv = data(&v);
    let mut weights = vec![0.0f32; n * heads * 3];
    let mut probs = vec![0.0f32; n * heads * 3];
    let mut out = vec![0.0f32; n * d];
    out.par_chunks_mut(d * ROWS_PER_TASK)
        .zip(weights.par_chunks_mut(heads * 3 * ROWS_PER_TASK))
        .zip(probs.par_chunks_mut(heads * 3 * ROWS_PER_TASK))
        .enumerate()
        .for_each(|(c, ((out, weights), probs))| {
            for (k, ((o_row, w_row), p_row)) in out
                .chunks_exact_mut(d)
                .zip(weights.chunks_exact_mut(heads * 3))
                .zip(probs.chunks_exact_mut(heads * 3))
                .enumerate()
            {
                let r = rows[c * ROWS_PER_TASK + k].map(|x| x as usize);
                position_weights(&s, r, heads, rate, uniform, w_row, p_row);
                for h in 0..heads {
                    let w = &w_row[h * 3..h * 3 + 3];
                    let o = &mut o_row[h * dh..(h + 1) * dh];
                    let v0 = &vv[r[0] * d + h * dh..][..dh];
                    let v1 = &vv[r[1] * d + h * dh..][..dh];
                    let v2 = &vv[r[2] * d + h * dh..][..dh];
                    for c in 0..dh {
                        o[c] = w[0] * v0[c] + w[1] * v1[c] + w[2] * v2[c];
                    }
                }
            }
        });
    let table_rows = v.shape().0;
    record(vec![scores, v], out, (n, d), move |dout, dins| {
        let [ds, dv] = dins else { unreachable!() };
        // Each head owns its columns of dv and its column of ds: one task per head.
        let per_head: Vec<(Vec<f32>, Vec<f32>)> = (0..heads)
            .into_par_iter()
            .map(|h| {
                let mut dvh = vec![0.0f32; table_rows * dh];
                let mut dsh = vec![0.0f32; table_rows];
                for (i, r) in rows.iter().enumerate() {
                    let r = r.map(|x| x as usize);
                    let w = &weights[(i * heads + h) * 3..(i * heads + h) * 3 + 3];
                    let sm = &probs[(i * heads + h) * 3..(i * heads + h) * 3 + 3];
                    let g = &dout[i * d + h * dh..i * d + (h + 1) * dh];
                    let mut dw = [0.0f32; 3];
                    for j in 0..3 {
                        let vj = &vv[r[j] * d + h * dh..][..dh];
                        dw[j] = g.iter().zip(vj).map(|(a, b)| a * b).sum();
                        let dvj = &mut dvh[r[j] * dh..(r[j] + 1) * dh];
                        for c in 0..dh {
                            dvj[c] += w[j] * g[c];
                        }
                    }
                    let dot = sm[0] * dw[0] + sm[1] * dw[1] + sm[2] * dw[2];
                    for j in 0..3 {
                        dsh[r[j]] += (rate * sm[j]) * (dw[j] - dot);
                    }
                }
                (dvh, dsh)
            })
            .collect();
        for (h, (dvh, dsh)) in per_head.iter().enumerate() {
            for t in 0..table_rows {
                ds[t * heads + h] += dsh[t];
                for c in 0..dh {
                    dv[t * d + h * dh + c] += dvh[t * dh + c];
                }
            }
        }
    })
}

/// The MLP block with its residual: `x + relu(x·W_in + b_in)·W_out + b_out`
/// (inputs of both matrices optionally quantized per token, straight-through).
pub fn mlp_block(
    x: T2,
    w_in: T2,
    b_in: Option<T2>,
    w_out: T2,
    b_out: Option<T2>,
    act_bits: u32,
    eps: f64,
) -> T2 {
    let (n, d) = *x.shape();
    let m = w_in.shape().1;
    let xv = data(&x);
    let w_in_v = data(&w_in);
    let w_out_v = data(&w_out);
    let b_in_v = b_in.as_ref().map(data);
    let b_out_v = b_out.as_ref().map(data);
    let xq = if act_bits > 0 {
        let mut q = xv.clone();
        crate::engine::quant::quantize_rows(&mut q, d, act_bits, eps);
        Some(q)
    } else {
        None
    };
    let mut hidden = vec![0.0f32; n * m];
    matmul(
        &mut hidden,
        xq.as_ref().unwrap_or(&xv),
        false,
        &w_in_v,
        false,
        (n, d, m),
        false,
    );
    hidden.par_chunks_mut(m * ROWS_PER_TASK).for_each(|rows| {
        for row in rows.chunks_exact_mut(m) {
            if let Some(b) = &b_in_v {
                for (x, b) in row.iter_mut().zip(b) {
                    *x = (*x + b).max(0.0);
                }
            } else {
                for x in row.iter_mut() {
                    *x = x.max(0.0);
                }
            }
        }
    });
    let aq = (act_bits > 0).then(|| {
        let mut q = hidden.clone();
        crate::engine::quant::quantize_rows(&mut q, m, act_bits, eps);
        q
    });
    let mut out = xv.clone();
    if let Some(b) = &b_out_v {
        for row in out.chunks_exact_mut(d) {
            add_into(row, b);
        }
    }
    let a_used = aq.as_ref().unwrap_or(&hidden);
    let nonzero = NonzeroBits::of(a_used, n, m);
    relu_times(&mut out, a_used, &nonzero, &w_out_v, (n, m, d), true);
    let has_bias = b_in.is_some();
    let mut inputs = vec![x, w_in, w_out];
    inputs.extend(b_in);
    inputs.extend(b_out);
    let x_used = xq.unwrap_or(xv);
    record(inputs, out, (n, d), move |g, dins| {
        let (dx, rest) = dins.split_first_mut().unwrap();
        let (dw_in, rest) = rest.split_first_mut().unwrap();
        let (dw_out, rest) = rest.split_first_mut().unwrap();
        let a_used = aq.as_ref().unwrap_or(&hidden);
        relu_t_times(dw_out, a_used, &nonzero, g, (m, n, d), true);
        let mut dh = vec![0.0f32; n * m];
        matmul(&mut dh, g, false, &w_out_v, true, (n, d, m), false);
        dh.par_chunks_mut(1 << 14)
            .zip(hidden.par_chunks(1 << 14))
            .for_each(|(dh, a)| {
                for (dv, a) in dh.iter_mut().zip(a) {
                    if *a <= 0.0 {
                        *dv = 0.0;
                    }
                }
            });
        if has_bias {
            add_column_sums(rest[0], &dh, m);
            add_column_sums(rest[1], g, d);
        }
        matmul(dw_in, &x_used, true, &dh, false, (d, n, m), true);
        add_into(dx, g);
        matmul(dx, &dh, false, &w_in_v, true, (n, m, d), true);
    })
}

/// Side results of [`head`].
pub struct CrossEntropyStats {
    /// Number of examples (with multiplicity) whose first argmax is the label.
    pub correct: usize,
    pub logits: Option<Vec<f32>>,
}

/// The model's head as one op: the final RMSNorm `xn = x / ‖x‖ · sqrt(d) ⊙ gain` per
/// row (when the model has a gain; else `xn = x`), the logits `xn·W_U` [n, p] and
/// their cross-entropy against `labels`, averaged over the examples with
/// multiplicities `counts`. Its arithmetic is that of the three ops it fuses, each
/// gradient added into a zeroed buffer as dfdx adds into a fresh gradient
/// (`dlogits`, `dxn += dlogits·W_Uᵀ`, `dW_U += xnᵀ·dlogits`, then the norm's
/// backward); only the copies of `xn` and the logits into tensors of their own and
/// back are gone.
pub fn head(
    x: T2,
    gain: Option<T2>,
    w_u: T2,
    labels: Arc<Vec<u32>>,
    counts: Arc<Vec<u32>>,
    keep_logits: bool,
) -> (Tensor<(), f32, Cpu, Tp>, CrossEntropyStats) {
    let (n, d) = *x.shape();
    let p = w_u.shape().1;
    assert_eq!(w_u.shape().0, d, "inner dimensions differ");
    let xv = data(&x);
    let g = gain.as_ref().map(data);
    let wv = data(&w_u);
    // The norm's output and per-row factors (written in full), or x itself.
    let norm = g.as_ref().map(|g| {
        let sd = (d as f32).sqrt();
        let mut rs = vec![0.0f32; n];
        let mut xn = Scratch::new(n * d);
        xn.par_chunks_mut(d * ROWS_PER_TASK)
            .zip(rs.par_chunks_mut(ROWS_PER_TASK))
            .zip(xv.par_chunks(d * ROWS_PER_TASK))
            .for_each(|((out, rs), xv)| rms_rows_forward(d, sd, g, xv, rs, out));
        (xn, rs)
    });
    let xn: &[f32] = norm.as_ref().map_or(&xv, |(xn, _)| xn);
    // Logits (written in full by the product), then their softmax in place (needed
    // by the backward pass), each row's loss and whether its argmax is right.
    let mut z = Scratch::new(n * p);
    matmul(&mut z, xn, false, &wv, false, (n, d, p), false);
    let kept = keep_logits.then(|| z.to_vec());
    let mut row_loss = vec![(0.0f64, false); n];
    z.par_chunks_mut(p * ROWS_PER_TASK)
        .zip(row_loss.par_chunks_mut(ROWS_PER_TASK))
        .enumerate()
        .for_each(|(c, (z, out))| {
            let start = c * ROWS_PER_TASK;
            softmax::rows(z, p, &labels[start..start + out.len()], out)
        });
    let total_count: u64 = counts.iter().map(|&c| c as u64).sum();
    let mut total = 0.0f64;
    let mut correct = 0usize;
    for ((l, ok), &c) in row_loss.iter().zip(counts.iter()) {
        total += l * c as f64;
        correct += if *ok { c as usize } else { 0 };
    }
    let loss = (total / total_count.max(1) as f64) as f32;
    let mut inputs = vec![x, w_u];
    inputs.extend(gain);
    let out = record(inputs, vec![loss], (), move |dl, dins| {
        let [dx, dw_u, rest @ ..] = dins else {
            unreachable!()
        };
        // dlogits = 0 + probs·s, less s at the label (s = dl·count/total).
        let scale = dl[0] / total_count as f32;
        let mut dz = Scratch::new(n * p);
        dz.par_chunks_mut(p * ROWS_PER_TASK)
            .zip(z.par_chunks(p * ROWS_PER_TASK))
            .enumerate()
            .for_each(|(c, (dz, z))| {
                for (k, (drow, prow)) in dz.chunks_exact_mut(p).zip(z.chunks_exact(p)).enumerate() {
                    let i = c * ROWS_PER_TASK + k;
                    let s = scale * counts[i] as f32;
                    for (dv, pv) in drow.iter_mut().zip(prow) {
                        *dv = 0.0 + pv * s;
                    }
                    drow[labels[i] as usize] -= s;
                }
            });
        let xn: &[f32] = norm.as_ref().map_or(&xv, |(xn, _)| xn);
        matmul(dw_u, xn, true, &dz, false, (d, n, p), true);
        let (Some(g), Some((_, rs))) = (&g, &norm) else {
            matmul(dx, &dz, false, &wv, true, (n, p, d), true);
            return;
        };
        let mut dy = Scratch::new(n * d);
        dy.fill(0.0);
        matmul(&mut dy, &dz, false, &wv, true, (n, p, d), true);
        dx.par_chunks_mut(d * ROWS_PER_TASK)
            .zip(dy.par_chunks(d * ROWS_PER_TASK))
            .zip(xv.par_chunks(d * ROWS_PER_TASK))
            .zip(rs.par_chunks(ROWS_PER_TASK))
            .for_each(|(((dx, dy), xv), rs)| rms_rows_backward(d, g, xv, rs, dy, dx));
        let parts: Vec<Vec<f64>> = xv
            .par_chunks(d * ROWS_PER_TASK)
            .zip(dy.par_chunks(d * ROWS_PER_TASK))
            .zip(rs.par_chunks(ROWS_PER_TASK))
            .map(|((xv, dy), rs)| {
                let mut acc = vec![0.0f64; d];
                rms_gain_partial(d, xv, rs, dy, &mut acc);
                acc
            })
            .collect();
        add_chunk_sums(rest[0], parts);
    });
    (
        out,
        CrossEntropyStats {
            correct,
            logits: kept,
        },
    )
}

#[cfg(test)]
mod scratch_tests {
    use super::Scratch;

    #[test]
    fn scratch_buffers_have_the_asked_length_and_are_reused() {
        let mut a = Scratch::new(100);
        assert_eq!(a.len(), 100);
        assert_eq!(a.as_ptr() as usize % 64, 0, "on a cache line");
        a.fill(7.0);
        let ptr = a.as_ptr();
        drop(a);
        // A smaller request takes the kept buffer (its old contents stay).
        let b = Scratch::new(40);
        assert_eq!((b.len(), b.as_ptr()), (40, ptr));
        assert!(b.iter().all(|&v| v == 7.0));
        drop(b);
        // A larger one than any kept gets a fresh buffer of that length.
        let c = Scratch::new(1000);
        assert_eq!((c.len(), c.as_ptr() as usize % 64), (1000, 0));
    }
}

#[cfg(test)]
mod product_tests {
    use super::super::chains::tests::{bits, dense};
    use super::super::kernels::baseline_only;
    use super::{gemm_matmul, matmul, matmul_by_rows};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A NaN or an infinity in `a`, `b` or an accumulated `c` gives `gemm`'s bits,
    /// whether the operands or the result are checked (a deep product with a small
    /// result, and a shallow one with a large result).
    #[test]
    fn products_with_non_finite_operands_give_the_bits_of_gemm() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for (m, k, n) in [(6, 200, 5), (40, 3, 30)] {
            for (at, bad) in [(0, f32::NAN), (1, f32::INFINITY), (2, f32::NAN), (3, 0.0)] {
                for accumulate in [false, true] {
                    let (mut a, mut b) = (dense(&mut rng, m * k), dense(&mut rng, k * n));
                    let mut c = dense(&mut rng, m * n);
                    match at {
                        0 => a[k + 1] = bad,
                        1 => b[n + 2] = bad,
                        2 => c[3] = bad,
                        _ => {}
                    }
                    let mut want = c.clone();
                    gemm_matmul(&mut want, &a, false, &b, true, (m, k, n), accumulate);
                    matmul(&mut c, &a, false, &b, true, (m, k, n), accumulate);
                    let what =
                        format!("{m}x{k}x{n}, operand {at} = {bad}, accumulate {accumulate}");
                    assert_eq!(bits(&c), bits(&want), "{what}");
                }
            }
        }
    }

    /// Where `gemm` computes the product (here: a NaN in `a`, and a run with the SIMD
    /// kernels off), the blocks are handed out after it, each with its first row.
    #[test]
    fn products_by_rows_hand_out_gemm_blocks_where_gemm_computes() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let (m, k, n) = (50, 40, 30);
        let (mut a, b) = (dense(&mut rng, m * k), dense(&mut rng, k * n));
        for nan in [false, true] {
            if nan {
                a[123] = f32::NAN;
            }
            let mut want = vec![0.0f32; m * n];
            gemm_matmul(&mut want, &a, false, &b, true, (m, k, n), false);
            let run = || {
                let mut c = vec![0.0f32; m * n];
                let then = |i0: usize, rows: &mut [f32]| (i0, bits(rows));
                matmul_by_rows(&mut c, &a, false, &b, true, (m, k, n), false, 16, then)
            };
            for blocks in [run(), baseline_only(run)] {
                let starts: Vec<usize> = blocks.iter().map(|(i0, _)| *i0).collect();
                assert_eq!(starts, [0, 16, 32, 48], "nan {nan}");
                let handed: Vec<u32> = blocks.into_iter().flat_map(|(_, b)| b).collect();
                assert_eq!(handed, bits(&want), "nan {nan}");
            }
        }
    }
}
