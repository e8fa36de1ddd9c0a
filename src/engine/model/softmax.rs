//! The forward row loop of the cross-entropy: each row of logits turned into its
//! softmax in place, with the row's loss and whether its first argmax is the label.
//! [`row`] defines the arithmetic; [`rows`] computes the same bits faster where the
//! CPU has AVX2 and FMA: eight exponentials at a time ([`simd::exp8`], the C library's
//! `expf` bit for bit) and the f64 sums of eight rows interleaved (each row's sum is
//! still one chain over its columns in order; only its latency is hidden).

#[cfg(target_arch = "x86_64")]
use super::kernels::avx2_fma;

/// Softmax of `row` in place; returns the row's loss `max + ln Σ exp(z − max) − z_y`
/// (in f64) and whether its first argmax is `y`. The sum runs over the columns in
/// order in f64, from the f32 exponentials.
pub(super) fn row(row: &mut [f32], y: usize) -> (f64, bool) {
    let (mut best, mut mx) = (0, f32::NEG_INFINITY);
    for (c, &v) in row.iter().enumerate() {
        if v > mx {
            mx = v;
            best = c;
        }
    }
    let zy = row[y] as f64;
    let mut sum = 0.0f64;
    for v in row.iter_mut() {
        *v = (*v - mx).exp();
        sum += *v as f64;
    }
    let loss = finish(row, mx, sum, zy);
    (loss, best == y)
}

/// The row's loss from its max, sum and label logit; scales the exponentials in
/// `row` by `1/sum`.
#[inline(always)]
fn finish(row: &mut [f32], mx: f32, sum: f64, zy: f64) -> f64 {
    let inv = (1.0 / sum) as f32;
    for v in row.iter_mut() {
        *v *= inv;
    }
    mx as f64 + sum.ln() - zy
}

/// [`row`] on each row of `z` (`p` columns) with labels `labels`, results in `out`.
pub(super) fn rows(z: &mut [f32], p: usize, labels: &[u32], out: &mut [(f64, bool)]) {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        unsafe { simd::rows(z, p, labels, out) };
        return;
    }
    for ((r, &y), o) in z.chunks_exact_mut(p).zip(labels).zip(out) {
        *o = row(r, y as usize);
    }
}

/// `x = f32::exp(x)` in place, eight at a time where the CPU has AVX2 and FMA
/// ([`simd::exp8`]).
pub(super) fn exp_in_place(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        unsafe { simd::exp_minus(x, 0.0) };
        return;
    }
    for v in x.iter_mut() {
        *v = v.exp();
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod simd {
    use super::super::kernels::avx::transpose8;
    use super::finish;
    use std::arch::x86_64::*;

    /// `expf`'s table: `2^(i/32)`'s bits less `i << 47` (glibc's `__exp2f_data.tab`,
    /// from Arm's optimized-routines).
    const TAB: [u64; 32] = [
        0x3ff0000000000000,
        0x3fefd9b0d3158574,
        0x3fefb5586cf9890f,
        0x3fef9301d0125b51,
        0x3fef72b83c7d517b,
        0x3fef54873168b9aa,
        0x3fef387a6e756238,
        0x3fef1e9df51fdee1,
        0x3fef06fe0a31b715,
        0x3feef1a7373aa9cb,
        0x3feedea64c123422,
        0x3feece086061892d,
        0x3feebfdad5362a27,
        0x3feeb42b569d4f82,
        0x3feeab07dd485429,
        0x3feea47eb03a5585,
        0x3feea09e667f3bcd,
        0x3fee9f75e8ec5f74,
        0x3feea11473eb0187,
        0x3feea589994cce13,
        0x3feeace5422aa0db,
        0x3feeb737b0cdc5e5,
        0x3feec49182a3f090,
        0x3feed503b23e255d,
        0x3feee89f995ad3ad,
        0x3feeff76f2fb5e47,
        0x3fef199bdd85529c,
        0x3fef3720dcef9069,
        0x3fef5818dcfba487,
        0x3fef7c97337b9b5f,
        0x3fefa4afa2a490da,
        0x3fefd0765b6e4540,
    ];
    /// 32 / ln 2.
    const INVLN2_32: u64 = 0x40471547652b82fe;
    /// 1.5 · 2^52: adding it rounds to an integer held in the low bits.
    const SHIFT: u64 = 0x4338000000000000;
    /// The polynomial for `2^(r/32)`: `C0·r³ + C1·r² + C2·r + 1`.
    const C: [u64; 3] = [0x3ebc6af84b912394, 0x3f2ebfce50fac4f3, 0x3f962e42ff0c52d6];
    /// Bits of |x| from which `expf` leaves its main path (|x| ≥ 85, or not finite).
    const SPECIAL: i32 = 0x42a0_0000;

    /// `expf` of four floats by its main path, with the FMAs of glibc's build for
    /// FMA CPUs (`__expf_fma`): `x·32/ln 2 = k + r`, `exp x = 2^(k/32)·2^(r/32)`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn exp4_main(x: __m128) -> __m128 {
        let c = |b: u64| _mm256_set1_pd(f64::from_bits(b));
        let (invln2, shift) = (c(INVLN2_32), c(SHIFT));
        let xd = _mm256_cvtps_pd(x);
        let kd = _mm256_fmadd_pd(invln2, xd, shift);
        let ki = _mm256_castpd_si256(kd);
        let kd = _mm256_sub_pd(kd, shift);
        let r = _mm256_fmsub_pd(invln2, xd, kd);
        let index = _mm256_and_si256(ki, _mm256_set1_epi64x(31));
        let t = _mm256_i64gather_epi64::<8>(TAB.as_ptr() as *const i64, index);
        let s = _mm256_castsi256_pd(_mm256_add_epi64(t, _mm256_slli_epi64::<47>(ki)));
        let z = _mm256_fmadd_pd(c(C[0]), r, c(C[1]));
        let r2 = _mm256_mul_pd(r, r);
        let y = _mm256_fmadd_pd(c(C[2]), r, _mm256_set1_pd(1.0));
        let y = _mm256_fmadd_pd(z, r2, y);
        _mm256_cvtpd_ps(_mm256_mul_pd(y, s))
    }

    /// `f32::exp` of eight floats, bit for bit where the C library's `expf` is glibc's
    /// for FMA CPUs (checked on all floats against glibc 2.36); lanes off its main
    /// path call `f32::exp` itself.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn exp8(x: __m256) -> __m256 {
        let lo = exp4_main(_mm256_castps256_ps128(x));
        let hi = exp4_main(_mm256_extractf128_ps::<1>(x));
        let y = _mm256_set_m128(hi, lo);
        let abs = _mm256_and_si256(_mm256_castps_si256(x), _mm256_set1_epi32(i32::MAX));
        let special = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(
            abs,
            _mm256_set1_epi32(SPECIAL - 1),
        )));
        if special == 0 {
            return y;
        }
        let (mut xs, mut ys) = ([0.0f32; 8], [0.0f32; 8]);
        _mm256_storeu_ps(xs.as_mut_ptr(), x);
        _mm256_storeu_ps(ys.as_mut_ptr(), y);
        for lane in 0..8 {
            if special >> lane & 1 == 1 {
                ys[lane] = xs[lane].exp();
            }
        }
        _mm256_loadu_ps(ys.as_ptr())
    }

    /// Rows whose f64 sums are run side by side.
    const GROUP: usize = 8;

    /// [`super::rows`] with AVX2 and FMA; the same bits as [`super::row`] on each row.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn rows(z: &mut [f32], p: usize, labels: &[u32], out: &mut [(f64, bool)]) {
        let n = labels.len();
        for g in (0..n).step_by(GROUP) {
            let m = GROUP.min(n - g);
            let mut mx = [0.0f32; GROUP];
            let mut zy = [0.0f64; GROUP];
            // Rows with an infinity or a NaN take the plain loop.
            let mut plain = [false; GROUP];
            for i in 0..m {
                let r = &mut z[(g + i) * p..(g + i + 1) * p];
                let y = labels[g + i] as usize;
                match max_and_first(r) {
                    Some((m, best)) => {
                        mx[i] = m;
                        zy[i] = r[y] as f64;
                        out[g + i].1 = best == y;
                        exp_minus(r, m);
                    }
                    None => {
                        plain[i] = true;
                        out[g + i] = super::row(r, y);
                    }
                }
            }
            let group = &mut z[g * p..(g + m) * p];
            let sums = row_sums(group, p, m);
            for i in (0..m).filter(|&i| !plain[i]) {
                let r = &mut group[i * p..(i + 1) * p];
                out[g + i].0 = finish(r, mx[i], sums[i], zy[i]);
            }
        }
    }

    /// The max of a row of finite floats and the first column holding it (that of
    /// `v > max` scanned in order); `None` if the row has an infinity or a NaN.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn max_and_first(r: &[f32]) -> Option<(f32, usize)> {
        let full = r.len() / 8 * 8;
        let exponent = _mm256_set1_epi32(0x7f80_0000);
        let mut bad = _mm256_setzero_si256();
        let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
        for t in (0..full).step_by(8) {
            let v = _mm256_loadu_ps(r.as_ptr().add(t));
            let e = _mm256_and_si256(_mm256_castps_si256(v), exponent);
            bad = _mm256_or_si256(bad, _mm256_cmpeq_epi32(e, exponent));
            m = _mm256_max_ps(m, v);
        }
        if _mm256_testz_si256(bad, bad) == 0 || !r[full..].iter().all(|v| v.is_finite()) {
            return None;
        }
        let mut lanes = [0.0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), m);
        // Finite values: the max does not depend on the order it is taken in (±0
        // compare equal, and either gives the same exponentials and loss).
        let mx = lanes
            .iter()
            .chain(&r[full..])
            .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let target = _mm256_set1_ps(mx);
        for t in (0..full).step_by(8) {
            let v = _mm256_loadu_ps(r.as_ptr().add(t));
            let equal = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(v, target));
            if equal != 0 {
                return Some((mx, t + equal.trailing_zeros() as usize));
            }
        }
        let best = r[full..]
            .iter()
            .position(|&v| v == mx)
            .map_or(0, |k| full + k);
        Some((mx, best))
    }

    /// `r[j] = exp(r[j] − mx)`, eight at a time (the tail padded). With `mx` = +0
    /// the arguments are `r[j]` itself, bit for bit (`x − 0 = x` for every `x`, −0
    /// included, but a signalling NaN, which arithmetic never produces).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp_minus(r: &mut [f32], mx: f32) {
        let full = r.len() / 8 * 8;
        let m = _mm256_set1_ps(mx);
        for t in (0..full).step_by(8) {
            let ptr = r.as_mut_ptr().add(t);
            _mm256_storeu_ps(ptr, exp8(_mm256_sub_ps(_mm256_loadu_ps(ptr), m)));
        }
        let tail = r.len() - full;
        if tail > 0 {
            let mut pad = [mx; 8];
            pad[..tail].copy_from_slice(&r[full..]);
            let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(pad.as_ptr()), m));
            _mm256_storeu_ps(pad.as_mut_ptr(), e);
            r[full..].copy_from_slice(&pad[..tail]);
        }
    }

    /// Each of the `m` rows' f64 sum over its columns in order (from 0). Eight rows
    /// are summed side by side in the lanes of two vectors (rows 0–3, 4–7), their
    /// columns transposed into place eight at a time; the columns past the last eight
    /// are added in order after them.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn row_sums(group: &[f32], p: usize, m: usize) -> [f64; GROUP] {
        let mut s = [0.0f64; GROUP];
        if m == GROUP {
            let (mut lo, mut hi) = (_mm256_setzero_pd(), _mm256_setzero_pd());
            let full = p / 8 * 8;
            for j0 in (0..full).step_by(8) {
                let mut r = [_mm256_setzero_ps(); 8];
                for (i, r) in r.iter_mut().enumerate() {
                    *r = _mm256_loadu_ps(group.as_ptr().add(i * p + j0));
                }
                for column in transpose8(r) {
                    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(column)));
                    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(column)));
                }
            }
            _mm256_storeu_pd(s.as_mut_ptr(), lo);
            _mm256_storeu_pd(s.as_mut_ptr().add(4), hi);
            for j in full..p {
                for (i, s) in s.iter_mut().enumerate() {
                    *s += group[i * p + j] as f64;
                }
            }
        } else {
            for (i, r) in group.chunks_exact(p).enumerate() {
                s[i] = r.iter().fold(0.0f64, |a, &v| a + v as f64);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::super::kernels::baseline_only;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn has_simd() -> bool {
        super::super::kernels::cpu_has_avx2_fma()
    }

    /// `exp8`'s bits against `f32::exp` on the given floats.
    #[cfg(target_arch = "x86_64")]
    fn exp8_mismatches(xs: impl Iterator<Item = f32>) -> Vec<f32> {
        use std::arch::x86_64::*;
        let xs: Vec<f32> = xs.collect();
        let mut bad = Vec::new();
        for c in xs.chunks(8) {
            let mut lanes = [0.0f32; 8];
            lanes[..c.len()].copy_from_slice(c);
            let mut got = [0.0f32; 8];
            // SAFETY: callers check the CPU has AVX2 and FMA.
            unsafe {
                _mm256_storeu_ps(
                    got.as_mut_ptr(),
                    super::simd::exp8(_mm256_loadu_ps(lanes.as_ptr())),
                );
            }
            for (x, y) in c.iter().zip(got) {
                if x.exp().to_bits() != y.to_bits() {
                    bad.push(*x);
                }
            }
        }
        bad
    }

    /// Every 97th float below zero down to past where `expf` underflows, every 97th
    /// above zero up to past its overflow, the floats around the ends of its main
    /// path, and the special values.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn eight_lane_exp_gives_the_bits_of_the_c_library() {
        if !has_simd() {
            return;
        }
        let negative = (0x8000_0000u32..=0xc2d0_0000)
            .step_by(97)
            .map(f32::from_bits);
        let positive = (0u32..=0x42b2_0000).step_by(97).map(f32::from_bits);
        let edges = [
            0x42a0_0000u32,
            0xc2a0_0000,
            0x42b1_7218,
            0xc2ce_8ed0,
            0xc2cf_f1b5,
        ]
        .into_iter()
        .flat_map(|b| (b - 64..b + 64).map(f32::from_bits));
        let special = [
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MIN_POSITIVE,
        ];
        let xs = negative.chain(positive).chain(edges).chain(special);
        assert_eq!(exp8_mismatches(xs), Vec::<f32>::new());
    }

    /// All 2^32 floats (about a minute in release: `cargo test --release -- --ignored`).
    #[test]
    #[ignore]
    #[cfg(target_arch = "x86_64")]
    fn eight_lane_exp_gives_the_bits_of_the_c_library_everywhere() {
        if !has_simd() {
            return;
        }
        let bad = exp8_mismatches((0..=u32::MAX).map(f32::from_bits));
        assert!(
            bad.iter().all(|x| x.is_nan()),
            "{:?}",
            &bad[..bad.len().min(10)]
        );
    }

    /// The fast rows give the plain row's bits: random logits with ties, signed
    /// zeros, spreads past `expf`'s main path, infinities and NaNs; widths with and
    /// without a tail; a last group of fewer than eight rows.
    #[test]
    fn softmax_rows_give_the_plain_rows_bits() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for p in [3, 8, 53, 113] {
            let n = 61;
            let mut z: Vec<f32> = (0..n * p).map(|_| rng.gen_range(-20.0..20.0f32)).collect();
            z[p + 2] = z[p + 1]; // a tie (maybe for the max)
            z[2 * p..3 * p].fill(1.5); // all tied
            z[3 * p] = -0.0; // signed zeros at the max
            z[3 * p + 1..4 * p].iter_mut().for_each(|v| *v = -v.abs());
            z[3 * p + 2] = 0.0;
            z[4 * p] = 150.0; // spread past 85
            z[5 * p + 1] = f32::NAN;
            z[6 * p] = f32::INFINITY;
            z[7 * p + 2] = f32::NEG_INFINITY;
            z[8 * p..9 * p].fill(f32::NEG_INFINITY);
            let labels: Vec<u32> = (0..n).map(|_| rng.gen_range(0..p as u32)).collect();
            z[10 * p + labels[10] as usize] = 30.0; // a right argmax
            let run = |z: &mut Vec<f32>| {
                let mut out = vec![(0.0, false); n];
                super::rows(z, p, &labels, &mut out);
                let out: Vec<(u64, bool)> = out.iter().map(|(l, ok)| (l.to_bits(), *ok)).collect();
                (out, z.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
            };
            let (mut fast, mut plain) = (z.clone(), z.clone());
            let want = baseline_only(|| run(&mut plain));
            assert_eq!(run(&mut fast), want, "p = {p}");
            assert!(want.0.iter().any(|&(_, ok)| ok) && want.0.iter().any(|&(_, ok)| !ok));
        }
    }
}
