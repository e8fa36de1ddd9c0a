//! Speed and memory of one full training step (quantize, forward, backward, AdamW)
//! on a cell's full training batch.

use crate::config::CellConfig;
use crate::engine::data;
use crate::engine::model::init_weights;
use crate::engine::train::{thread_pool, Trainer};
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
    /// Peak resident memory of the process so far (VmHWM), in MiB.
    pub peak_rss_mib: f64,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "median {:.2} ms/step (min {:.2}, max {:.2}) over {} steps, {} threads, {} training pairs; peak RSS {:.0} MiB",
            self.median_ms,
            self.min_ms,
            self.max_ms,
            self.iters,
            self.threads,
            self.train_pairs,
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
    let mut times: Vec<f64> = pool.install(|| {
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
        peak_rss_mib: peak_rss_mib(),
    }
}
