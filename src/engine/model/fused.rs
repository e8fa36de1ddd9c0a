//! The fused attention + MLP op of the fast pass for unquantized activations (see
//! [`attention_mlp`]), on the tape like the other ops of [`super::ops`].

use super::chains::OutPtr;
use super::kernels::{
    scatter_rows, table_rows_backward, table_rows_forward, BlockOut, Readers, TableShape,
    SCATTER_COLS,
};
use super::ops::{
    add_chunk_sums, add_column_sums, add_into, chunk_column_sums, data, matmul, matmul_by_rows,
    record, Scratch, ROWS_PER_TASK,
};
use super::relu_products::{relu_t_times, NonzeroBits, ReluTimes};
use super::T2;
use crate::config::AttentionMix;
use dfdx::prelude::*;
use rayon::prelude::*;
use std::sync::Arc;

/// Attention read-out, attention output projection, residual and MLP in one op, for
/// unquantized activations, on per-token tables:
///
/// `x1 = x0_query + Σ_{h,j} w_hj · VO_h[r_j]` with `VO_h = V[:, head h] · W_O[head h, :]`,
/// `pre = x0_query·W_in + b_in + Σ_{h,j} w_hj · T_h[r_j]` with `T_h = VO_h · W_in`,
/// `x2 = x1 + relu(pre)·W_out + b_out`, where `w_h = rate·softmax_j(scores[r_j, h]) +
/// uniform` ([`super::kernels::position_weights`]).
///
/// This is `x1·W_in` regrouped (a linear map of a weighted sum of table rows is the
/// weighted sum of the mapped rows): the N × d × d_mlp product becomes a
/// (table rows) × d × d_mlp one plus 3·heads row reads per example.
#[allow(clippy::too_many_arguments)]
pub fn attention_mlp(
    scores: T2,
    v: T2,
    w_o: T2,
    x0_query: T2,
    w_in: T2,
    b_in: Option<T2>,
    w_out: T2,
    b_out: Option<T2>,
    rows: Arc<Vec<[u32; 3]>>,
    heads: usize,
    mix: AttentionMix,
) -> T2 {
    let (tr, d) = *v.shape();
    let m = w_in.shape().1;
    let dh = d / heads;
    let n = rows.len();
    let s = data(&scores);
    let vv = data(&v);
    let w_o_v = data(&w_o);
    let cx = data(&x0_query);
    let w_in_v = data(&w_in);
    let w_out_v = data(&w_out);
    let b_in_v = b_in.as_ref().map(data);
    let b_out_v = b_out.as_ref().map(data);
    // Per-head tables: V_h [tr, dh], VO_h [tr, d], T_h [tr, m].
    let v_heads: Vec<Vec<f32>> = (0..heads)
        .map(|h| {
            let mut out = Vec::with_capacity(tr * dh);
            for t in 0..tr {
                out.extend_from_slice(&vv[t * d + h * dh..t * d + (h + 1) * dh]);
            }
            out
        })
        .collect();
    // Written in full by the products below.
    let mut vo = Scratch::new(heads * tr * d);
    let mut tt = Scratch::new(heads * tr * m);
    for h in 0..heads {
        let vo_h = &mut vo[h * tr * d..(h + 1) * tr * d];
        matmul(
            vo_h,
            &v_heads[h],
            false,
            &w_o_v[h * dh * d..],
            false,
            (tr, dh, d),
            false,
        );
        matmul(
            &mut tt[h * tr * m..(h + 1) * tr * m],
            vo_h,
            false,
            &w_in_v,
            false,
            (tr, d, m),
            false,
        );
    }
    let mut ch = vec![0.0f32; m];
    matmul(&mut ch, &cx, false, &w_in_v, false, (1, d, m), false);
    if let Some(b) = &b_in_v {
        add_into(&mut ch, b);
    }
    let mut weights = vec![0.0f32; n * heads * 3];
    let mut probs = vec![0.0f32; n * heads * 3];
    let mut out = vec![0.0f32; n * d];
    // Written in full by the row kernel below.
    let mut hidden = Scratch::new(n * m);
    let shape = TableShape {
        heads,
        tr,
        d,
        m,
        rate: mix.rate as f32,
        uniform: mix.uniform_weight_f32(),
    };
    // Block by block of rows, while each is in cache: the table rows, relu(pre)'s
    // nonzero bits and the product relu(pre)·W_out (added to x1).
    const BLOCK: usize = NonzeroBits::BLOCK_ROWS;
    let mut nonzero = NonzeroBits::zeros(n, m);
    let product = ReluTimes::new(&w_out_v, (n, m, d), true);
    out.par_chunks_mut(d * BLOCK)
        .zip(hidden.par_chunks_mut(m * BLOCK))
        .zip(weights.par_chunks_mut(heads * 3 * BLOCK))
        .zip(probs.par_chunks_mut(heads * 3 * BLOCK))
        .zip(nonzero.blocks_mut())
        .enumerate()
        .for_each(
            |(c, ((((out, hidden), weights), probs), (row_words, col_words)))| {
                let rows = &rows[c * BLOCK..];
                let b_out = b_out_v.as_deref();
                let w = (weights, probs);
                table_rows_forward(shape, rows, &s, &cx, &ch, &vo, &tt, b_out, out, hidden, w);
                NonzeroBits::fill_block(hidden, m, row_words, col_words);
                if let Some(product) = &product {
                    product.rows(out, hidden, row_words);
                }
            },
        );
    if product.is_none() {
        matmul(&mut out, &hidden, false, &w_out_v, false, (n, m, d), true);
    }
    let has_bias = b_in.is_some();
    let mut inputs = vec![scores, v, w_o, x0_query, w_in, w_out];
    inputs.extend(b_in);
    inputs.extend(b_out);
    record(inputs, out, (n, d), move |g, dins| {
        let [ds, dv, dw_o, dx0, dw_in, dw_out, rest @ ..] = dins else {
            unreachable!()
        };
        relu_t_times(dw_out, &hidden, &nonzero, g, (m, n, d), true);
        // Written in full by the product (it does not read its output). Each block
        // of rows is finished while in cache: the ReLU mask, and the softmax backward
        // per example (dscore [rows, heads, 3]).
        let mut dpre = Scratch::new(n * m);
        let (dscore, dpre_sums): (Vec<Vec<f32>>, Vec<Vec<f64>>) = matmul_by_rows(
            &mut dpre,
            g,
            false,
            &w_out_v,
            true,
            (n, d, m),
            false,
            ROWS_PER_TASK,
            |i0, dpre| {
                let n_here = dpre.len() / m;
                let mut dscore = vec![0.0f32; n_here * heads * 3];
                table_rows_backward(
                    shape,
                    &rows[i0..i0 + n_here],
                    nonzero.row_words(i0, i0 + n_here),
                    &g[i0 * d..(i0 + n_here) * d],
                    &probs[i0 * heads * 3..(i0 + n_here) * heads * 3],
                    &vo,
                    &tt,
                    dpre,
                    &mut dscore,
                );
                (dscore, chunk_column_sums(dpre, m))
            },
        )
        .into_iter()
        .unzip();
        let dscore = dscore.concat();
        for (i, r) in rows.iter().enumerate() {
            for h in 0..heads {
                for j in 0..3 {
                    ds[r[j] as usize * heads + h] += dscore[(i * heads + h) * 3 + j];
                }
            }
        }
        // Table gradients dT_h [tr, m] and dVO_h [tr, d]: scatter-adds, one task per
        // block of the kernel's width, each summing over the examples in order.
        const COLS: usize = SCATTER_COLS;
        let readers = Readers::of(&rows, tr);
        let scatter = |width: usize, src: &[f32]| -> Scratch {
            // Written in full: each task writes its block's columns of every row.
            let mut out = Scratch::new(heads * tr * width);
            let base = OutPtr(out.as_mut_ptr());
            (0..width.div_ceil(COLS)).into_par_iter().for_each(|b| {
                let (c0, c1) = (b * COLS, ((b + 1) * COLS).min(width));
                // SAFETY: `out` holds heads·tr rows of `width` floats and outlives the
                // loop; the tasks' column ranges are disjoint, and `out` is not
                // otherwise used until the loop ends.
                let mut block =
                    unsafe { BlockOut::columns(base.ptr(), heads * tr, width, c0, c1 - c0) };
                scatter_rows(&readers, &weights, src, heads, width, c0, c1, &mut block);
            });
            out
        };
        let dtt = scatter(m, &dpre);
        let mut dvo = scatter(d, g);
        // Through T_h = VO_h · W_in (all heads stacked: [heads·tr, ·]), then
        // VO_h = V_h · W_O[head h].
        let ht = heads * tr;
        matmul(&mut dvo, &dtt, false, &w_in_v, true, (ht, m, d), true);
        matmul(dw_in, &vo, true, &dtt, false, (d, ht, m), true);
        for h in 0..heads {
            let dvo_h = &mut dvo[h * tr * d..(h + 1) * tr * d];
            let mut dv_h = vec![0.0f32; tr * dh];
            matmul(
                &mut dv_h,
                dvo_h,
                false,
                &w_o_v[h * dh * d..],
                true,
                (tr, d, dh),
                false,
            );
            for t in 0..tr {
                add_into_serial(
                    &mut dv[t * d + h * dh..t * d + (h + 1) * dh],
                    &dv_h[t * dh..(t + 1) * dh],
                );
            }
            matmul(
                &mut dw_o[h * dh * d..(h + 1) * dh * d],
                &v_heads[h],
                true,
                dvo_h,
                false,
                (dh, tr, d),
                true,
            );
        }
        // The constant parts: x0_query feeds x1 directly and through W_in.
        let mut dch = vec![0.0f32; m];
        add_chunk_sums(&mut dch, dpre_sums);
        add_column_sums(dx0, g, d);
        matmul(dx0, &dch, false, &w_in_v, true, (1, m, d), true);
        matmul(dw_in, &cx, true, &dch, false, (d, 1, m), true);
        if has_bias {
            add_into(rest[0], &dch);
            add_column_sums(rest[1], g, d);
        }
    })
}

fn add_into_serial(dst: &mut [f32], src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += s;
    }
}
