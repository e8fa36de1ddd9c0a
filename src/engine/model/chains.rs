//! The dense matrix product of the fast pass, computed by a kernel of ours that gives
//! every bit `gemm` gives (see [`super::relu_products`] for what `gemm` 0.15.5
//! computes: per output element and per depth chunk of [`depth_chunk`], an FMA chain
//! from +0 over the terms in order, the first chunk written or added, later ones
//! added). The kernel computes exactly those chains, with a register tile and a
//! blocking chosen for this model's shapes (short depths, outputs of a few thousand
//! rows); which elements are computed together and on which thread never changes an
//! element's chain. Shapes off `gemm`'s general path, non-finite operands and CPUs
//! without AVX2 + FMA are left to `gemm` itself ([`applies`]).

#[cfg(target_arch = "x86_64")]
use super::kernels::avx2_fma;
use super::kernels::simd_fn;
use super::ops::Scratch;
use super::relu_products::depth_chunk;
use rayon::prelude::*;

/// Columns of a packed panel of `op(b)`: two 8-float vectors.
const PANEL: usize = 16;
/// Rows of the register tile: 6 rows × 2 vectors = 12 accumulators.
const MR: usize = 6;
/// Output rows and panels of one parallel task.
const TASK_ROWS: usize = 4 * MR;
const TASK_PANELS: usize = 8;

/// Whether [`matmul`] computes `op(a)·op(b)` (`m × k` by `k × n`): x86-64 with AVX2
/// and FMA (where `gemm` takes its FMA kernel), shapes on `gemm`'s general path
/// (depth over 2, both output dimensions over 1) and finite operands (and a finite
/// `c` when accumulating), so that NaN payloads cannot depend on the operand order.
pub(super) fn applies(
    c: &[f32],
    a: &[f32],
    b: &[f32],
    (m, k, n): (usize, usize, usize),
    accumulate: bool,
) -> bool {
    shape_applies((m, k, n))
        && all_finite(&a[..m * k])
        && all_finite(&b[..k * n])
        && (!accumulate || all_finite(&c[..m * n]))
}

/// [`applies`] but for the operands' values: the CPU and the shape.
pub(super) fn shape_applies((m, k, n): (usize, usize, usize)) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        avx2_fma() && m > 1 && n > 1 && k > 2
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (m, k, n);
        false
    }
}

simd_fn! {
    /// No infinity or NaN in `x` (an integer count, which vectorises).
    pub(super) fn all_finite(x: &[f32]) -> bool {
        const EXPONENT: u32 = 0x7f80_0000;
        x.chunks(1 << 12).all(|x| {
            x.iter()
                .map(|v| (v.to_bits() & EXPONENT == EXPONENT) as u32)
                .sum::<u32>()
                == 0
        })
    }
}

simd_fn! {
    /// `op(b)` ([k, n]; stored [n, k] when `tb`) in panels of [`PANEL`] columns, each
    /// [k, PANEL] contiguous, zeros past column n.
    fn pack_panels(b: &[f32], tb: bool, k: usize, n: usize, packed: &mut [f32]) {
        for (p, panel) in packed.chunks_exact_mut(k * PANEL).enumerate() {
            let j0 = p * PANEL;
            let width = (n - j0).min(PANEL);
            if tb {
                panel.fill(0.0);
                for v in 0..width {
                    let column = &b[(j0 + v) * k..(j0 + v + 1) * k];
                    for (row, x) in panel.chunks_exact_mut(PANEL).zip(column) {
                        row[v] = *x;
                    }
                }
            } else if width == PANEL {
                // A fixed-size copy (inline moves; a slice copy calls memcpy per row).
                for (t, row) in panel.chunks_exact_mut(PANEL).enumerate() {
                    let row: &mut [f32; PANEL] = row.try_into().unwrap();
                    *row = b[t * n + j0..t * n + j0 + PANEL].try_into().unwrap();
                }
            } else {
                for (t, row) in panel.chunks_exact_mut(PANEL).enumerate() {
                    row[..width].copy_from_slice(&b[t * n + j0..t * n + j0 + width]);
                    row[width..].fill(0.0);
                }
            }
        }
    }
}

/// `c (+)= op(a)·op(b)` with `op(a)` [m, k], `op(b)` [k, n], `c` [m, n] row-major,
/// `ta`/`tb` saying that `a`/`b` are stored transposed: the bits of `gemm`. Call only
/// where [`applies`] holds.
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul(
    c: &mut [f32],
    a: &[f32],
    ta: bool,
    b: &[f32],
    tb: bool,
    shape: (usize, usize, usize),
    accumulate: bool,
) {
    let (m, _, n) = shape;
    assert!(c.len() >= m * n);
    let product = Product::new(a, ta, b, tb, shape, accumulate);
    let panels = product.panels();
    let row_tasks = m.div_ceil(TASK_ROWS);
    let out = OutPtr(c.as_mut_ptr());
    (0..row_tasks * panels.div_ceil(TASK_PANELS))
        .into_par_iter()
        .for_each(|task| {
            let (rt, pt) = (task % row_tasks, task / row_tasks);
            let rows = (rt * TASK_ROWS, ((rt + 1) * TASK_ROWS).min(m));
            let panels = (pt * TASK_PANELS, ((pt + 1) * TASK_PANELS).min(panels));
            // SAFETY: tasks split rows and panels, so each writes its own elements.
            unsafe { product.compute(&out, rows, panels) }
        });
}

/// [`matmul`] by blocks of `block_rows` output rows, each block then handed to
/// `then(first row, the block's rows of c)` at once, while it is still in cache;
/// blocks run in parallel and their results come back in block order. The bits of
/// [`matmul`]: the depth chunks are the whole product's. Call only where [`applies`]
/// holds.
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul_by_rows<R: Send>(
    c: &mut [f32],
    a: &[f32],
    ta: bool,
    b: &[f32],
    tb: bool,
    shape: (usize, usize, usize),
    accumulate: bool,
    block_rows: usize,
    then: impl Fn(usize, &mut [f32]) -> R + Sync,
) -> Vec<R> {
    let (m, _, n) = shape;
    assert!(c.len() >= m * n && block_rows > 0);
    let product = Product::new(a, ta, b, tb, shape, accumulate);
    c[..m * n]
        .par_chunks_mut(block_rows * n)
        .enumerate()
        .map(|(blk, rows)| {
            let i0 = blk * block_rows;
            let i1 = i0 + rows.len() / n;
            // SAFETY: the block's elements are `rows`, borrowed by this task alone.
            let out = OutPtr(rows.as_mut_ptr().wrapping_sub(i0 * n));
            unsafe { product.compute(&out, (i0, i1), (0, product.panels())) }
            then(i0, rows)
        })
        .collect()
}

/// One product `op(a)·op(b)` made ready: op(b) packed in panels of [`PANEL`]
/// columns, each [k, PANEL] with zeros past column n, and the whole product's depth
/// chunk.
struct Product<'a> {
    a: &'a [f32],
    /// (row stride, depth stride) of op(a).
    a_strides: (usize, usize),
    packed: Scratch,
    shape: (usize, usize, usize),
    kc: usize,
    accumulate: bool,
}

impl<'a> Product<'a> {
    fn new(
        a: &'a [f32],
        ta: bool,
        b: &[f32],
        tb: bool,
        (m, k, n): (usize, usize, usize),
        accumulate: bool,
    ) -> Self {
        assert!(a.len() >= m * k && b.len() >= k * n);
        // Written in full (zeros included).
        let mut packed = Scratch::new(n.div_ceil(PANEL) * k * PANEL);
        pack_panels(b, tb, k, n, &mut packed);
        Product {
            a: &a[..m * k],
            a_strides: if ta { (1, m) } else { (k, 1) },
            packed,
            shape: (m, k, n),
            kc: depth_chunk(m, n, k),
            accumulate,
        }
    }

    fn panels(&self) -> usize {
        self.shape.2.div_ceil(PANEL)
    }

    /// The output elements of rows `i0..i1` and panels `p0..p1`, depth chunk after
    /// depth chunk.
    ///
    /// # Safety
    /// `out` + `i·n + j` must be writable for every such element, by this call
    /// alone; AVX2 and FMA must be present ([`applies`]).
    unsafe fn compute(&self, out: &OutPtr, (i0, i1): (usize, usize), (p0, p1): (usize, usize)) {
        let (_, k, n) = self.shape;
        let (ars, acs) = self.a_strides;
        for c0 in (0..k).step_by(self.kc) {
            let c1 = (c0 + self.kc).min(k);
            let write = c0 == 0 && !self.accumulate;
            for p in p0..p1 {
                let panel = &self.packed[p * k * PANEL..(p + 1) * k * PANEL];
                let (j0, width) = (p * PANEL, (n - p * PANEL).min(PANEL));
                for r0 in (i0..i1).step_by(MR) {
                    let rows = (i1 - r0).min(MR);
                    let tile = Tile {
                        a: self.a,
                        ars,
                        acs,
                        r0,
                        rows,
                        panel,
                        depth: (c0, c1),
                        out,
                        ldc: n,
                        j0,
                        width,
                        write,
                    };
                    // SAFETY: the caller's promises; the tile's output elements (rows
                    // r0.., columns j0..j0 + width) are among them.
                    #[cfg(target_arch = "x86_64")]
                    unsafe {
                        simd::tile(&tile)
                    }
                    #[cfg(not(target_arch = "x86_64"))]
                    unreachable!("{}", tile.rows)
                }
            }
        }
    }
}

/// An output's base pointer (here: element `i·n + j` at `+ i·n + j`, which may lie
/// before the buffer when only a block of rows is lent), shared by parallel tasks,
/// each of which writes its own elements only.
pub(super) struct OutPtr(pub(super) *mut f32);
// SAFETY: its users' tasks write disjoint elements (see `matmul` and the table
// gradients' scatter in `fused`), and the buffer outlives them.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// A method, so that closures capture the `Sync` wrapper, not the pointer.
    pub(super) fn ptr(&self) -> *mut f32 {
        self.0
    }
}

/// One register tile: rows `r0..r0 + rows` of op(a) against one packed panel, over
/// the depth chunk `depth`, into the output columns `j0..j0 + width`.
struct Tile<'a> {
    a: &'a [f32],
    ars: usize,
    acs: usize,
    r0: usize,
    rows: usize,
    panel: &'a [f32],
    depth: (usize, usize),
    out: &'a OutPtr,
    ldc: usize,
    j0: usize,
    width: usize,
    /// Whether the chunk's sums are the elements (the first chunk of a product that
    /// does not accumulate) rather than added to them.
    write: bool,
}

#[cfg(target_arch = "x86_64")]
mod simd {
    use super::{Tile, MR, PANEL};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile(t: &Tile) {
        match t.rows {
            6 => rows::<6>(t),
            5 => rows::<5>(t),
            4 => rows::<4>(t),
            3 => rows::<3>(t),
            2 => rows::<2>(t),
            _ => rows::<1>(t),
        }
    }

    /// The chains of `R` rows: for every depth `s` of the chunk in order,
    /// `acc[r][j] = fma(op(a)[r0 + r, s], panel[s][j], acc[r][j])` from +0.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn rows<const R: usize>(t: &Tile) {
        const { assert!(R <= MR) };
        let (c0, c1) = t.depth;
        assert!(t.panel.len() >= c1 * PANEL);
        assert!(c1 == 0 || (t.r0 + R - 1) * t.ars + (c1 - 1) * t.acs < t.a.len());
        let mut lo = [_mm256_setzero_ps(); R];
        let mut hi = [_mm256_setzero_ps(); R];
        let a = t.a.as_ptr();
        let mut bp = t.panel.as_ptr().add(c0 * PANEL);
        for s in c0..c1 {
            let (b0, b1) = (_mm256_loadu_ps(bp), _mm256_loadu_ps(bp.add(8)));
            for r in 0..R {
                let x = _mm256_broadcast_ss(&*a.add((t.r0 + r) * t.ars + s * t.acs));
                lo[r] = _mm256_fmadd_ps(x, b0, lo[r]);
                hi[r] = _mm256_fmadd_ps(x, b1, hi[r]);
            }
            bp = bp.add(PANEL);
        }
        for r in 0..R {
            // Wrapping: a block's base may lie before its buffer ([`matmul_by_rows`]).
            let dst = t.out.0.wrapping_add((t.r0 + r) * t.ldc + t.j0);
            if t.width == PANEL {
                for (v, acc) in [lo[r], hi[r]].into_iter().enumerate() {
                    let d = dst.add(8 * v);
                    let x = if t.write {
                        acc
                    } else {
                        _mm256_add_ps(_mm256_loadu_ps(d), acc)
                    };
                    _mm256_storeu_ps(d, x);
                }
            } else {
                let mut sums = [0.0f32; PANEL];
                _mm256_storeu_ps(sums.as_mut_ptr(), lo[r]);
                _mm256_storeu_ps(sums.as_mut_ptr().add(8), hi[r]);
                for (v, s) in sums[..t.width].iter().enumerate() {
                    let d = dst.add(v);
                    *d = if t.write { *s } else { *d + *s };
                }
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::ops::gemm_matmul;
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    pub(crate) fn bits(x: &[f32]) -> Vec<u32> {
        x.iter().map(|v| v.to_bits()).collect()
    }

    /// `gemm`'s contract written out (module notes of `relu_products`): per element,
    /// per depth chunk of [`depth_chunk`], an FMA chain from +0 over every term in
    /// order; the first chunk written (or added when accumulating), later ones added.
    pub(crate) fn chain_definition(
        c: &mut [f32],
        a: impl Fn(usize, usize) -> f32,
        b: impl Fn(usize, usize) -> f32,
        (m, k, n): (usize, usize, usize),
        accumulate: bool,
    ) {
        let kc = depth_chunk(m, n, k);
        for i in 0..m {
            for j in 0..n {
                for c0 in (0..k).step_by(kc) {
                    let acc =
                        (c0..(c0 + kc).min(k)).fold(0.0f32, |s, t| a(i, t).mul_add(b(t, j), s));
                    let dst = &mut c[i * n + j];
                    *dst = if c0 == 0 && !accumulate {
                        acc
                    } else {
                        *dst + acc
                    };
                }
            }
        }
    }

    /// Values of mixed sign and size, with some tiny ones whose products underflow.
    pub(crate) fn dense(rng: &mut ChaCha8Rng, len: usize) -> Vec<f32> {
        (0..len)
            .map(|_| {
                if rng.gen_bool(0.02) {
                    rng.gen_range(-1e-20f32..1e-20)
                } else {
                    rng.gen_range(-2.0f32..2.0)
                }
            })
            .collect()
    }

    /// (m, k, n): both of `gemm`'s chunkings (outputs of at most 64 × 64; balanced
    /// chunks past a depth of 512), widths that are not a multiple of the vector or
    /// the panel (113 like the logits), partial row tiles and tasks.
    const SHAPES: [(usize, usize, usize); 11] = [
        (2, 3, 2),
        (3, 5, 8),
        (7, 4, 5),
        (70, 96, 24),
        (33, 600, 72),
        (200, 1100, 16),
        (64, 1500, 64),
        (130, 512, 136),
        (100, 128, 113),
        (113, 100, 130),
        (128, 700, 113),
    ];

    /// `gemm` (the pinned contract) and our kernel both give the chains of the
    /// definition, for every layout of the operands, accumulating or not, on 1 and 3
    /// threads.
    #[test]
    fn gemm_and_our_kernel_follow_the_chain_definition() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for &(m, k, n) in &SHAPES {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let accumulate = rng.gen_bool(0.5);
                let (a, b) = (dense(&mut rng, m * k), dense(&mut rng, k * n));
                let c0 = dense(&mut rng, m * n);
                let mut want = c0.clone();
                chain_definition(
                    &mut want,
                    |i, t| if ta { a[t * m + i] } else { a[i * k + t] },
                    |t, j| if tb { b[j * k + t] } else { b[t * n + j] },
                    (m, k, n),
                    accumulate,
                );
                let what = format!("{m}x{k}x{n} ta {ta} tb {tb} accumulate {accumulate}");
                let mut c = c0.clone();
                gemm_matmul(&mut c, &a, ta, &b, tb, (m, k, n), accumulate);
                assert_eq!(bits(&c), bits(&want), "gemm {what}");
                if !applies(&c0, &a, &b, (m, k, n), accumulate) {
                    continue;
                }
                for threads in [1, 3] {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    let mut c = c0.clone();
                    pool.install(|| matmul(&mut c, &a, ta, &b, tb, (m, k, n), accumulate));
                    assert_eq!(bits(&c), bits(&want), "ours {what}, {threads} threads");
                    // By blocks of rows: each block is done when handed out.
                    for block_rows in [1, 7, 64, m + 1] {
                        let mut c = c0.clone();
                        let blocks = pool.install(|| {
                            let then = |i0: usize, rows: &mut [f32]| (i0, bits(rows));
                            let shape = (m, k, n);
                            matmul_by_rows(
                                &mut c, &a, ta, &b, tb, shape, accumulate, block_rows, then,
                            )
                        });
                        let starts: Vec<usize> = blocks.iter().map(|(i0, _)| *i0).collect();
                        let handed: Vec<u32> = blocks.into_iter().flat_map(|(_, b)| b).collect();
                        let what = format!("{what}, {threads} threads, blocks of {block_rows}");
                        assert_eq!(
                            starts,
                            (0..m).step_by(block_rows).collect::<Vec<_>>(),
                            "{what}"
                        );
                        assert_eq!(handed, bits(&want), "by rows {what}");
                        assert_eq!(bits(&c), bits(&want), "by rows {what}");
                    }
                }
            }
        }
    }

    #[test]
    fn gemm_keeps_what_our_kernel_does_not_cover() {
        let (a, b, c) = (vec![1.0f32; 40], vec![1.0f32; 40], vec![1.0f32; 100]);
        let shape = (10, 4, 10);
        if !super::super::kernels::cpu_has_avx2_fma() {
            assert!(!applies(&c, &a, &b, shape, false));
            return;
        }
        assert!(applies(&c, &a, &b, shape, true));
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut x = a.clone();
            x[17] = bad;
            assert!(!applies(&c, &x, &b, shape, false), "{bad} in a");
            assert!(!applies(&c, &a, &x, shape, false), "{bad} in b");
            let mut y = c.clone();
            y[99] = bad;
            assert!(applies(&y, &a, &b, shape, false), "c is not read");
            assert!(
                !applies(&y, &a, &b, shape, true),
                "{bad} in c, accumulating"
            );
        }
        for shape in [(1, 4, 10), (10, 4, 1), (10, 2, 10)] {
            assert!(!applies(&c, &a, &b, shape, false), "{shape:?}");
        }
    }
}
