//! The modular-addition task (science.md §1): all pairs `(a, b)` in `[0, p)²`, the
//! input `[a, b, =]` with `=` the token `p`, the label `(a + b) mod p`, and the seeded
//! train/test split.
//!
//! Randomness: every random choice of a cell derives from `CellConfig.seed` through
//! separate ChaCha20 streams, so the split never changes when initialisation changes
//! and vice versa: stream [`SPLIT_STREAM`] shuffles the pairs, stream [`INIT_STREAM`]
//! draws the initial weights.

use crate::config::CellConfig;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// ChaCha20 stream of the train/test permutation.
pub const SPLIT_STREAM: u64 = 1;
/// ChaCha20 stream of the weight initialisation.
pub const INIT_STREAM: u64 = 2;

/// A random generator for one purpose of one cell.
pub fn cell_rng(seed: u64, stream: u64) -> ChaCha20Rng {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// The pairs of the training and the test set, each sorted by `(a, b)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<(u32, u32)>,
    pub test: Vec<(u32, u32)>,
}

/// Number of training pairs: `floor(train_fraction · p²)` (3,830 for p = 113 and 0.3,
/// as in both papers).
pub fn train_size(p: usize, train_fraction: f64) -> usize {
    (((p * p) as f64) * train_fraction).floor() as usize
}

/// The seeded split: a ChaCha20 (stream [`SPLIT_STREAM`]) Fisher–Yates shuffle of the
/// p² pairs in row-major order; the first `train_size` pairs train, the rest test.
pub fn split(cfg: &CellConfig) -> Split {
    let p = cfg.modulus as u32;
    let mut pairs: Vec<(u32, u32)> = (0..p).flat_map(|a| (0..p).map(move |b| (a, b))).collect();
    pairs.shuffle(&mut cell_rng(cfg.seed, SPLIT_STREAM));
    let n = train_size(cfg.modulus, cfg.train.train_fraction).min(pairs.len());
    let mut test = pairs.split_off(n);
    let mut train = pairs;
    train.sort_unstable();
    test.sort_unstable();
    Split { train, test }
}

/// The label of a pair.
pub fn label(p: usize, (a, b): (u32, u32)) -> u32 {
    ((a as usize + b as usize) % p) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_seeded_disjoint_and_complete() {
        let mut cfg = CellConfig {
            modulus: 23,
            ..Default::default()
        };
        let s = split(&cfg);
        assert_eq!(s.train.len(), train_size(23, 0.3));
        assert_eq!(s.train.len() + s.test.len(), 23 * 23);
        let mut all: Vec<_> = s.train.iter().chain(&s.test).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 23 * 23);
        assert_eq!(split(&cfg), s);
        cfg.seed = 1;
        assert_ne!(split(&cfg), s);
        assert_eq!(train_size(113, 0.3), 3830);
    }
}
