//! The orthonormal real Fourier basis over Z_p (science.md §5) and fast transforms
//! onto it through rustfft.
//!
//! Basis order (Nanda's): index 0 is the constant `1/sqrt(p)`; for
//! `k = 1..=⌊(p−1)/2⌋` index `2k−1` is `sqrt(2/p)·cos(2πkx/p)` and index `2k` is
//! `sqrt(2/p)·sin(2πkx/p)`; for even `p` the last index `p−1` is the cosine at
//! `k = p/2`, `cos(πx)/sqrt(p)`. That is exactly `p` orthonormal vectors.

use rustfft::num_complex::Complex64;
use rustfft::{Fft, FftPlanner};
use std::f64::consts::PI;
use std::sync::Arc;

/// What one basis vector is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    Constant,
    Cos,
    Sin,
    /// The cosine at `k = p/2` of an even modulus (its sine is identically zero).
    Nyquist,
}

/// One basis vector's label: its frequency and its kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BasisLabel {
    pub frequency: usize,
    pub component: Component,
}

/// The real Fourier basis over Z_p with a planned FFT of length `p`.
#[derive(Clone)]
pub struct FourierBasis {
    pub p: usize,
    labels: Vec<BasisLabel>,
    fft: Arc<dyn Fft<f64>>,
}

impl std::fmt::Debug for FourierBasis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FourierBasis(p = {})", self.p)
    }
}

impl FourierBasis {
    /// The basis for modulus `p`. Panics for `p < 3` (callers validate the modulus).
    pub fn new(p: usize) -> FourierBasis {
        assert!(
            p >= 3,
            "the Fourier basis needs a modulus of at least 3, got {p}"
        );
        let mut labels = vec![BasisLabel {
            frequency: 0,
            component: Component::Constant,
        }];
        for k in 1..=(p - 1) / 2 {
            for component in [Component::Cos, Component::Sin] {
                labels.push(BasisLabel {
                    frequency: k,
                    component,
                });
            }
        }
        if p.is_multiple_of(2) {
            labels.push(BasisLabel {
                frequency: p / 2,
                component: Component::Nyquist,
            });
        }
        debug_assert_eq!(labels.len(), p);
        let fft = FftPlanner::new().plan_fft_forward(p);
        FourierBasis { p, labels, fft }
    }

    /// The largest frequency: `⌊p/2⌋`. Frequencies run `0..=max_frequency()`.
    pub fn max_frequency(&self) -> usize {
        self.p / 2
    }

    /// Label of every basis vector, in basis order.
    pub fn labels(&self) -> &[BasisLabel] {
        &self.labels
    }

    /// Basis vector `i` as explicit values over `x = 0..p`.
    pub fn vector(&self, i: usize) -> Vec<f64> {
        let p = self.p as f64;
        let BasisLabel {
            frequency: k,
            component,
        } = self.labels[i];
        (0..self.p)
            .map(|x| {
                let t = 2.0 * PI * (k * x) as f64 / p;
                match component {
                    Component::Constant => 1.0 / p.sqrt(),
                    Component::Cos => (2.0 / p).sqrt() * t.cos(),
                    Component::Sin => (2.0 / p).sqrt() * t.sin(),
                    Component::Nyquist => t.cos() / p.sqrt(),
                }
            })
            .collect()
    }

    /// Transform in place `rows` contiguous signals of length `p` (already loaded as
    /// complex numbers with zero imaginary part) and write their real-basis
    /// coefficients to `out`: coefficient `i` of row `r` goes to
    /// `out[r·row_stride + i·coef_stride]`.
    fn coefficients_of_rows(
        &self,
        buf: &mut [Complex64],
        out: &mut [f64],
        row_stride: usize,
        coef_stride: usize,
    ) {
        let p = self.p;
        self.fft.process(buf);
        let c0 = 1.0 / (p as f64).sqrt();
        let c1 = (2.0 / p as f64).sqrt();
        for (r, x) in buf.chunks_exact(p).enumerate() {
            let o = r * row_stride;
            out[o] = x[0].re * c0;
            for k in 1..=(p - 1) / 2 {
                out[o + (2 * k - 1) * coef_stride] = x[k].re * c1;
                out[o + 2 * k * coef_stride] = -x[k].im * c1;
            }
            if p.is_multiple_of(2) {
                out[o + (p - 1) * coef_stride] = x[p / 2].re * c0;
            }
        }
    }

    /// Coefficients of a signal over Z_p on the basis (`<x, B_i>` for every `i`).
    pub fn transform(&self, x: &[f64]) -> Vec<f64> {
        assert_eq!(x.len(), self.p, "signal length must equal the modulus");
        let mut buf: Vec<Complex64> = x.iter().map(|&v| Complex64::new(v, 0.0)).collect();
        let mut out = vec![0.0; self.p];
        self.coefficients_of_rows(&mut buf, &mut out, self.p, 1);
        out
    }

    /// 2-D coefficients of a `p × p` grid (row-major, `grid[a·p + b]`):
    /// `out[i·p + j] = Σ_ab B_i(a) B_j(b) grid[a·p + b]`. Costs `2p` FFTs of length `p`.
    pub fn transform_2d(&self, grid: &[f64]) -> Vec<f64> {
        let p = self.p;
        assert_eq!(grid.len(), p * p, "grid must be p × p");
        let mut buf: Vec<Complex64> = grid.iter().map(|&v| Complex64::new(v, 0.0)).collect();
        // Along b: rows[a·p + j].
        let mut rows = vec![0.0; p * p];
        self.coefficients_of_rows(&mut buf, &mut rows, p, 1);
        // Along a: load the transpose, so that each column is one contiguous signal,
        // and write coefficient i of column j to out[i·p + j].
        for j in 0..p {
            for a in 0..p {
                buf[j * p + a] = Complex64::new(rows[a * p + j], 0.0);
            }
        }
        let mut out = vec![0.0; p * p];
        self.coefficients_of_rows(&mut buf, &mut out, 1, p);
        out
    }

    /// Energy of a 2-D coefficient grid (from `transform_2d`) per frequency `k`:
    /// entry `k ≥ 1` is the energy in the block `{constant, cos k, sin k}²` without
    /// the constant × constant term; entry 0 is the constant × constant energy.
    pub fn frequency_energy_2d(&self, coef: &[f64]) -> Vec<f64> {
        let p = self.p;
        let mut energy = vec![0.0; self.max_frequency() + 1];
        let freq = |i: usize| self.labels[i].frequency;
        for i in 0..p {
            for j in 0..p {
                let (ki, kj) = (freq(i), freq(j));
                let e = coef[i * p + j] * coef[i * p + j];
                match (ki, kj) {
                    (0, 0) => energy[0] += e,
                    (0, k) | (k, 0) => energy[k] += e,
                    (a, b) if a == b => energy[a] += e,
                    _ => {}
                }
            }
        }
        energy
    }
}

/// Energy (sum of squares) per frequency of 1-D coefficients in basis order.
pub fn frequency_energy(basis: &FourierBasis, coef: &[f64]) -> Vec<f64> {
    let mut energy = vec![0.0; basis.max_frequency() + 1];
    for (label, c) in basis.labels().iter().zip(coef) {
        energy[label.frequency] += c * c;
    }
    energy
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    fn pseudo_random(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5
            })
            .collect()
    }

    #[test]
    fn basis_is_orthonormal_for_odd_and_even_moduli() {
        for p in [3, 4, 7, 8, 113] {
            let b = FourierBasis::new(p);
            let vs: Vec<Vec<f64>> = (0..p).map(|i| b.vector(i)).collect();
            let step = if p > 20 { 7 } else { 1 };
            for i in (0..p).step_by(step) {
                for j in 0..p {
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!(
                        (dot(&vs[i], &vs[j]) - want).abs() < 1e-12,
                        "p={p} i={i} j={j}"
                    );
                }
            }
            // Labels: each frequency 1..(p-1)/2 has a cos and a sin; even p has Nyquist.
            assert_eq!(b.labels().len(), p);
            assert_eq!(b.labels()[p - 1].frequency, (p - 1) / 2 + (p + 1) % 2);
        }
    }

    #[test]
    fn fft_transform_matches_dense_projection_and_keeps_energy() {
        for p in [7, 8, 113] {
            let b = FourierBasis::new(p);
            let x = pseudo_random(p, p as u64);
            let c = b.transform(&x);
            for (i, ci) in c.iter().enumerate() {
                assert!((ci - dot(&x, &b.vector(i))).abs() < 1e-12, "p={p} i={i}");
            }
            let parseval = (dot(&c, &c) - dot(&x, &x)).abs();
            assert!(parseval < 1e-12, "p={p}: {parseval}");
        }
    }

    #[test]
    fn transform_2d_matches_dense_and_keeps_energy() {
        for p in [7, 8] {
            let b = FourierBasis::new(p);
            let g = pseudo_random(p * p, 3);
            let c = b.transform_2d(&g);
            let vs: Vec<Vec<f64>> = (0..p).map(|i| b.vector(i)).collect();
            for i in 0..p {
                for j in 0..p {
                    let mut want = 0.0;
                    for a in 0..p {
                        for bb in 0..p {
                            want += vs[i][a] * vs[j][bb] * g[a * p + bb];
                        }
                    }
                    assert!((c[i * p + j] - want).abs() < 1e-12);
                }
            }
            assert!((dot(&c, &c) - dot(&g, &g)).abs() < 1e-12);
            // Block energies partition the energy of blocks touching a single frequency.
            let e = b.frequency_energy_2d(&c);
            assert!(e.iter().sum::<f64>() <= dot(&g, &g) + 1e-12);
        }
    }

    #[test]
    fn a_pure_cosine_lands_on_its_frequency() {
        let p = 113;
        let b = FourierBasis::new(p);
        let x: Vec<f64> = (0..p)
            .map(|n| (2.0 * PI * 14.0 * n as f64 / p as f64 + 0.3).cos())
            .collect();
        let e = frequency_energy(&b, &b.transform(&x));
        let total: f64 = e.iter().sum();
        assert!((e[14] / total - 1.0).abs() < 1e-12);
    }
}
