//! `overlap.csv`: the baseline for claims about shared key frequencies. The Jaccard
//! overlap of two models' key-frequency sets is read against two references: the
//! same overlap between seeds (within a variant and across variants), and the overlap
//! that two random sets of the same sizes would have.

use super::columns::{groups_by, header, names, opt};
use super::compare::Variants;
use super::{csv_bytes, fmt_fraction, jaccard, median, Row};
use crate::analysis::Signature;
use anyhow::Result;

/// Which cell pairs a row of overlap.csv covers.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Seeds {
    /// Same seed (same initial weights and data split), different variants.
    Same,
    /// Different seeds.
    Different,
}

impl Seeds {
    fn name(self) -> &'static str {
        match self {
            Seeds::Same => "same",
            Seeds::Different => "different",
        }
    }
}

/// The pairs of one row: (a, b) signatures.
type Pairs<'a> = [(&'a Signature, &'a Signature)];

/// One column of overlap.csv after `precision_a`, `precision_b` and `seeds`.
type OverlapColumn = (&'static str, fn(&Pairs) -> String);

/// The columns of overlap.csv after the group's identity columns, the two variants
/// and `seeds`, in order.
pub const OVERLAP_COLUMNS: &[OverlapColumn] = &[
    ("pairs", |p| p.len().to_string()),
    ("key_frequency_jaccard_median", |p| {
        opt(median(&mut jaccards(p)), fmt_fraction)
    }),
    ("key_frequency_jaccard_min", |p| {
        opt(jaccards(p).into_iter().reduce(f64::min), fmt_fraction)
    }),
    ("key_frequency_jaccard_max", |p| {
        opt(jaccards(p).into_iter().reduce(f64::max), fmt_fraction)
    }),
    ("chance_jaccard_mean", |p| {
        let chance: Vec<f64> = p
            .iter()
            .filter_map(|(a, b)| {
                let n = a.modulus / 2;
                let (ka, kb) = (
                    a.neurons.key_frequencies.len(),
                    b.neurons.key_frequencies.len(),
                );
                (a.modulus == b.modulus).then(|| chance_jaccard(n, ka, kb))?
            })
            .collect();
        let mean = (!chance.is_empty()).then(|| chance.iter().sum::<f64>() / chance.len() as f64);
        opt(mean, fmt_fraction)
    }),
];

/// Every column of overlap.csv after the group's identity columns but `seed`.
pub fn overlap_columns() -> Vec<&'static str> {
    ["precision_a", "precision_b", "seeds"]
        .into_iter()
        .chain(names(OVERLAP_COLUMNS))
        .collect()
}

/// The pairs' Jaccard overlaps of key-frequency sets (pairs where both are empty have
/// none).
fn jaccards(pairs: &Pairs) -> Vec<f64> {
    pairs
        .iter()
        .filter_map(|(a, b)| jaccard(&a.neurons.key_frequencies, &b.neurons.key_frequencies))
        .collect()
}

/// The expected Jaccard overlap of two sets of sizes `ka` and `kb` drawn uniformly
/// and independently from `n` frequencies: the intersection is hypergeometric.
/// None when both are empty (no overlap is defined) or a size exceeds `n`.
pub fn chance_jaccard(n: usize, ka: usize, kb: usize) -> Option<f64> {
    if ka + kb == 0 || ka > n || kb > n {
        return None;
    }
    let choose = |n: usize, k: usize| -> f64 {
        (0..k).fold(1.0, |c, i| c * (n - i) as f64 / (i + 1) as f64)
    };
    let total = choose(n, kb);
    let lo = (ka + kb).saturating_sub(n);
    let expected = (lo..=ka.min(kb))
        .map(|i| {
            let p = choose(ka, i) * choose(n - ka, kb - i) / total;
            p * i as f64 / (ka + kb - i) as f64
        })
        .sum();
    Some(expected)
}

/// One row per (group, variant a, variant b, seeds): groups are cells equal on every
/// identity column but `seed` and the variant; variant pairs include a variant with
/// itself (then only different seeds); every pair of distinct analysed cells counts
/// once, and a row without pairs is left out.
pub(super) fn overlap_table(cols: &[String], rows: &[Row]) -> Result<Vec<u8>> {
    let variants = Variants::new(cols);
    let group_cols = variants.group_cols();
    let seed_at = group_cols.iter().position(|c| c == "seed");
    let context_cols: Vec<String> = group_cols
        .iter()
        .filter(|c| *c != "seed")
        .cloned()
        .collect();
    let h = header(&context_cols, &overlap_columns());
    // Without a seed column there is nothing to pair across seeds. (Without a
    // precision column every cell is one variant, with an empty name.)
    let (Some(seed_at), Some(seed_col)) = (seed_at, cols.iter().position(|c| c == "seed")) else {
        return csv_bytes(&h, &[]);
    };
    let group_key = |r: &Row| -> Vec<String> {
        let mut g = variants.group_ids(r);
        g.remove(seed_at);
        g
    };
    let mut out = Vec::new();
    for (gid, members) in groups_by(rows.iter().map(group_key)) {
        let by_variant = groups_by(members.iter().map(|&i| variants.variant(&rows[i])));
        for (ia, (va, at_a)) in by_variant.iter().enumerate() {
            for (vb, at_b) in &by_variant[ia..] {
                let same_variant = va == vb;
                let mut pairs: Vec<(Seeds, &Signature, &Signature)> = Vec::new();
                for (x, &ja) in at_a.iter().enumerate() {
                    let a = &rows[members[ja]];
                    // Within one variant each unordered pair once.
                    let b_from = if same_variant { x + 1 } else { 0 };
                    for &jb in &at_b[b_from.min(at_b.len())..] {
                        let b = &rows[members[jb]];
                        let (Some(sa), Some(sb)) = (&a.sig, &b.sig) else {
                            continue;
                        };
                        let seeds = if a.ids[seed_col] == b.ids[seed_col] {
                            Seeds::Same
                        } else {
                            Seeds::Different
                        };
                        pairs.push((seeds, sa, sb));
                    }
                }
                for seeds in [Seeds::Same, Seeds::Different] {
                    if same_variant && seeds == Seeds::Same {
                        continue;
                    }
                    let these: Vec<(&Signature, &Signature)> = pairs
                        .iter()
                        .filter(|p| p.0 == seeds)
                        .map(|p| (p.1, p.2))
                        .collect();
                    if these.is_empty() {
                        continue;
                    }
                    let mut v = gid.clone();
                    v.extend([va.clone(), vb.clone(), seeds.name().to_string()]);
                    v.extend(OVERLAP_COLUMNS.iter().map(|(_, get)| get(&these)));
                    out.push(v);
                }
            }
        }
    }
    csv_bytes(&h, &out)
}

#[cfg(test)]
mod tests {
    use super::chance_jaccard;

    #[test]
    fn chance_jaccard_matches_enumeration() {
        // Every pair of subsets of sizes (2, 3) from 5 elements, enumerated.
        let n = 5;
        let subsets = |k: u32| (0u32..1 << n).filter(move |s| s.count_ones() == k);
        let (mut sum, mut count) = (0.0, 0.0);
        for a in subsets(2) {
            for b in subsets(3) {
                sum += (a & b).count_ones() as f64 / (a | b).count_ones() as f64;
                count += 1.0;
            }
        }
        let expected = sum / count;
        let got = chance_jaccard(n as usize, 2, 3).unwrap();
        assert!((got - expected).abs() < 1e-12, "{got} vs {expected}");
        // Full sets always coincide; disjointness is forced when sizes fill n.
        assert_eq!(chance_jaccard(4, 4, 4), Some(1.0));
        assert_eq!(chance_jaccard(4, 0, 0), None);
        assert_eq!(chance_jaccard(4, 5, 1), None);
        assert!(chance_jaccard(4, 0, 2).unwrap().abs() < 1e-15);
    }
}
