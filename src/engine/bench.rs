//! Speed and memory of one full training step (quantize, forward, backward, AdamW)
//! on a cell's full training batch.

use crate::config::CellConfig;
use crate::engine::data;
use crate::engine::model::init_weights;
use crate::engine::train::{install_warm, thread_pool, Trainer};
use std::time::Instant;

#[derive(Clone, Debug, PartialEq)]
pub struct BenchReport {
    /// Median milliseconds per full training step, after warm-up.
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub iters: usize,
    pub threads: usize,
    pub train_pairs: usize,
    /// Distinct inputs among them, which is what a step computes (li2024 computes
    /// `[a, b]` and `[b, a]` once: see `model::Batch`).
    pub examples: usize,
    /// Peak resident memory of the process so far (VmHWM), in MiB.
    pub peak_rss_mib: f64,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "median {:.2} ms/step (min {:.2}, max {:.2}) over {}, {}, {} training pairs ({} distinct inputs); peak RSS {:.0} MiB",
            self.median_ms,
            self.min_ms,
            self.max_ms,
            crate::text::count(self.iters, "step"),
            crate::text::count(self.threads, "thread"),
            self.train_pairs,
            self.examples,
            self.peak_rss_mib
        )
    }
}

/// Peak resident set size of this process in MiB (`VmHWM`, else `getrusage`).
pub fn peak_rss_mib() -> f64 {
    if let Ok(s) = std::fs::read_to_string("/proc/self/status") {
        for line in s.lines() {
            if let Some(v) = line.strip_prefix("VmHWM:") {
                if let Some(kb) = v
                    .split_whitespace()
                    .next()
                    .and_then(|x| x.parse::<f64>().ok())
                {
                    return kb / 1024.0;
                }
            }
        }
    }
    // SAFETY: `rusage` is a plain C struct of integers, for which all-zero bytes are
    // a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable `rusage` that outlives the call.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_maxrss as f64 / 1024.0
}

/// Time `iters` training steps of `cfg` after `warmup` untimed ones.
pub fn bench(cfg: &CellConfig, warmup: usize, iters: usize, threads: usize) -> BenchReport {
    let split = data::split(cfg);
    let mut trainer = Trainer::new(cfg, &split, init_weights(cfg));
    let pool = thread_pool(threads).expect("thread pool");
    let mut times: Vec<f64> = install_warm(&pool, || {
        for _ in 0..warmup {
            trainer.update();
        }
        (0..iters.max(1))
            .map(|_| {
                let t = Instant::now();
                trainer.update();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect()
    });
    times.sort_by(f64::total_cmp);
    let n = times.len();
    let median = if n % 2 == 1 {
        times[n / 2]
    } else {
        0.5 * (times[n / 2 - 1] + times[n / 2])
    };
    BenchReport {
        median_ms: median,
        min_ms: times[0],
        max_ms: times[n - 1],
        iters: n,
        threads: threads.max(1),
        train_pairs: split.train.len(),
        examples: trainer.train.rows.len(),
        peak_rss_mib: peak_rss_mib(),
    }
}

/// Median milliseconds of each phase of a training step, timed one phase at a time
/// on the same weights: the quantizer (effective weights), the forward pass alone,
/// forward with backward, and the optimizer update. The backward pass is the
/// difference of the two passes.
#[derive(Clone, Debug, PartialEq)]
pub struct Breakdown {
    pub quantize_ms: f64,
    pub forward_ms: f64,
    pub forward_backward_ms: f64,
    pub optimizer_ms: f64,
    pub iters: usize,
}

impl std::fmt::Display for Breakdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total = self.quantize_ms + self.forward_backward_ms + self.optimizer_ms;
        let share = |ms: f64| 100.0 * ms / total.max(f64::MIN_POSITIVE);
        let backward = (self.forward_backward_ms - self.forward_ms).max(0.0);
        writeln!(
            f,
            "phase        median ms  share of their sum (medians of {} runs each)",
            self.iters
        )?;
        for (name, ms) in [
            ("quantize", self.quantize_ms),
            ("forward", self.forward_ms),
            ("backward", backward),
            ("optimizer", self.optimizer_ms),
        ] {
            writeln!(f, "{name:<12} {ms:>9.2}  {:>5.1} %", share(ms))?;
        }
        write!(f, "sum          {total:>9.2}")
    }
}

fn median_ms(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    let n = times.len();
    if n % 2 == 1 {
        times[n / 2]
    } else {
        0.5 * (times[n / 2 - 1] + times[n / 2])
    }
}

/// Time each phase of a step of `cfg` `iters` times after `warmup` full steps.
pub fn breakdown(cfg: &CellConfig, warmup: usize, iters: usize, threads: usize) -> Breakdown {
    use crate::engine::model::run;
    use crate::engine::train::Quantizer;
    let split = data::split(cfg);
    let mut trainer = Trainer::new(cfg, &split, init_weights(cfg));
    let quantizer = Quantizer::new(cfg);
    let pool = thread_pool(threads).expect("thread pool");
    let q = &cfg.quant;
    let mix = cfg.model.attention_mix();
    install_warm(&pool, || {
        for _ in 0..warmup {
            trainer.update();
        }
        let iters = iters.max(1);
        let time = |f: &mut dyn FnMut()| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        };
        let (mut qs, mut fs, mut fbs, mut os) = (vec![], vec![], vec![], vec![]);
        for _ in 0..iters {
            let mut eff = None;
            qs.push(time(&mut || {
                eff = Some(quantizer.effective(&trainer.latent))
            }));
            let eff = eff.expect("timed above");
            fs.push(time(&mut || {
                run(&eff, q.act_bits, q.eps, mix, &trainer.train, false, false);
            }));
            let mut grads = None;
            fbs.push(time(&mut || {
                grads = run(&eff, q.act_bits, q.eps, mix, &trainer.train, true, false).grads;
            }));
            let grads = grads.expect("gradients were asked for");
            let mut latent = trainer.latent.clone();
            let mut adam = trainer.adam.clone();
            os.push(time(&mut || adam.step(&cfg.train, &mut latent, &grads)));
        }
        Breakdown {
            quantize_ms: median_ms(qs),
            forward_ms: median_ms(fs),
            forward_backward_ms: median_ms(fbs),
            optimizer_ms: median_ms(os),
            iters,
        }
    })
}

/// The step's floor: the matrix products that grow with the batch, at the rate the
/// matrix-product kernel reaches on this machine now. With unquantized activations
/// the attention and W_in products run on per-token tables (see
/// `model::ops::attention_mlp`), so per example there remain x1's MLP output
/// `relu(pre)·W_out` and the logits `x·W_U`, each with its two gradient products;
/// with quantized activations also `x1·W_in` and `z·W_O` and theirs. All are counted
/// dense, although two of relu(pre)'s products skip its zeros
/// (`model::relu_products`).
#[derive(Clone, Debug, PartialEq)]
pub struct Floor {
    /// Floating-point operations of those products in one step (2 per multiply-add).
    pub flop: f64,
    /// Measured rate of the kernel on the largest of them (median of the runs).
    pub flop_per_s: f64,
    /// The rate of the `gemm` crate on the same product, for comparison (its bits
    /// are the contract our kernel keeps: `model::chains`).
    pub gemm_flop_per_s: f64,
    pub iters: usize,
}

impl Floor {
    pub fn ms(&self) -> f64 {
        1e3 * self.flop / self.flop_per_s
    }
}

/// `matmul`'s signature: `c (+)= op(a)·op(b)`.
type MatrixProduct = fn(&mut [f32], &[f32], bool, &[f32], bool, (usize, usize, usize), bool);

/// The floor of a step of `cfg` on `n` distinct inputs (see [`Floor`]).
pub fn floor(cfg: &CellConfig, n: usize, iters: usize, threads: usize) -> Floor {
    let (d, m, p) = (cfg.width, cfg.d_mlp(), cfg.modulus);
    // Multiply-adds per example of the forward products; the backward pass has two
    // products of the same size for each.
    let mut per_example = m * d + d * p;
    if cfg.quant.act_bits > 0 {
        per_example += d * m + d * d;
    }
    let flop = 3.0 * 2.0 * (n * per_example) as f64;
    // The largest product: [n, m] · [m, d].
    let pool = thread_pool(threads).expect("thread pool");
    let a: Vec<f32> = (0..n * m).map(|i| ((i % 7) as f32 - 3.0) * 0.1).collect();
    let b: Vec<f32> = (0..m * d).map(|i| ((i % 5) as f32 - 2.0) * 0.1).collect();
    let mut c = vec![0.0f32; n * d];
    let iters = iters.max(1);
    use crate::engine::model::ops::{gemm_matmul, matmul};
    let mut rate = |product: MatrixProduct| {
        let times: Vec<f64> = install_warm(&pool, || {
            (0..iters + 1)
                .map(|_| {
                    let t = Instant::now();
                    product(&mut c, &a, false, &b, false, (n, m, d), false);
                    t.elapsed().as_secs_f64() * 1e3
                })
                .skip(1)
                .collect()
        });
        2.0 * (n * m * d) as f64 / (median_ms(times) / 1e3)
    };
    Floor {
        flop,
        flop_per_s: rate(matmul),
        gemm_flop_per_s: rate(gemm_matmul),
        iters,
    }
}

impl std::fmt::Display for Floor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "floor        {:>9.2}  ms: {:.2} GFLOP of the products that grow with the batch (counted dense), at {:.1} GFLOP/s (the kernel on the largest, median of {} runs; the gemm crate: {:.1} GFLOP/s)",
            self.ms(),
            self.flop / 1e9,
            self.flop_per_s / 1e9,
            self.iters,
            self.gemm_flop_per_s / 1e9
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breakdown_times_every_phase() {
        let mut cfg = CellConfig {
            modulus: 11,
            width: 16,
            precision: crate::config::Precision::Ternary,
            ..Default::default()
        };
        cfg.train.steps = 10;
        let b = breakdown(&cfg, 1, 3, 1);
        assert_eq!(b.iters, 3);
        for ms in [
            b.quantize_ms,
            b.forward_ms,
            b.forward_backward_ms,
            b.optimizer_ms,
        ] {
            assert!(ms.is_finite() && ms >= 0.0, "{b:?}");
        }
        let fl = floor(&cfg, 40, 3, 1);
        // 40 examples × (64·16 + 16·11) multiply-adds (d_mlp = 4·16), 2 flops each, 3
        // products per matrix.
        assert_eq!(fl.flop, 3.0 * 2.0 * 40.0 * (64.0 * 16.0 + 16.0 * 11.0));
        assert!(fl.flop_per_s.is_finite() && fl.flop_per_s > 0.0, "{fl:?}");
        assert!(
            fl.gemm_flop_per_s.is_finite() && fl.gemm_flop_per_s > 0.0,
            "{fl:?}"
        );
        assert!(fl.to_string().starts_with("floor"), "{fl}");
        let text = b.to_string();
        for phase in ["quantize", "forward", "backward", "optimizer", "sum"] {
            assert!(text.contains(phase), "{text}");
        }
    }
}
