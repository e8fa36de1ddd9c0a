//! Row kernels of the fused ops ([`super::ops`]): plain Rust loops compiled twice,
//! for baseline x86-64 and with AVX2 + FMA, and dispatched on the CPU at run time.
//! Rust never contracts `a * b + c` into an FMA, so both versions compute the same
//! bits (a test checks every kernel).

#[cfg(test)]
thread_local! {
    /// Tests set this to run the baseline version of every kernel on this thread.
    static BASELINE_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with only the baseline version of every `simd_fn` kernel on this thread.
#[cfg(test)]
pub(crate) fn baseline_only<T>(f: impl FnOnce() -> T) -> T {
    BASELINE_ONLY.with(|b| b.set(true));
    let out = f();
    BASELINE_ONLY.with(|b| b.set(false));
    out
}

/// Whether a kernel may take its SIMD version (always, outside tests).
#[inline(always)]
pub(crate) fn simd_allowed() -> bool {
    #[cfg(test)]
    if BASELINE_ONLY.with(|b| b.get()) {
        return false;
    }
    true
}

/// Whether the AVX2 + FMA version of a kernel runs: the CPU has both
/// ([`cpu_has_avx2_fma`]), and the tests have not asked for the baseline
/// ([`simd_allowed`]).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn avx2_fma() -> bool {
    simd_allowed() && cpu_has_avx2_fma()
}

/// Whether this CPU has AVX2 and FMA (what the tests ask to know whether the fast
/// kernels can run at all).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn cpu_has_avx2_fma() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

/// Defines `fn $name(args)` that runs its body compiled with AVX2 and FMA enabled when
/// the CPU has them (bitgrok is built for baseline x86-64). Rust never contracts
/// `a * b + c` into an FMA, so both versions compute the same bits.
macro_rules! simd_fn {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn fast($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if $crate::engine::model::kernels::avx2_fma() {
                    // SAFETY: the CPU supports AVX2 and FMA (checked just above), the only
                    // requirement of calling a `target_feature` function.
                    return unsafe { fast($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use simd_fn;

/// Attention weights over the three positions of every head, from the score table:
/// `out = rate·softmax + uniform` (Zhong et al.'s attention rate; `uniform` from
/// [`crate::config::AttentionMix::uniform_weight_f32`], `(1 − rate)/3` by default;
/// position 2 may attend to all three positions in both architectures), and the softmax itself in
/// `softmax`, which the backward pass needs. At rate 1 `out` equals the softmax bit
/// for bit.
pub(super) fn position_weights(
    s: &[f32],
    r: [usize; 3],
    heads: usize,
    rate: f32,
    uniform: f32,
    out: &mut [f32],
    softmax: &mut [f32],
) {
    // The exponentials of every head at once (eight at a time where the CPU can),
    // on the stack for up to STACK_HEADS heads.
    let (mut stack, mut heap);
    let e: &mut [f32] = if heads <= STACK_HEADS {
        stack = [0.0f32; 3 * STACK_HEADS];
        &mut stack[..3 * heads]
    } else {
        heap = vec![0.0f32; 3 * heads];
        &mut heap
    };
    for h in 0..heads {
        let sj = [
            s[r[0] * heads + h],
            s[r[1] * heads + h],
            s[r[2] * heads + h],
        ];
        let mx = sj[0].max(sj[1]).max(sj[2]);
        for j in 0..3 {
            e[h * 3 + j] = sj[j] - mx;
        }
    }
    super::softmax::exp_in_place(e);
    for (h, e) in e.chunks_exact(3).enumerate() {
        let inv = 1.0 / (e[0] + e[1] + e[2]);
        for j in 0..3 {
            softmax[h * 3 + j] = e[j] * inv;
            out[h * 3 + j] = rate * softmax[h * 3 + j] + uniform;
        }
    }
}

/// `acc += w · row` over a slice.
#[inline(always)]
fn axpy(acc: &mut [f32], w: f32, row: &[f32]) {
    for (a, v) in acc.iter_mut().zip(row) {
        *a += w * v;
    }
}

/// Dot product with 32 independent partial sums (vectorises into independent FMA
/// chains; fixed order, so deterministic).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const L: usize = 32;
    let mut acc = [0.0f32; L];
    let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..L {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Lanes of [`dot`]'s partial sums.
const DOT_LANES: usize = 32;

/// The partial sums of three dot products of `a` with `b[0]`, `b[1]`, `b[2]`, each as
/// [`dot`] computes them (same lanes, same order), in one pass over `a`, written to
/// `lanes[0..3]` and `tails[0..3]`; the sums themselves come from [`lane_sums`].
#[inline(always)]
fn dot3_parts(a: &[f32], b: [&[f32]; 3], lanes: &mut [[f32; DOT_LANES]], tails: &mut [f32]) {
    const L: usize = DOT_LANES;
    let (mut acc0, mut acc1, mut acc2) = ([0.0f32; L], [0.0f32; L], [0.0f32; L]);
    let full = a.len() / L * L;
    let (a_full, b0, b1, b2) = (&a[..full], &b[0][..full], &b[1][..full], &b[2][..full]);
    for (((x, y0), y1), y2) in a_full
        .chunks_exact(L)
        .zip(b0.chunks_exact(L))
        .zip(b1.chunks_exact(L))
        .zip(b2.chunks_exact(L))
    {
        for k in 0..L {
            acc0[k] += x[k] * y0[k];
            acc1[k] += x[k] * y1[k];
            acc2[k] += x[k] * y2[k];
        }
    }
    for (j, tail) in tails[..3].iter_mut().enumerate() {
        *tail = a[full..]
            .iter()
            .zip(&b[j][full..a.len()])
            .map(|(x, y)| x * y)
            .sum::<f32>();
    }
    lanes[0] = acc0;
    lanes[1] = acc1;
    lanes[2] = acc2;
}

/// Dot products finished from their parts ([`dot3_parts`]): `out[c] =
/// lanes[c].iter().sum() + tails[c]`, as [`dot`] finishes it (the lanes added in
/// order to what `Iterator::sum` starts from, then the tail). Each sum is a chain of
/// 32 dependent adds; where the CPU has AVX, eight of them run side by side in the
/// lanes of one vector (their lanes transposed into place, [`avx::lane_sums`]), the
/// rest interleaved by up to eight.
#[inline(always)]
fn lane_sums(lanes: &[[f32; DOT_LANES]], tails: &[f32], out: &mut [f32]) {
    let n = out.len();
    assert!(lanes.len() >= n && tails.len() >= n);
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx") && simd_allowed() {
        // SAFETY: the CPU has AVX; the kernel stays within the first `n` of each slice
        // (checked above).
        done = unsafe { avx::lane_sums(lanes, tails, out) };
    }
    const GROUP: usize = 8;
    for c0 in (done..n).step_by(GROUP) {
        let g = GROUP.min(n - c0);
        let mut sums = [std::iter::empty::<f32>().sum::<f32>(); GROUP];
        for k in 0..DOT_LANES {
            for (s, lanes) in sums[..g].iter_mut().zip(&lanes[c0..c0 + g]) {
                *s += lanes[k];
            }
        }
        for c in 0..g {
            out[c0 + c] = sums[c] + tails[c0 + c];
        }
    }
}

#[derive(Clone, Copy)]
pub(super) struct TableShape {
    pub heads: usize,
    pub tr: usize,
    pub d: usize,
    pub m: usize,
    /// The attention rate and uniform weight (see [`position_weights`]).
    pub rate: f32,
    pub uniform: f32,
}

/// Columns per block of [`weighted_rows`]: 64 floats stay in 8 AVX registers.
const BLOCK: usize = 64;

/// The most heads whose table rows [`table_rows_forward`] gathers on the stack; more
/// heads take the row-at-a-time loop (the same bits).
const STACK_HEADS: usize = 16;

/// `out = finish(init + Σ_k w[k]·rows[k])`, summed for each column in the order of
/// `rows`, one block of columns at a time so that the partial sums stay in registers
/// instead of going through memory once per row. Every element's operations and
/// their order are those of `out = init` followed by one `out += w[k]·rows[k]` pass
/// per row, so the bits are too.
#[inline(always)]
fn weighted_rows(
    out: &mut [f32],
    init: &[f32],
    w: &[f32],
    rows: &[&[f32]],
    finish: impl Fn(f32, usize) -> f32,
) {
    let n = out.len();
    let mut c0 = 0;
    while c0 + BLOCK <= n {
        let mut acc = [0.0f32; BLOCK];
        acc.copy_from_slice(&init[c0..c0 + BLOCK]);
        for (wk, row) in w.iter().zip(rows) {
            let row: &[f32; BLOCK] = row[c0..c0 + BLOCK].try_into().expect("one block");
            for c in 0..BLOCK {
                acc[c] += wk * row[c];
            }
        }
        // By index over fixed-size arrays: the sums stay in registers (iterating the
        // array by value spilled them, and the finish read them back misaligned).
        let o: &mut [f32; BLOCK] = (&mut out[c0..c0 + BLOCK]).try_into().expect("one block");
        for c in 0..BLOCK {
            o[c] = finish(acc[c], c0 + c);
        }
        c0 += BLOCK;
    }
    if c0 < n {
        let tail = &mut out[c0..];
        tail.copy_from_slice(&init[c0..]);
        for (wk, row) in w.iter().zip(rows) {
            axpy(tail, *wk, &row[c0..]);
        }
        for (c, o) in tail.iter_mut().enumerate() {
            *o = finish(*o, c0 + c);
        }
    }
}

simd_fn! {
    /// Forward rows of [`attention_mlp`]: position weights, x1 and relu(pre) per example.
    pub(super) fn table_rows_forward(
        shape: TableShape,
        rows: &[[u32; 3]],
        s: &[f32],
        cx: &[f32],
        ch: &[f32],
        vo: &[f32],
        tt: &[f32],
        b_out: Option<&[f32]>,
        out: &mut [f32],
        hidden: &mut [f32],
        weights: (&mut [f32], &mut [f32]),
    ) {
        let TableShape {
            heads,
            tr,
            d,
            m,
            rate,
            uniform,
        } = shape;
        let chunk = out
            .chunks_exact_mut(d)
            .zip(hidden.chunks_exact_mut(m))
            .zip(weights.0.chunks_exact_mut(heads * 3))
            .zip(weights.1.chunks_exact_mut(heads * 3));
        for (k, (((x, a), w), sm)) in chunk.enumerate() {
            let r = rows[k].map(|x| x as usize);
            position_weights(s, r, heads, rate, uniform, w, sm);
            if heads <= STACK_HEADS {
                // The table rows the example reads, in (head, position) order.
                let mut vo_rows: [&[f32]; 3 * STACK_HEADS] = [&[]; 3 * STACK_HEADS];
                let mut tt_rows: [&[f32]; 3 * STACK_HEADS] = [&[]; 3 * STACK_HEADS];
                for h in 0..heads {
                    for j in 0..3 {
                        vo_rows[h * 3 + j] = &vo[(h * tr + r[j]) * d..][..d];
                        tt_rows[h * 3 + j] = &tt[(h * tr + r[j]) * m..][..m];
                    }
                }
                let (vo_rows, tt_rows) = (&vo_rows[..heads * 3], &tt_rows[..heads * 3]);
                match b_out {
                    Some(b) => weighted_rows(x, cx, w, vo_rows, |v, c| v + b[c]),
                    None => weighted_rows(x, cx, w, vo_rows, |v, _| v),
                }
                weighted_rows(a, ch, w, tt_rows, |v, _| v.max(0.0));
                continue;
            }
            x.copy_from_slice(cx);
            a.copy_from_slice(ch);
            for h in 0..heads {
                for j in 0..3 {
                    let wj = w[h * 3 + j];
                    axpy(x, wj, &vo[(h * tr + r[j]) * d..][..d]);
                    axpy(a, wj, &tt[(h * tr + r[j]) * m..][..m]);
                }
            }
            for v in a.iter_mut() {
                *v = v.max(0.0);
            }
            if let Some(b) = b_out {
                for (v, b) in x.iter_mut().zip(b) {
                    *v += b;
                }
            }
        }
    }
}

simd_fn! {
    /// Backward rows of [`attention_mlp`]: the ReLU mask on `dpre`, and the gradient of
    /// the pre-softmax scores per example and head (`dscore` [rows, heads, 3]) from
    /// the softmax weights `probs`.
    pub(super) fn table_rows_backward(
        shape: TableShape,
        rows: &[[u32; 3]],
        nonzero: &[u64],
        g: &[f32],
        probs: &[f32],
        vo: &[f32],
        tt: &[f32],
        dpre: &mut [f32],
        dscore: &mut [f32],
    ) {
        let TableShape {
            heads,
            tr,
            d,
            m,
            rate,
            uniform: _,
        } = shape;
        // Per head, the three dot products of dpre with its positions' T rows, then
        // the three of g with their VO rows.
        let chains = heads * 6;
        let mut lanes = vec![[0.0f32; DOT_LANES]; chains];
        let (mut tails, mut sums) = (vec![0.0f32; chains], vec![0.0f32; chains]);
        let chunk = dpre.chunks_exact_mut(m).zip(dscore.chunks_exact_mut(heads * 3));
        for (i, (dp, dsc)) in chunk.enumerate() {
            let r = rows[i].map(|x| x as usize);
            let words = m.div_ceil(64);
            mask_by_bits(dp, &nonzero[i * words..(i + 1) * words]);
            let gi = &g[i * d..(i + 1) * d];
            let w = &probs[i * heads * 3..(i + 1) * heads * 3];
            for h in 0..heads {
                let (l, t) = (&mut lanes[h * 6..], &mut tails[h * 6..]);
                dot3_parts(dp, head_rows(tt, h * tr, r, m), l, t);
                let (l, t) = (&mut lanes[h * 6 + 3..], &mut tails[h * 6 + 3..]);
                dot3_parts(gi, head_rows(vo, h * tr, r, d), l, t);
            }
            lane_sums(&lanes, &tails, &mut sums);
            for h in 0..heads {
                let (t, v) = (&sums[h * 6..h * 6 + 3], &sums[h * 6 + 3..h * 6 + 6]);
                let dw = [t[0] + v[0], t[1] + v[1], t[2] + v[2]];
                let wh = &w[h * 3..h * 3 + 3];
                let s = wh[0] * dw[0] + wh[1] * dw[1] + wh[2] * dw[2];
                for j in 0..3 {
                    dsc[h * 3 + j] = (rate * wh[j]) * (dw[j] - s);
                }
            }
        }
    }
}

/// Rows `first + r[j]` (of `len` floats) of `table`, j = 0, 1, 2: a head's rows for an
/// example's three positions. Written out, not by `[T; 3]::map`, which stayed a
/// function call in the backward row kernel (1.3 % of a p = 53 step).
#[inline(always)]
fn head_rows(table: &[f32], first: usize, r: [usize; 3], len: usize) -> [&[f32]; 3] {
    let at = |j: usize| (first + r[j]) * len;
    [
        &table[at(0)..at(0) + len],
        &table[at(1)..at(1) + len],
        &table[at(2)..at(2) + len],
    ]
}

/// Where [`scatter_rows`] writes one column block: `rows` rows of `cols` floats,
/// `stride` floats apart. A block of a wider matrix lets the column blocks of one
/// scatter be written by parallel tasks straight into the matrix (each task owns its
/// columns of every row), with no zeroed part and no copy.
pub(super) struct BlockOut<'a> {
    ptr: *mut f32,
    rows: usize,
    cols: usize,
    stride: usize,
    _buffer: std::marker::PhantomData<&'a mut [f32]>,
}

impl<'a> BlockOut<'a> {
    /// All of `out`, as rows of `cols` floats.
    #[cfg(test)]
    pub(super) fn whole(out: &'a mut [f32], cols: usize) -> Self {
        let rows = out.len().checked_div(cols).unwrap_or(0);
        BlockOut {
            ptr: out.as_mut_ptr(),
            rows,
            cols,
            stride: cols,
            _buffer: std::marker::PhantomData,
        }
    }

    /// Columns `c0..c0 + cols` of the `rows` × `stride` row-major matrix at `base`.
    ///
    /// # Safety
    /// `base` points to `rows · stride` floats valid for writes during `'a`, with
    /// `c0 + cols <= stride`, and nothing else reads or writes those columns meanwhile.
    pub(super) unsafe fn columns(
        base: *mut f32,
        rows: usize,
        stride: usize,
        c0: usize,
        cols: usize,
    ) -> Self {
        assert!(c0 + cols <= stride);
        BlockOut {
            ptr: base.wrapping_add(c0),
            rows,
            cols,
            stride,
            _buffer: std::marker::PhantomData,
        }
    }

    /// Row `r`'s columns.
    fn row(&mut self, r: usize) -> &mut [f32] {
        assert!(r < self.rows);
        // SAFETY: row r's `cols` floats lie inside the buffer this block was made of
        // (`whole`: a borrowed slice; `columns`: its caller's promise), and the
        // `&mut self` borrow keeps a second row slice from being taken meanwhile.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(r * self.stride), self.cols) }
    }
}

/// The readers of every table row: for row `t`, `terms[start[t]..start[t + 1]]` are
/// the (example `i`, position `j`) with `rows[i][j] = t`, as `4i + j`, in example
/// then position order: the order in which a pass over the examples adds them.
pub(super) struct Readers {
    start: Vec<usize>,
    terms: Vec<u32>,
}

impl Readers {
    pub(super) fn of(rows: &[[u32; 3]], tr: usize) -> Self {
        let mut start = vec![0usize; tr + 1];
        for r in rows {
            for &t in r {
                start[t as usize + 1] += 1;
            }
        }
        for t in 0..tr {
            start[t + 1] += start[t];
        }
        let mut next = start.clone();
        let mut terms = vec![0u32; 3 * rows.len()];
        for (i, r) in rows.iter().enumerate() {
            for (j, &t) in r.iter().enumerate() {
                terms[next[t as usize]] = u32::try_from(4 * i + j).expect("examples fit u32");
                next[t as usize] += 1;
            }
        }
        Readers { start, terms }
    }

    fn of_row(&self, t: usize) -> &[u32] {
        &self.terms[self.start[t]..self.start[t + 1]]
    }

    fn table_rows(&self) -> usize {
        self.start.len() - 1
    }
}

/// Columns of a block of [`scatter_rows`]: 16 floats for each of 4 heads stay in 8
/// AVX registers. Callers hand it blocks of this width (one task each), whose
/// source columns it packs contiguously.
pub(super) const SCATTER_COLS: usize = 16;

/// The sums of one table row for the heads `h0..h0 + H` and the `C` columns from
/// `c`: `out_h = Σ_{(i, j) in terms} w_ihj · src[i, c..c + C]`, in the terms' order.
#[inline(always)]
fn reader_sums<const H: usize, const C: usize>(
    terms: &[u32],
    weights: &[f32],
    src: &[f32],
    heads: usize,
    h0: usize,
    width: usize,
    c: usize,
) -> [[f32; C]; H] {
    #[cfg(target_arch = "x86_64")]
    if C == 16 && is_x86_feature_detected!("avx") && simd_allowed() {
        let mut out = [[0.0f32; C]; H];
        // SAFETY: the CPU has AVX; `sums16` checks every index it reads.
        let sums = unsafe { avx::sums16::<H>(terms, weights, src, heads, h0, width, c) };
        for (o, s) in out.iter_mut().zip(&sums) {
            o.copy_from_slice(s);
        }
        return out;
    }
    let mut acc = [[0.0f32; C]; H];
    for &term in terms {
        let (i, j) = (term as usize / 4, term as usize % 4);
        let s: &[f32; C] = src[i * width + c..][..C].try_into().expect("one block");
        for (g, acc) in acc.iter_mut().enumerate() {
            let w = weights[(i * heads + h0 + g) * 3 + j];
            for k in 0..C {
                acc[k] += w * s[k];
            }
        }
    }
    acc
}

/// `x = if bit k of `words` is set { x } else { +0 }`, element by element (bit k
/// is bit k % 64 of word k / 64): the ReLU mask, read from relu(pre)'s nonzero bits
/// ([`super::relu_products::NonzeroBits`]) rather than from relu(pre), a 32nd of
/// the bytes. relu(pre) = `max(pre, 0)` is never NaN or below zero, so it is
/// nonzero exactly where it is above zero.
#[inline(always)]
fn mask_by_bits(x: &mut [f32], words: &[u64]) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && simd_allowed() {
        // SAFETY: the CPU has AVX2; the kernel stays within `x` and `words`.
        done = unsafe { avx::mask_by_bits(x, words) };
    }
    for (k, x) in x.iter_mut().enumerate().skip(done) {
        if (words[k / 64] >> (k % 64)) & 1 == 0 {
            *x = 0.0;
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx {
    use super::DOT_LANES;
    use std::arch::x86_64::*;

    /// [`super::lane_sums`] for whole groups of eight: the group's 8 × 32 lanes go
    /// through 8 × 8 transposes, so that one vector add adds lane k of all eight sums
    /// (each sum's adds, and their order, unchanged). Returns how many it did.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn lane_sums(
        lanes: &[[f32; DOT_LANES]],
        tails: &[f32],
        out: &mut [f32],
    ) -> usize {
        let groups = out.len().min(lanes.len()).min(tails.len()) / 8;
        let start = _mm256_set1_ps(std::iter::empty::<f32>().sum::<f32>());
        for g in 0..groups {
            let l = &lanes[g * 8..g * 8 + 8];
            let mut s = start;
            for k0 in (0..DOT_LANES).step_by(8) {
                let mut r = [_mm256_setzero_ps(); 8];
                for (r, l) in r.iter_mut().zip(l) {
                    *r = _mm256_loadu_ps(l[k0..k0 + 8].as_ptr());
                }
                for column in transpose8(r) {
                    s = _mm256_add_ps(s, column);
                }
            }
            s = _mm256_add_ps(s, _mm256_loadu_ps(tails[g * 8..g * 8 + 8].as_ptr()));
            _mm256_storeu_ps(out[g * 8..g * 8 + 8].as_mut_ptr(), s);
        }
        groups * 8
    }

    /// The 8 × 8 transpose: column k of the result holds element k of each row.
    #[inline]
    #[target_feature(enable = "avx")]
    pub(in crate::engine::model) unsafe fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xee>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xee>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xee>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xee>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ]
    }

    /// [`super::mask_by_bits`] on the whole 8-float vectors (an AND with the mask
    /// each vector's byte of bits spreads to its lanes). Returns how many elements it
    /// did.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn mask_by_bits(x: &mut [f32], words: &[u64]) -> usize {
        let full = x.len() / 8 * 8;
        let lane_bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
        for k in (0..full).step_by(8) {
            let byte = ((words[k / 64] >> (k % 64)) & 0xff) as i32;
            let set = _mm256_and_si256(_mm256_set1_epi32(byte), lane_bits);
            let mut keep = _mm256_castsi256_ps(_mm256_cmpeq_epi32(set, lane_bits));
            // Hidden from the optimizer, which would otherwise turn the AND into a
            // masked store of zeros (`vpmaskmovd`, slow on some CPUs).
            std::arch::asm!("/* {0} */", inout(ymm_reg) keep, options(pure, nomem, nostack));
            let at = x.as_mut_ptr().add(k);
            _mm256_storeu_ps(at, _mm256_and_ps(_mm256_loadu_ps(at), keep));
        }
        full
    }

    /// [`super::reader_sums`] for 16 columns, two 8-float vectors per head, with a
    /// separate multiply and add (the bits of the scalar `acc += w * s`).
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn sums16<const H: usize>(
        terms: &[u32],
        weights: &[f32],
        src: &[f32],
        heads: usize,
        h0: usize,
        width: usize,
        c: usize,
    ) -> [[f32; 16]; H] {
        let mut lo = [_mm256_setzero_ps(); H];
        let mut hi = [_mm256_setzero_ps(); H];
        for &term in terms {
            let (i, j) = (term as usize / 4, term as usize % 4);
            let s = &src[i * width + c..][..16];
            let w = &weights[(i * heads + h0) * 3 + j..][..3 * (H - 1) + 1];
            let (s0, s1) = (
                _mm256_loadu_ps(s.as_ptr()),
                _mm256_loadu_ps(s.as_ptr().add(8)),
            );
            for g in 0..H {
                let wv = _mm256_set1_ps(w[3 * g]);
                lo[g] = _mm256_add_ps(lo[g], _mm256_mul_ps(wv, s0));
                hi[g] = _mm256_add_ps(hi[g], _mm256_mul_ps(wv, s1));
            }
        }
        let mut out = [[0.0f32; 16]; H];
        for g in 0..H {
            _mm256_storeu_ps(out[g].as_mut_ptr(), lo[g]);
            _mm256_storeu_ps(out[g].as_mut_ptr().add(8), hi[g]);
        }
        out
    }
}

simd_fn! {
    /// The scatter-add of the examples' rows into the table rows they read:
    /// `out[h, t, ·] = Σ_{i, j: r_ij = t} w_ihj · src[i, c0..c1]` (out [heads, tr,
    /// c1 − c0], overwritten), each element summed from 0 over the examples in order,
    /// and within an example over its positions in order: the bits of
    /// `acc[r_ij] += w_ihj · src[i]` over i then j. It runs one table row at a time
    /// (its [`Readers`]) so that the sums stay in registers while `src` is read.
    pub(super) fn scatter_rows(
        readers: &Readers,
        weights: &[f32],
        src: &[f32],
        heads: usize,
        width: usize,
        c0: usize,
        c1: usize,
        out: &mut BlockOut,
    ) {
        let (tr, cw) = (readers.table_rows(), c1 - c0);
        assert!(out.rows >= heads * tr && out.cols == cw);
        if cw == 0 {
            return;
        }
        // The block's columns of every example, contiguous: read in the readers'
        // (scattered) order, rows of a power-of-two width would crowd a few cache sets.
        let n = src.len() / width;
        // Written in full just below.
        let mut packed = crate::engine::model::ops::Scratch::new(n * cw);
        let pairs = packed.chunks_exact_mut(cw).zip(src.chunks_exact(width));
        if cw == SCATTER_COLS {
            // Fixed-size copies (a 16-float `memcpy` call per row costs more).
            for (dst, row) in pairs {
                let dst: &mut [f32; SCATTER_COLS] = dst.try_into().expect("one block");
                *dst = row[c0..c1].try_into().expect("one block");
            }
        } else {
            for (dst, row) in pairs {
                dst.copy_from_slice(&row[c0..c1]);
            }
        }
        // From here on, columns are those of the packed block (0..cw).
        for t in 0..tr {
            let terms = readers.of_row(t);
            let mut h0 = 0;
            while h0 < heads {
                let hg = (heads - h0).min(4);
                let mut c = 0;
                while c + SCATTER_COLS <= cw {
                    let mut put = |sums: &[[f32; SCATTER_COLS]]| {
                        for (g, s) in sums.iter().enumerate() {
                            out.row((h0 + g) * tr + t)[c..c + SCATTER_COLS].copy_from_slice(s);
                        }
                    };
                    let (w, p) = (weights, &packed[..]);
                    match hg {
                        4 => put(&reader_sums::<4, SCATTER_COLS>(terms, w, p, heads, h0, cw, c)),
                        3 => put(&reader_sums::<3, SCATTER_COLS>(terms, w, p, heads, h0, cw, c)),
                        2 => put(&reader_sums::<2, SCATTER_COLS>(terms, w, p, heads, h0, cw, c)),
                        _ => put(&reader_sums::<1, SCATTER_COLS>(terms, w, p, heads, h0, cw, c)),
                    }
                    c += SCATTER_COLS;
                }
                for c in c..cw {
                    for g in 0..hg {
                        let s = reader_sums::<1, 1>(terms, weights, &packed, heads, h0 + g, cw, c);
                        out.row((h0 + g) * tr + t)[c] = s[0][0];
                    }
                }
                h0 += hg;
            }
        }
    }
}

simd_fn! {
    /// RMSNorm forward on a chunk of rows: `r = sqrt(d)/‖x‖`, `y = x·r ⊙ g`.
    pub(super) fn rms_rows_forward(d: usize, sd: f32, g: &[f32], xv: &[f32], rs: &mut [f32], out: &mut [f32]) {
        for ((o, r), row) in out.chunks_exact_mut(d).zip(rs).zip(xv.chunks_exact(d)) {
            *r = sd / dot(row, row).sqrt();
            for (o, (v, gj)) in o.iter_mut().zip(row.iter().zip(g)) {
                *o = v * *r * gj;
            }
        }
    }
}

simd_fn! {
    /// RMSNorm backward to the input on a chunk of rows:
    /// `dx += r·(dy⊙g − x·((dy⊙g)·x)/‖x‖²)`, with `‖x‖² = d/r²`.
    pub(super) fn rms_rows_backward(d: usize, g: &[f32], xv: &[f32], rs: &[f32], dy: &[f32], dx: &mut [f32]) {
        let mut dyg = vec![0.0f32; d];
        let rows = dx.chunks_exact_mut(d).zip(dy.chunks_exact(d));
        for ((dxr, dyr), (row, &r)) in rows.zip(xv.chunks_exact(d).zip(rs)) {
            for ((o, a), b) in dyg.iter_mut().zip(dyr).zip(g) {
                *o = a * b;
            }
            let c = dot(&dyg, row) * r * r / (d as f32);
            for ((o, a), x) in dxr.iter_mut().zip(&dyg).zip(row) {
                *o += r * (a - x * c);
            }
        }
    }
}

simd_fn! {
    /// RMSNorm gain gradient of a chunk of rows: `acc += Σ_rows dy ⊙ x·r` (in f64).
    pub(super) fn rms_gain_partial(d: usize, xv: &[f32], rs: &[f32], dy: &[f32], acc: &mut [f64]) {
        for ((row, dyr), &r) in xv.chunks_exact(d).zip(dy.chunks_exact(d)).zip(rs) {
            for ((a, x), g) in acc.iter_mut().zip(row).zip(dyr) {
                *a += (g * x * r) as f64;
            }
        }
    }
}

simd_fn! {
    /// Column sums of a row-major [rows, cols] chunk added into `acc` (in f64, row
    /// after row).
    pub(super) fn column_sums(x: &[f32], cols: usize, acc: &mut [f64]) {
        for row in x.chunks_exact(cols) {
            for (a, v) in acc.iter_mut().zip(row) {
                *a += *v as f64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::relu_products::NonzeroBits;
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn rand_vec(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.gen_range(-2.0f32..2.0)).collect()
    }

    /// Runs `f` once with the SIMD versions allowed and once baseline-only.
    fn both<T>(f: impl Fn() -> T) -> (T, T) {
        (f(), baseline_only(&f))
    }

    fn bits(x: &[f32]) -> Vec<u32> {
        x.iter().map(|v| v.to_bits()).collect()
    }

    /// Random inputs of [`table_rows_forward`] for `n` examples of `shape`.
    struct ForwardInputs {
        rows: Vec<[u32; 3]>,
        s: Vec<f32>,
        cx: Vec<f32>,
        ch: Vec<f32>,
        vo: Vec<f32>,
        tt: Vec<f32>,
        b_out: Vec<f32>,
    }

    impl ForwardInputs {
        fn random(rng: &mut ChaCha8Rng, shape: TableShape, n: usize) -> Self {
            let TableShape {
                heads, tr, d, m, ..
            } = shape;
            ForwardInputs {
                rows: (0..n)
                    .map(|_| [0, 1, 2].map(|_| rng.gen_range(0..tr as u32)))
                    .collect(),
                s: rand_vec(rng, tr * heads),
                cx: rand_vec(rng, d),
                ch: rand_vec(rng, m),
                vo: rand_vec(rng, heads * tr * d),
                tt: rand_vec(rng, heads * tr * m),
                b_out: rand_vec(rng, d),
            }
        }

        /// `[out, hidden, weights, softmax]` of the rows.
        fn run(&self, shape: TableShape) -> [Vec<f32>; 4] {
            let (n, h3) = (self.rows.len(), shape.heads * 3);
            let (mut out, mut hid) = (vec![0.0; n * shape.d], vec![0.0; n * shape.m]);
            let (mut w, mut sm) = (vec![0.0; n * h3], vec![0.0; n * h3]);
            table_rows_forward(
                shape,
                &self.rows,
                &self.s,
                &self.cx,
                &self.ch,
                &self.vo,
                &self.tt,
                Some(&self.b_out),
                &mut out,
                &mut hid,
                (&mut w, &mut sm),
            );
            [out, hid, w, sm]
        }
    }

    /// Side by side (groups of eight) or interleaved, each sum is its own chain in
    /// order: magnitudes far apart make another order round differently, and a sum
    /// of negative zeros shows the start value.
    #[test]
    fn lane_sums_give_the_bits_of_each_sum_in_order() {
        let mut rng = ChaCha8Rng::seed_from_u64(14);
        for chains in [3, 8, 19, 24] {
            let mut lanes: Vec<[f32; DOT_LANES]> = (0..chains)
                .map(|_| {
                    std::array::from_fn(|_| {
                        rng.gen_range(-2.0f32..2.0) * 10f32.powi(rng.gen_range(-6..6))
                    })
                })
                .collect();
            let mut tails = rand_vec(&mut rng, chains);
            lanes[1] = [-0.0; DOT_LANES];
            tails[1] = -0.0;
            let want: Vec<u32> = lanes
                .iter()
                .zip(&tails)
                .map(|(l, t)| (l.iter().sum::<f32>() + t).to_bits())
                .collect();
            let (simd, base) = both(|| {
                let mut out = vec![0.0; chains];
                lane_sums(&lanes, &tails, &mut out);
                bits(&out)
            });
            assert_eq!(simd, want, "{chains} sums");
            assert_eq!(base, want, "{chains} sums, baseline");
        }
    }

    #[test]
    fn dot3_gives_the_bits_of_three_dots() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for n in [0, 1, 31, 32, 45, 128, 515] {
            let a = rand_vec(&mut rng, n);
            let b = [0, 1, 2].map(|_| rand_vec(&mut rng, n));
            let (mut lanes, mut tails) = ([[0.0; DOT_LANES]; 3], [0.0; 3]);
            dot3_parts(&a, [&b[0], &b[1], &b[2]], &mut lanes, &mut tails);
            let mut got = [0.0; 3];
            lane_sums(&lanes, &tails, &mut got);
            for j in 0..3 {
                assert_eq!(got[j].to_bits(), dot(&a, &b[j]).to_bits(), "n {n}, j {j}");
            }
        }
    }

    #[test]
    fn weighted_rows_gives_the_bits_of_successive_axpys() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        for n in [1, 63, 64, 65, 128, 200] {
            let init = rand_vec(&mut rng, n);
            let w = rand_vec(&mut rng, 12);
            let rows: Vec<Vec<f32>> = (0..12).map(|_| rand_vec(&mut rng, n)).collect();
            let refs: Vec<&[f32]> = rows.iter().map(|r| r.as_slice()).collect();
            let mut got = vec![0.0; n];
            weighted_rows(&mut got, &init, &w, &refs, |v, c| (v + init[c]).max(0.0));
            let mut want = init.clone();
            for (wk, row) in w.iter().zip(&rows) {
                axpy(&mut want, *wk, row);
            }
            for (c, v) in want.iter_mut().enumerate() {
                *v = (*v + init[c]).max(0.0);
            }
            assert_eq!(bits(&got), bits(&want), "n {n}");
        }
    }

    #[test]
    fn table_rows_forward_sums_in_head_then_position_order_with_any_head_count() {
        // 3 heads take the stacked-rows path, 17 the row-at-a-time one; both must
        // give the bits of init + one axpy per (head, position) in that order.
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for heads in [3, STACK_HEADS + 1] {
            let (tr, d, m, n) = (5, 70, 130, 4);
            let shape = TableShape {
                heads,
                tr,
                d,
                m,
                rate: 0.75,
                uniform: 0.25 / 3.0,
            };
            let input = ForwardInputs::random(&mut rng, shape, n);
            let [out, hid, w, _] = input.run(shape);
            let ForwardInputs {
                rows,
                cx,
                ch,
                vo,
                tt,
                b_out,
                ..
            } = &input;
            for (i, r) in rows.iter().enumerate() {
                let r = r.map(|x| x as usize);
                let (mut x, mut a) = (cx.clone(), ch.clone());
                for h in 0..heads {
                    for j in 0..3 {
                        let wj = w[i * heads * 3 + h * 3 + j];
                        axpy(&mut x, wj, &vo[(h * tr + r[j]) * d..][..d]);
                        axpy(&mut a, wj, &tt[(h * tr + r[j]) * m..][..m]);
                    }
                }
                let x: Vec<f32> = x.iter().zip(b_out).map(|(v, b)| v + b).collect();
                let a: Vec<f32> = a.iter().map(|v| v.max(0.0)).collect();
                assert_eq!(bits(&out[i * d..(i + 1) * d]), bits(&x), "heads {heads}");
                assert_eq!(bits(&hid[i * m..(i + 1) * m]), bits(&a), "heads {heads}");
            }
        }
    }

    #[test]
    fn scatter_rows_gives_the_bits_of_adding_the_examples_in_order() {
        // The definition: acc[h, r_ij] += w_ihj · src[i] for i in order, j in order.
        // Repeated rows within an example (a = b), table rows nobody reads, head
        // counts that are not a multiple of 4, column blocks with a tail.
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        for (heads, tr, width, n) in [(4, 9, 64, 40), (5, 6, 45, 33), (1, 3, 20, 7)] {
            let mut rows: Vec<[u32; 3]> = (0..n)
                .map(|_| [0, 1].map(|_| rng.gen_range(0..tr as u32 - 2)))
                .map(|[a, b]| [a.min(b), a.max(b), tr as u32 - 2])
                .collect();
            rows[1] = [2, 2, tr as u32 - 2];
            let weights = rand_vec(&mut rng, n * heads * 3);
            let src = rand_vec(&mut rng, n * width);
            let readers = Readers::of(&rows, tr);
            for (c0, c1) in [(0, width), (3, width - 2), (16, 32.min(width))] {
                let cw = c1 - c0;
                let mut want = vec![0.0f32; heads * tr * cw];
                for (i, r) in rows.iter().enumerate() {
                    for h in 0..heads {
                        for j in 0..3 {
                            let w = weights[(i * heads + h) * 3 + j];
                            let at = (h * tr + r[j] as usize) * cw;
                            axpy(
                                &mut want[at..at + cw],
                                w,
                                &src[i * width + c0..i * width + c1],
                            );
                        }
                    }
                }
                let mut got = rand_vec(&mut rng, heads * tr * cw);
                let mut out = BlockOut::whole(&mut got, cw);
                scatter_rows(&readers, &weights, &src, heads, width, c0, c1, &mut out);
                assert_eq!(bits(&got), bits(&want), "heads {heads}, columns {c0}..{c1}");
                // The same block written into its columns of a wider matrix, whose
                // other columns stay as they were.
                let stride = cw + 5;
                let mut wide = rand_vec(&mut rng, heads * tr * stride);
                let before = wide.clone();
                // SAFETY: `wide` holds heads·tr rows of `stride` floats and is not
                // otherwise used until `out` is dropped.
                let mut out =
                    unsafe { BlockOut::columns(wide.as_mut_ptr(), heads * tr, stride, 2, cw) };
                scatter_rows(&readers, &weights, &src, heads, width, c0, c1, &mut out);
                for (r, (row, old)) in wide.chunks(stride).zip(before.chunks(stride)).enumerate() {
                    assert_eq!(bits(&row[2..2 + cw]), bits(&want[r * cw..(r + 1) * cw]));
                    assert_eq!(bits(&row[..2]), bits(&old[..2]));
                    assert_eq!(bits(&row[2 + cw..]), bits(&old[2 + cw..]));
                }
            }
        }
    }

    #[test]
    fn every_simd_kernel_gives_the_bits_of_its_baseline() {
        if !cpu_has_avx2_fma() {
            eprintln!("skipped: this CPU lacks AVX2/FMA, so only the baseline kernels run");
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        // Sizes that are not multiples of the vector width or of dot's 32 lanes.
        let shape = TableShape {
            heads: 3,
            tr: 7,
            d: 45,
            m: 70,
            rate: 0.3,
            uniform: (1.0 - 0.3) / 3.0,
        };
        let (
            n,
            TableShape {
                heads, tr, d, m, ..
            },
        ) = (13, shape);
        let input = ForwardInputs::random(&mut rng, shape, n);
        let (simd, base) = both(|| input.run(shape).map(|v| bits(&v)));
        let (rows, vo, tt) = (&input.rows, &input.vo, &input.tt);
        assert_eq!(simd, base, "table_rows_forward");
        let (hidden, g) = (rand_vec(&mut rng, n * m), rand_vec(&mut rng, n * d));
        // relu(pre): exact zeros of both signs, which the mask must drop.
        let hidden: Vec<f32> = hidden
            .iter()
            .map(|&v| if v < -1.5 { -0.0 } else { v.max(0.0) })
            .collect();
        let nonzero = NonzeroBits::of(&hidden, n, m);
        let weights = rand_vec(&mut rng, n * heads * 3);
        let dpre0 = rand_vec(&mut rng, n * m);
        let (simd, base) = both(|| {
            let (mut dpre, mut dscore) = (dpre0.clone(), vec![0.0; n * heads * 3]);
            table_rows_backward(
                shape,
                rows,
                nonzero.row_words(0, n),
                &g,
                &weights,
                vo,
                tt,
                &mut dpre,
                &mut dscore,
            );
            [dpre, dscore].map(|v| bits(&v))
        });
        assert_eq!(simd, base, "table_rows_backward");
        let masked: Vec<f32> = dpre0
            .iter()
            .zip(&hidden)
            .map(|(&x, &a)| if a > 0.0 { x } else { 0.0 })
            .collect();
        assert_eq!(simd[0], bits(&masked), "the ReLU mask");
        let src = rand_vec(&mut rng, n * m);
        let readers = Readers::of(rows, tr);
        let (simd, base) = both(|| {
            let mut out = rand_vec(&mut ChaCha8Rng::seed_from_u64(1), heads * tr * 50);
            scatter_rows(
                &readers,
                &weights,
                &src,
                heads,
                m,
                10,
                60,
                &mut BlockOut::whole(&mut out, 50),
            );
            bits(&out)
        });
        assert_eq!(simd, base, "scatter_rows");
        let (gain, xv, dy) = (
            rand_vec(&mut rng, d),
            rand_vec(&mut rng, n * d),
            rand_vec(&mut rng, n * d),
        );
        let (simd, base) = both(|| {
            let (mut rs, mut out) = (vec![0.0; n], vec![0.0; n * d]);
            rms_rows_forward(d, (d as f32).sqrt(), &gain, &xv, &mut rs, &mut out);
            [rs, out].map(|v| bits(&v))
        });
        assert_eq!(simd, base, "rms_rows_forward");
        let rs = rand_vec(&mut rng, n);
        let (simd, base) = both(|| {
            let mut dx = xv.clone();
            rms_rows_backward(d, &gain, &xv, &rs, &dy, &mut dx);
            bits(&dx)
        });
        assert_eq!(simd, base, "rms_rows_backward");
        let (simd, base) = both(|| {
            let mut acc = vec![0.5f64; d];
            rms_gain_partial(d, &xv, &rs, &dy, &mut acc);
            acc.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        });
        assert_eq!(simd, base, "rms_gain_partial");
        let (simd, base) = both(|| {
            let mut acc = vec![0.5f64; d];
            column_sums(&xv, d, &mut acc);
            acc.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        });
        assert_eq!(simd, base, "column_sums");
    }
}
