//! The two per-example products of the MLP whose left operand is `relu(pre)`: the
//! forward `relu(pre)·W_out` and the weight gradient `relu(pre)ᵀ·g`. About half of
//! `relu(pre)` is zero, and a zero term adds nothing to a sum: these kernels skip
//! the zero terms and still give every bit [`matmul`] gives.
//!
//! **What `matmul` computes.** On a CPU with FMA, `gemm` 0.15.5 (pinned) computes each
//! output element `c_ij` of `op(a)·op(b)` as follows: the depth `k` is cut into
//! chunks whose length depends only on the shapes ([`depth_chunk`]); per chunk an
//! accumulator starts at `+0` and takes `acc = fma(a_ik, b_kj, acc)` for every `k` of
//! the chunk in order; the first chunk's accumulator is the element (or is added to
//! it, `c + acc`, when accumulating), every later one is added to it. The tiling,
//! packing and threads change only which elements are computed together, never an
//! element's chain (a test compares `matmul` with this definition bit for bit).
//!
//! **Why skipping zeros keeps the bits.** With `b_kj` finite, `fma(±0, b_kj, acc)`
//! is `acc` unless `acc` is a zero (then it is a zero of either sign). So along a
//! chain, the skipping and the full accumulator are equal, or the full one is +0
//! and the skipping one −0 (both start at +0; +0 plus a zero stays +0, and a nonzero
//! product wipes out the difference). So only a chunk whose skipping sum ends at −0
//! is recomputed with the full chain (rare: it takes a product that underflows).
//! A non-finite value in the dense operand (`0·∞` is NaN) sends the whole product to
//! [`matmul`].

use super::chains::all_finite;
#[cfg(target_arch = "x86_64")]
use super::kernels::avx2_fma;
use super::ops::{matmul, Scratch};
use rayon::prelude::*;

/// The register tile of `gemm`'s FMA kernel for f32 (3 vectors of 8 rows × 4
/// columns), which its depth chunking depends on.
const GEMM_MR: usize = 24;
const GEMM_NR: usize = 4;

/// Output rows (forward) or neurons (weight gradient) per parallel task.
const ROWS_PER_TASK: usize = 32;
const NEURONS_PER_TASK: usize = 32;
/// Depth block over which a row's nonzero terms are found at once (one bit each).
const BLOCK: usize = 64;

/// The length of `gemm`'s depth chunks for an `m × k` by `k × n` product with its
/// FMA kernel (the last chunk may be shorter): `gemm_basic_generic` takes
/// `min(k, 512)` for outputs of at most 64 × 64 and `kernel_params`' balanced `kc`
/// otherwise.
pub(super) fn depth_chunk(m: usize, n: usize, k: usize) -> usize {
    if m <= 64 && n <= 64 {
        k.min(512)
    } else {
        gemm_common::cache::kernel_params(m, n, k, GEMM_MR, GEMM_NR, std::mem::size_of::<f32>()).kc
    }
}

/// Whether the skipping kernels may run: x86-64 with AVX2 and FMA (where `gemm`
/// takes its FMA kernel), shapes on `gemm`'s general path (depth over 2, both output
/// dimensions over 1) with whole 8-float vectors per output row, and a finite dense
/// operand.
fn skipping_applies(rows: usize, cols: usize, depth: usize, dense: &[f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        avx2_fma()
            && rows > 1
            && cols > 1
            && depth > 2
            && cols.is_multiple_of(8)
            && all_finite(dense)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (rows, cols, depth, dense, all_finite);
        false
    }
}

/// Where `h` [n, m] is nonzero, one bit per entry, by rows and by columns: built once
/// from relu(pre) and read by both products.
pub struct NonzeroBits {
    n: usize,
    m: usize,
    /// [n][m.div_ceil(64)]: bit t of row i's word w says `h[i, 64w + t] != 0`.
    rows: Vec<u64>,
    /// [n.div_ceil(64)][m]: bit t of word (b, k) says `h[64b + t, k] != 0`.
    cols: Vec<u64>,
}

impl NonzeroBits {
    /// Rows of `h` per block of the column bits: one bit per row in a word.
    pub const BLOCK_ROWS: usize = 64;

    pub fn of(h: &[f32], n: usize, m: usize) -> Self {
        assert!(h.len() >= n * m);
        let mut bits = NonzeroBits::zeros(n, m);
        bits.blocks_mut().enumerate().for_each(|(b, (rows, cols))| {
            let i0 = b * Self::BLOCK_ROWS;
            let i1 = (i0 + Self::BLOCK_ROWS).min(n);
            Self::fill_block(&h[i0 * m..i1 * m], m, rows, cols)
        });
        bits
    }

    /// No bit set, for `h` [n, m]; filled block by block ([`Self::blocks_mut`]).
    pub fn zeros(n: usize, m: usize) -> Self {
        NonzeroBits {
            n,
            m,
            rows: vec![0u64; n * m.div_ceil(64)],
            cols: vec![0u64; n.div_ceil(64) * m],
        }
    }

    /// The words of each block of [`Self::BLOCK_ROWS`] rows, in parallel: (its row
    /// words, its column words), for [`Self::fill_block`].
    pub fn blocks_mut(
        &mut self,
    ) -> impl IndexedParallelIterator<Item = (&mut [u64], &mut [u64])> + '_ {
        let words = self.m.div_ceil(64).max(1);
        self.rows
            .par_chunks_mut(Self::BLOCK_ROWS * words)
            .zip(self.cols.par_chunks_mut(self.m.max(1)))
    }

    /// Sets the bits of one block of rows `h` [rows, m] in its words (`rows`,
    /// `cols` from [`Self::blocks_mut`]).
    pub fn fill_block(h: &[f32], m: usize, rows: &mut [u64], cols: &mut [u64]) {
        let words = m.div_ceil(64);
        for (t, row) in rows.chunks_mut(words).enumerate() {
            let hr = &h[t * m..(t + 1) * m];
            for (w, word) in row.iter_mut().enumerate() {
                *word = nonzero_word(&hr[64 * w..(64 * w + 64).min(m)]);
            }
        }
        for w in 0..words {
            let mut block = [0u64; 64];
            for (t, row) in rows.chunks(words).enumerate() {
                block[t] = row[w];
            }
            transpose64(&mut block);
            let k0 = 64 * w;
            cols[k0..(k0 + 64).min(m)].copy_from_slice(&block[..(m - k0).min(64)]);
        }
    }

    /// The words of rows `i0..i1`, `m.div_ceil(64)` a row: bit t of a row's word w
    /// says `h[i, 64w + t] != 0`.
    pub(super) fn row_words(&self, i0: usize, i1: usize) -> &[u64] {
        let words = self.m.div_ceil(64);
        &self.rows[i0 * words..i1 * words]
    }

    /// Bits of `h[start..start + len, k]` (`len` at most 64).
    fn col(&self, k: usize, start: usize, len: usize) -> u64 {
        window(|b| self.cols[b * self.m + k], start, len)
    }
}

/// Bits `start..start + len` (`len` at most 64) of the bit string whose word `w` is
/// `word(w)`, as bits `0..len`.
#[inline(always)]
fn window(word: impl Fn(usize) -> u64, start: usize, len: usize) -> u64 {
    let (w, off) = (start / 64, start % 64);
    let mut bits = word(w) >> off;
    if off > 0 && off + len > 64 {
        bits |= word(w + 1) << (64 - off);
    }
    if len < 64 {
        bits &= (1u64 << len) - 1;
    }
    bits
}

/// Bit t set where `x[t] != 0` (NaN counts as nonzero), for at most 64 values.
fn nonzero_word(x: &[f32]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { simd::nonzero_word(x) };
    }
    x.iter()
        .enumerate()
        .fold(0, |bits, (t, v)| bits | ((*v != 0.0) as u64) << t)
}

/// Transposes a 64 × 64 bit matrix (bit c of word r becomes bit r of word c), by
/// swapping ever smaller off-diagonal blocks (Warren, *Hacker's Delight*, §7-3).
fn transpose64(a: &mut [u64; 64]) {
    let (mut j, mut mask) = (32, 0x0000_0000_ffff_ffffu64);
    while j != 0 {
        let mut k = 0;
        while k < 64 {
            let t = ((a[k] >> j) ^ a[k + j]) & mask;
            a[k] ^= t << j;
            a[k + j] ^= t;
            k = (k + j + 1) & !j;
        }
        j >>= 1;
        mask ^= mask << j;
    }
}

/// `out (+)= h · w` with `h` [n, m] (mostly zeros allowed, `bits` its nonzero bits),
/// `w` [m, d], `out` [n, d] row-major: the bits of
/// `matmul(out, h, false, w, false, (n, m, d), accumulate)`.
pub fn relu_times(
    out: &mut [f32],
    h: &[f32],
    bits: &NonzeroBits,
    w: &[f32],
    (n, m, d): (usize, usize, usize),
    accumulate: bool,
) {
    assert!(out.len() >= n * d && h.len() >= n * m && w.len() >= m * d);
    assert_eq!((bits.n, bits.m), (n, m), "nonzero bits of another shape");
    let Some(product) = ReluTimes::new(w, (n, m, d), accumulate) else {
        return matmul(out, h, false, w, false, (n, m, d), accumulate);
    };
    for_each_task(&mut out[..n * d], d, ROWS_PER_TASK, |i0, out| {
        let i1 = i0 + out.len() / d;
        product.rows(out, &h[i0 * m..i1 * m], bits.row_words(i0, i1));
    });
}

/// The skipping product `out (+)= h · w` of [`relu_times`] for a whole `h` [n, m],
/// run on any blocks of output rows ([`Self::rows`]), e.g. each as soon as its rows
/// of `h` are made: every block gives the bits of the whole product.
pub struct ReluTimes<'a> {
    w: DenseRows<'a>,
    kc: usize,
    accumulate: bool,
}

impl<'a> ReluTimes<'a> {
    /// `None` where the skipping kernel does not apply: then [`matmul`] computes the
    /// whole product.
    pub fn new(w: &'a [f32], (n, m, d): (usize, usize, usize), accumulate: bool) -> Option<Self> {
        assert!(w.len() >= m * d);
        skipping_applies(n, d, m, &w[..m * d]).then(|| ReluTimes {
            w: DenseRows::new(w, m, d),
            kc: depth_chunk(n, d, m),
            accumulate,
        })
    }

    /// Output rows `out` [r, d] from the same rows of `h` ([r, m]) and their nonzero
    /// words ([`NonzeroBits::row_words`]).
    pub fn rows(&self, out: &mut [f32], h: &[f32], words: &[u64]) {
        let (m, d) = (self.w.depth, self.w.d);
        let r = out.len() / d;
        assert!(h.len() >= r * m && words.len() >= r * m.div_ceil(64));
        for (t, out) in out[..r * d].chunks_mut(ROWS_PER_TASK * d).enumerate() {
            let i0 = t * ROWS_PER_TASK;
            let i1 = i0 + out.len() / d;
            let (h, words) = (&h[i0 * m..i1 * m], &words[i0 * m.div_ceil(64)..]);
            // SAFETY: `new` checked AVX2 and FMA (`skipping_applies`); `out`, `h` and
            // `words` hold the same whole rows.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                simd::rows_times(out, h, words, &self.w, self.kc, self.accumulate)
            }
            #[cfg(not(target_arch = "x86_64"))]
            unreachable!("{:?}", (out.len(), h.len(), words.len()))
        }
    }
}

/// `dw (+)= hᵀ · g` with `h` [n, m] (mostly zeros allowed, `bits` its nonzero bits),
/// `g` [n, d], `dw` [m, d] row-major: the bits of
/// `matmul(dw, h, true, g, false, (m, n, d), accumulate)`.
pub fn relu_t_times(
    dw: &mut [f32],
    h: &[f32],
    bits: &NonzeroBits,
    g: &[f32],
    (m, n, d): (usize, usize, usize),
    accumulate: bool,
) {
    assert!(dw.len() >= m * d && h.len() >= n * m && g.len() >= n * d);
    assert_eq!((bits.n, bits.m), (n, m), "nonzero bits of another shape");
    if !skipping_applies(m, d, n, &g[..n * d]) {
        return matmul(dw, h, true, g, false, (m, n, d), accumulate);
    }
    let kc = depth_chunk(m, d, n);
    let g_rows = DenseRows::new(g, n, d);
    for_each_task(dw, d, NEURONS_PER_TASK, |k0, dw| {
        // SAFETY: as in `relu_times`; `dw` holds whole rows of neurons k0.., all
        // below m.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            simd::neurons_times(dw, k0, h, bits, &g_rows, kc, accumulate)
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("{:?}", (dw.len(), k0, kc))
    });
}

/// Runs `task(first row, rows)` on the output's rows (`d` floats each) in parallel
/// blocks of `per_task` rows.
fn for_each_task(
    out: &mut [f32],
    d: usize,
    per_task: usize,
    task: impl Fn(usize, &mut [f32]) + Sync,
) {
    out.par_chunks_mut(d * per_task)
        .enumerate()
        .for_each(|(t, rows)| task(t * per_task, rows));
}

/// Writes a finished chunk's sum `acc` of element `dst`: the element itself for the
/// first chunk of a product that does not accumulate, added to it otherwise. Where
/// the skipping and the full chain differ, the full one is +0 and the skipping one
/// −0 (module notes): a −0 sum is recomputed by `full`.
#[inline(always)]
fn finish(dst: &mut f32, acc: f32, first: bool, accumulate: bool, full: impl Fn() -> f32) {
    let acc = if acc.to_bits() == (-0.0f32).to_bits() {
        full()
    } else {
        acc
    };
    *dst = if first && !accumulate {
        acc
    } else {
        *dst + acc
    };
}

/// One chunk's full chain `fma(x_k, y_k, acc)` over every term, zeros included.
#[inline(always)]
fn full_chain(terms: impl Iterator<Item = (f32, f32)>) -> f32 {
    terms.fold(0.0f32, |acc, (x, y)| x.mul_add(y, acc))
}

/// Width of the column block that starts at column `c` of `d` (a multiple of 8):
/// 64, and 8 at the end.
fn block_width(d: usize, c: usize) -> usize {
    if d - c >= 64 {
        64
    } else {
        8
    }
}

/// The dense operand of a skipping product, [depth, d], as the kernels read it: 64
/// rows of one column block at a time ([`block_width`]). It is copied by column
/// blocks, each [depth, width] contiguous (the block of column `c` at offset
/// `c·depth`), on a cache-line boundary: a block's rows are then whole cache lines
/// in distinct cache sets (rows of the matrix itself, 512 bytes or more apart, fall
/// in a few sets, and a vector load straddles two lines when the matrix does not
/// start on one). The copy costs far less than the product reads it.
struct DenseRows<'a> {
    /// The matrix itself, for the full chains ([`finish`]).
    data: &'a [f32],
    blocks: Scratch,
    depth: usize,
    d: usize,
}

impl<'a> DenseRows<'a> {
    fn new(data: &'a [f32], depth: usize, d: usize) -> Self {
        let data = &data[..depth * d];
        // Written in full below.
        let mut blocks = Scratch::new(depth * d);
        let mut c = 0;
        while c < d {
            let width = block_width(d, c);
            let block = &mut blocks[c * depth..(c + width) * depth];
            for (dst, row) in block.chunks_exact_mut(width).zip(data.chunks_exact(d)) {
                dst.copy_from_slice(&row[c..c + width]);
            }
            c += width;
        }
        DenseRows {
            data,
            blocks,
            depth,
            d,
        }
    }

    /// The start of rows `b0..` (at most 64) of the column block at `c`, whose rows
    /// are its width apart.
    fn block(&self, c: usize, b0: usize) -> *const f32 {
        let width = block_width(self.d, c);
        let rows = 64.min(self.depth - b0);
        let at = c * self.depth + b0 * width;
        self.blocks[at..at + rows * width].as_ptr()
    }
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::{block_width, finish, full_chain, window, DenseRows, NonzeroBits, Scratch, BLOCK};
    use std::arch::x86_64::*;

    /// [`super::nonzero_word`] on 8 values at a time.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn nonzero_word(x: &[f32]) -> u64 {
        let zero = _mm256_setzero_ps();
        let full = x.len() / 8 * 8;
        let mut bits = 0u64;
        for t in (0..full).step_by(8) {
            let ne = _mm256_cmp_ps::<_CMP_NEQ_UQ>(_mm256_loadu_ps(x.as_ptr().add(t)), zero);
            bits |= (_mm256_movemask_ps(ne) as u32 as u64) << t;
        }
        for (t, v) in x.iter().enumerate().skip(full) {
            bits |= ((*v != 0.0) as u64) << t;
        }
        bits
    }

    /// `acc[0..8V] = fma(x_t, row_t[0..8V], acc)` for every set bit `t` of `bits`
    /// in increasing order, `row_t = rows + t·8V` (a column block of [`DenseRows`]);
    /// `V` vectors of 8 columns.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn fma_rows<const V: usize>(
        acc: *mut f32,
        mut bits: u64,
        x: impl Fn(usize) -> f32,
        rows: *const f32,
    ) {
        let mut a = [_mm256_setzero_ps(); V];
        for (v, a) in a.iter_mut().enumerate() {
            *a = _mm256_loadu_ps(acc.add(8 * v));
        }
        while bits != 0 {
            let t = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let xv = _mm256_set1_ps(x(t));
            let row = rows.add(t * 8 * V);
            for (v, a) in a.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(xv, _mm256_loadu_ps(row.add(8 * v)), *a);
            }
        }
        for (v, a) in a.iter().enumerate() {
            _mm256_storeu_ps(acc.add(8 * v), *a);
        }
    }

    /// `acc_i[c..c+8V] = fma(x(i, t), rows_t[c..c+8V], acc_i)` for every row `i` and
    /// set bit `t` of `masks[i]` in increasing order, `acc_i = acc + i·d`, for each
    /// column block `c` ([`block_width`]); `rows_t` is row `b0 + t` of `rows`. Column
    /// blocks outside, rows inside: a block of `rows` (64 × 64 floats) stays in the
    /// L1 cache.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn fma_masked(
        acc: &mut [f32],
        d: usize,
        masks: &[u64],
        x: impl Fn(usize, usize) -> f32 + Copy,
        rows: &DenseRows,
        b0: usize,
    ) {
        let mut c = 0;
        while c < d {
            let width = block_width(d, c);
            let block = rows.block(c, b0);
            for (i, &bits) in masks.iter().enumerate() {
                if bits == 0 {
                    continue;
                }
                let a = acc.as_mut_ptr().add(i * d + c);
                if width == 64 {
                    fma_rows::<8>(a, bits, |t| x(i, t), block);
                } else {
                    fma_rows::<1>(a, bits, |t| x(i, t), block);
                }
            }
            c += width;
        }
    }

    /// One skipping product for the output rows `out` [r, d]: per depth chunk of `kc`
    /// (of `depth`), `block(sums, b0, b1)` adds the nonzero terms of the depth block
    /// `b0..b1` into the chunk's sums [r, d], which are then finished into `out`
    /// against the full chain `full(i, j, c0, c1)` of row i, column j.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn chunked(
        out: &mut [f32],
        d: usize,
        depth: usize,
        kc: usize,
        accumulate: bool,
        mut block: impl FnMut(&mut [f32], usize, usize),
        full: impl Fn(usize, usize, usize, usize) -> f32,
    ) {
        let r = out.len() / d;
        // Zeroed at the start of every chunk.
        let mut sums = Scratch::new(r * d);
        for c0 in (0..depth).step_by(kc) {
            let c1 = (c0 + kc).min(depth);
            sums.fill(0.0);
            for b0 in (c0..c1).step_by(BLOCK) {
                block(&mut sums, b0, (b0 + BLOCK).min(c1));
            }
            let write = c0 == 0 && !accumulate;
            for (i, (out, sums)) in out
                .chunks_exact_mut(d)
                .zip(sums.chunks_exact(d))
                .enumerate()
            {
                // A row without a −0 sum (nearly all) is finished in one vector pass.
                let negative_zeros = sums
                    .iter()
                    .map(|s| (s.to_bits() == (-0.0f32).to_bits()) as u32)
                    .sum::<u32>();
                if negative_zeros == 0 {
                    if write {
                        out.copy_from_slice(sums);
                    } else {
                        for (o, s) in out.iter_mut().zip(sums) {
                            *o += *s;
                        }
                    }
                    continue;
                }
                for (j, (o, s)) in out.iter_mut().zip(sums).enumerate() {
                    finish(o, *s, c0 == 0, accumulate, || full(i, j, c0, c1));
                }
            }
        }
    }

    /// [`super::ReluTimes::rows`] for the output rows `out` [r, d], the same rows
    /// of `h` [r, m] and their nonzero words. Depth blocks outside, rows inside: a
    /// block of w stays in cache.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn rows_times(
        out: &mut [f32],
        h: &[f32],
        words: &[u64],
        w_rows: &DenseRows,
        kc: usize,
        accumulate: bool,
    ) {
        let (w, m, d) = (w_rows.data, w_rows.depth, w_rows.d);
        let per_row = m.div_ceil(64);
        let mut masks = vec![0u64; out.len() / d];
        let block = |sums: &mut [f32], b0: usize, b1: usize| {
            for (i, mask) in masks.iter_mut().enumerate() {
                *mask = window(|w| words[i * per_row + w], b0, b1 - b0);
            }
            let x = |i: usize, t: usize| *h.get_unchecked(i * m + b0 + t);
            fma_masked(sums, d, &masks, x, w_rows, b0);
        };
        let full = |i: usize, j: usize, c0: usize, c1: usize| {
            full_chain((c0..c1).map(|k| (h[i * m + k], w[k * d + j])))
        };
        chunked(out, d, m, kc, accumulate, block, full);
    }

    /// [`super::relu_t_times`] for the neurons `k0..k0 + dw.len()/d`: `dw` [·, d].
    /// Example blocks outside, neurons inside: a block of g stays in cache.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn neurons_times(
        dw: &mut [f32],
        k0: usize,
        h: &[f32],
        bits: &NonzeroBits,
        g_rows: &DenseRows,
        kc: usize,
        accumulate: bool,
    ) {
        let (g, n, d) = (g_rows.data, g_rows.depth, g_rows.d);
        let m = bits.m;
        let nk = dw.len() / d;
        let mut masks = vec![0u64; nk];
        let mut vals = vec![0.0f32; nk * BLOCK];
        let block = |sums: &mut [f32], b0: usize, b1: usize| {
            for (kk, mask) in masks.iter_mut().enumerate() {
                *mask = bits.col(k0 + kk, b0, b1 - b0);
            }
            // The block's values by neuron, read row by row (a row's neurons share a
            // cache line), and the next block's rows fetched meanwhile.
            for t in 0..b1 - b0 {
                let row = &h[(b0 + t) * m + k0..(b0 + t) * m + k0 + nk];
                for (kk, v) in row.iter().enumerate() {
                    vals[kk * BLOCK + t] = *v;
                }
                if b1 + t < n {
                    let next = h.as_ptr().add((b1 + t) * m + k0);
                    _mm_prefetch::<_MM_HINT_T0>(next as *const i8);
                    _mm_prefetch::<_MM_HINT_T0>(next.add(nk - 1) as *const i8);
                }
            }
            let x = |kk: usize, t: usize| *vals.get_unchecked(kk * BLOCK + t);
            fma_masked(sums, d, &masks, x, g_rows, b0);
        };
        let full = |kk: usize, j: usize, c0: usize, c1: usize| {
            full_chain((c0..c1).map(|i| (h[i * m + k0 + kk], g[i * d + j])))
        };
        chunked(dw, d, n, kc, accumulate, block, full);
    }
}

#[cfg(test)]
mod tests {
    use super::super::chains::tests::{bits, dense};
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A relu-like matrix: about `zeros` of it +0 (a few −0), the rest of mixed sign
    /// and size, with some tiny values whose products underflow.
    fn sparse(rng: &mut ChaCha8Rng, len: usize, zeros: f64) -> Vec<f32> {
        (0..len)
            .map(|_| {
                let u: f64 = rng.gen();
                if u < zeros * 0.97 {
                    0.0
                } else if u < zeros {
                    -0.0
                } else if u < zeros + 0.02 {
                    rng.gen_range(-1e-30f32..1e-30)
                } else {
                    rng.gen_range(-3.0f32..3.0)
                }
            })
            .collect()
    }

    /// Shapes on both of `gemm`'s chunkings (small outputs; balanced `kc` past 512)
    /// and partial row blocks, depth blocks and column blocks (64-wide blocks and the
    /// 8-wide tail; widths past 256).
    const SHAPES: [(usize, usize, usize); 7] = [
        (3, 5, 8),
        (70, 96, 24),
        (33, 600, 72),
        (200, 1100, 16),
        (64, 1500, 64),
        (130, 512, 136),
        (70, 150, 264),
    ];

    #[test]
    fn nonzero_bits_by_rows_and_by_columns() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for (n, m) in [(1, 1), (70, 130), (128, 64), (200, 513)] {
            let h = sparse(&mut rng, n * m, 0.5);
            let bits = NonzeroBits::of(&h, n, m);
            for _ in 0..300 {
                let (i, k) = (rng.gen_range(0..n), rng.gen_range(0..m));
                let len = rng.gen_range(1..=64usize.min(m - k));
                let want = (0..len).fold(0u64, |b, t| b | ((h[i * m + k + t] != 0.0) as u64) << t);
                assert_eq!(
                    window(|w| bits.row_words(i, i + 1)[w], k, len),
                    want,
                    "row {i} from {k}, {len} of {n}x{m}"
                );
                let len = rng.gen_range(1..=64usize.min(n - i));
                let want =
                    (0..len).fold(0u64, |b, t| b | ((h[(i + t) * m + k] != 0.0) as u64) << t);
                assert_eq!(
                    bits.col(k, i, len),
                    want,
                    "column {k} from {i}, {len} of {n}x{m}"
                );
            }
        }
    }

    #[test]
    fn skipping_zeros_gives_the_bits_of_matmul() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for &(n, m, d) in &SHAPES {
            for zeros in [0.0, 0.5, 0.97] {
                for accumulate in [false, true] {
                    let h = sparse(&mut rng, n * m, zeros);
                    let (w, g) = (dense(&mut rng, m * d), dense(&mut rng, n * d));
                    let (o0, dw0) = (dense(&mut rng, n * d), dense(&mut rng, m * d));
                    for threads in [1, 3] {
                        let pool = rayon::ThreadPoolBuilder::new()
                            .num_threads(threads)
                            .build()
                            .unwrap();
                        let (mut out, mut want) = (o0.clone(), o0.clone());
                        pool.install(|| {
                            relu_times(
                                &mut out,
                                &h,
                                &NonzeroBits::of(&h, n, m),
                                &w,
                                (n, m, d),
                                accumulate,
                            );
                            matmul(&mut want, &h, false, &w, false, (n, m, d), accumulate);
                        });
                        assert_eq!(
                            bits(&out),
                            bits(&want),
                            "forward {n}x{m}x{d} {zeros} {accumulate}"
                        );
                        // Any blocks of output rows, each on its own.
                        let nonzero = NonzeroBits::of(&h, n, m);
                        for block in [5, 64] {
                            let Some(product) = ReluTimes::new(&w, (n, m, d), accumulate) else {
                                break;
                            };
                            let mut out = o0.clone();
                            for (b, out) in out.chunks_mut(block * d).enumerate() {
                                let (i0, i1) = (b * block, b * block + out.len() / d);
                                let words = nonzero.row_words(i0, i1);
                                product.rows(out, &h[i0 * m..i1 * m], words);
                            }
                            let what = format!("{n}x{m}x{d} {zeros} {accumulate} by {block}");
                            assert_eq!(bits(&out), bits(&want), "forward {what}");
                        }
                        let (mut dw, mut want) = (dw0.clone(), dw0.clone());
                        pool.install(|| {
                            relu_t_times(
                                &mut dw,
                                &h,
                                &NonzeroBits::of(&h, n, m),
                                &g,
                                (m, n, d),
                                accumulate,
                            );
                            matmul(&mut want, &h, true, &g, false, (m, n, d), accumulate);
                        });
                        assert_eq!(
                            bits(&dw),
                            bits(&want),
                            "gradient {m}x{n}x{d} {zeros} {accumulate}"
                        );
                    }
                }
            }
        }
    }

    /// Sums that end at zero: the skipping sum would be −0 where the full chain's is
    /// +0 (a negative product underflowing to −0, then a skipped +0·positive).
    #[test]
    fn zero_sums_take_the_sign_of_the_full_chain() {
        let (n, m, d) = (4, 16, 8);
        let mut h = vec![0.0f32; n * m];
        let w = vec![1e-30f32; m * d];
        for i in 0..n {
            h[i * m] = -1e-30; // −1e-60 rounds to −0
        }
        let (mut out, mut want) = (vec![0.0; n * d], vec![0.0; n * d]);
        relu_times(
            &mut out,
            &h,
            &NonzeroBits::of(&h, n, m),
            &w,
            (n, m, d),
            false,
        );
        matmul(&mut want, &h, false, &w, false, (n, m, d), false);
        assert!(
            want.iter().all(|v| v.to_bits() == 0),
            "the full chain ends at +0"
        );
        assert_eq!(bits(&out), bits(&want));
    }

    #[test]
    fn a_non_finite_dense_operand_gives_the_bits_of_matmul() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (n, m, d) = (40, 64, 16);
        let h = sparse(&mut rng, n * m, 0.5);
        let mut w = dense(&mut rng, m * d);
        w[5] = f32::INFINITY;
        let (mut out, mut want) = (vec![0.0; n * d], vec![0.0; n * d]);
        relu_times(
            &mut out,
            &h,
            &NonzeroBits::of(&h, n, m),
            &w,
            (n, m, d),
            false,
        );
        matmul(&mut want, &h, false, &w, false, (n, m, d), false);
        assert_eq!(bits(&out), bits(&want));
        assert!(out.iter().any(|v| v.is_nan()), "0·∞ reaches the output");
    }
}
