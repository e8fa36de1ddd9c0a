//! The f64 reference's products and the activation quantizer: plain loops whose
//! every output is one sum in a fixed order (the batched and four-row forms give the
//! same bits as the one-row forms, tested below), compiled for AVX2 too (same bits:
//! see [`simd_fn`]).

use super::M64;
use crate::engine::model::kernels::simd_fn;

simd_fn! {
    /// `x @ W` for one row vector. Rows of zero inputs (ReLU's, mostly) are skipped:
    /// they would add only zeros.
    pub(super) fn vec_mat(x: &[f64], w: &M64) -> Vec<f64> {
        let mut out = vec![0.0; w.cols];
        for (i, &xi) in x.iter().enumerate() {
            if xi == 0.0 {
                continue;
            }
            for (o, wv) in out.iter_mut().zip(w.row(i)) {
                *o += xi * wv;
            }
        }
        out
    }
}

simd_fn! {
    /// `X @ W` for the rows of `x` (row-major, `w.rows` values per row). Each output is
    /// the sum [`vec_mat`] computes for its row alone, in the same order: a zero input
    /// adds ±0, which leaves a sum that starts at +0 unchanged (finite weights), so
    /// skipping it or not gives the same bits. Blocks of 4 rows × 8 columns stay in
    /// registers while a weight row is read once for all four rows.
    pub(super) fn rows_mat(x: &[f64], w: &M64) -> Vec<f64> {
        const R: usize = 4;
        const T: usize = 8;
        let (k, cols) = (w.rows, w.cols);
        if k == 0 {
            return Vec::new();
        }
        assert_eq!(x.len() % k, 0, "rows_mat: input length");
        let n = x.len() / k;
        let mut out = vec![0.0; n * cols];
        let (block_rows, block_cols) = (n - n % R, cols - cols % T);
        for r0 in (0..block_rows).step_by(R) {
            let xs: [&[f64]; R] = std::array::from_fn(|r| &x[(r0 + r) * k..(r0 + r + 1) * k]);
            for c0 in (0..block_cols).step_by(T) {
                let mut acc = [[0.0f64; T]; R];
                for i in 0..k {
                    let wt: &[f64; T] = w.data[i * cols + c0..i * cols + c0 + T]
                        .try_into()
                        .expect("a tile of T columns");
                    for (a, xr) in acc.iter_mut().zip(&xs) {
                        let xv = xr[i];
                        for (av, wv) in a.iter_mut().zip(wt) {
                            *av += xv * wv;
                        }
                    }
                }
                for (r, a) in acc.iter().enumerate() {
                    out[(r0 + r) * cols + c0..][..T].copy_from_slice(a);
                }
            }
            // Columns past the last tile, reading each weight row once.
            if block_cols < cols {
                for i in 0..k {
                    let wt = &w.data[i * cols + block_cols..(i + 1) * cols];
                    for (r, xr) in xs.iter().enumerate() {
                        let o = &mut out[(r0 + r) * cols + block_cols..(r0 + r + 1) * cols];
                        for (ov, wv) in o.iter_mut().zip(wt) {
                            *ov += xr[i] * wv;
                        }
                    }
                }
            }
        }
        // Rows past the last block of four, one at a time.
        for r in block_rows..n {
            let row = vec_mat(&x[r * k..(r + 1) * k], w);
            out[r * cols..(r + 1) * cols].copy_from_slice(&row);
        }
        out
    }
}

/// `dy @ W^T` for one row vector, plainly: each output the dot product of a weight
/// row with `dy`, summed in order as `Iterator::sum` sums it ([`vec_mat_t`] must
/// give these bits).
#[cfg(test)]
fn dot_rows(dy: &[f64], w: &M64) -> Vec<f64> {
    (0..w.rows)
        .map(|i| w.row(i).iter().zip(dy).map(|(a, b)| a * b).sum())
        .collect()
}

simd_fn! {
    /// [`dot_rows`], four rows at a time: the same sums in the same order, as four
    /// independent chains of additions instead of one after another.
    pub(super) fn vec_mat_t(dy: &[f64], w: &M64) -> Vec<f64> {
        assert_eq!(dy.len(), w.cols, "vec_mat_t: input length");
        let start: f64 = std::iter::empty::<f64>().sum();
        let mut out = Vec::with_capacity(w.rows);
        let mut rows = w.data.chunks_exact(w.cols.max(1)).take(w.rows);
        while rows.len() >= 4 {
            let r: [&[f64]; 4] = std::array::from_fn(|_| rows.next().expect("four rows left"));
            let [mut a0, mut a1, mut a2, mut a3] = [start; 4];
            for ((((&d, &w0), &w1), &w2), &w3) in
                dy.iter().zip(r[0]).zip(r[1]).zip(r[2]).zip(r[3])
            {
                a0 += w0 * d;
                a1 += w1 * d;
                a2 += w2 * d;
                a3 += w3 * d;
            }
            out.extend([a0, a1, a2, a3]);
        }
        for row in rows {
            out.push(row.iter().zip(dy).map(|(a, b)| a * b).sum());
        }
        out
    }
}

/// `G += x^T dy` (outer product).
pub(super) fn add_outer(g: &mut M64, x: &[f64], dy: &[f64]) {
    for (i, xi) in x.iter().enumerate() {
        for (gv, d) in g.row_mut(i).iter_mut().zip(dy) {
            *gv += xi * d;
        }
    }
}

pub(super) fn add(a: &mut [f64], b: &[f64]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

pub(super) fn act_quant(x: &[f64], bits: u32, eps: f64) -> Vec<f64> {
    if bits == 0 {
        return x.to_vec();
    }
    let qb = (1u64 << (bits - 1)) as f64;
    let g = x.iter().fold(0.0f64, |a, v| a.max(v.abs())).max(eps);
    x.iter()
        .map(|v| (v * qb / g).round_ties_even().clamp(-qb, qb - 1.0) * g / qb)
        .collect()
}

/// [`act_quant`] of each row (`dim` values) of a row-major batch: one scale per token.
pub(super) fn act_quant_rows(x: &[f64], dim: usize, bits: u32, eps: f64) -> Vec<f64> {
    if bits == 0 {
        return x.to_vec();
    }
    x.chunks(dim)
        .flat_map(|r| act_quant(r, bits, eps))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn val(i: usize, s: f64) -> f64 {
        ((i as f64 * s).sin() * 3.0).powi(3)
    }

    #[test]
    fn interleaved_dot_products_equal_plain_ones_bit_for_bit() {
        for (rows, cols) in [(1, 5), (8, 8), (13, 19), (128, 512), (512, 128)] {
            let w = M64::from_vec(rows, cols, (0..rows * cols).map(|i| val(i, 0.9)).collect());
            let mut dy: Vec<f64> = (0..cols).map(|i| val(i, 2.1) * 1e-2).collect();
            dy[0] = 0.0;
            let same =
                |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(
                same(&vec_mat_t(&dy, &w), &dot_rows(&dy, &w)),
                "{rows}x{cols}"
            );
            // All zeros: the sums' zero signs match too.
            let zeros = vec![0.0; cols];
            assert!(same(&vec_mat_t(&zeros, &w), &dot_rows(&zeros, &w)));
        }
    }

    #[test]
    fn blocked_products_equal_row_by_row_products_bit_for_bit() {
        // 4-row blocks and 8-column tiles with edges on both sides, inputs with exact
        // zeros (which vec_mat skips), negative and tiny values.
        for (n, k, cols) in [(1, 3, 5), (4, 8, 8), (9, 13, 19), (12, 32, 113)] {
            let x: Vec<f64> = (0..n * k)
                .map(|i| if i % 3 == 0 { 0.0 } else { val(i, 0.7) })
                .collect();
            let w = M64::from_vec(k, cols, (0..k * cols).map(|i| val(i, 1.3) * 1e-3).collect());
            let batched = rows_mat(&x, &w);

            for r in 0..n {
                let one = vec_mat(&x[r * k..(r + 1) * k], &w);
                let got = &batched[r * cols..(r + 1) * cols];
                assert!(
                    one.iter().zip(got).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "n {n} k {k} cols {cols} row {r}"
                );
            }
        }
    }
}
