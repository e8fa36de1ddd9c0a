//! `compare.csv`: cells paired by precision variant within groups equal on every
//! other identity column, and the pair's columns.

use super::columns::{groups_by, header, names, opt, phase, yes_no};
use super::{csv_bytes, fmt_fraction, jaccard, Row};
use crate::analysis::labels::Label;
use crate::analysis::Signature;
use crate::config::{Precision, QUANTIZER_SETTINGS};
use anyhow::Result;

/// How compare.csv and overlap.csv see a row: its variant (its precision and the
/// quantizer options that precision reads) and the rest of its identity.
pub(super) struct Variants<'a> {
    cols: &'a [String],
    precision: Option<usize>,
}

impl<'a> Variants<'a> {
    pub(super) fn new(cols: &'a [String]) -> Self {
        let precision = cols.iter().position(|c| c == "precision");
        Variants { cols, precision }
    }

    /// Whether the sweep has a precision column (without one nothing is paired).
    pub(super) fn any(&self) -> bool {
        self.precision.is_some()
    }

    fn option(c: &str) -> Option<fn(Precision) -> bool> {
        QUANTIZER_SETTINGS.iter().find(|o| o.0 == c).map(|o| o.1)
    }

    fn is_variant_col(c: &str) -> bool {
        c == "precision" || Self::option(c).is_some()
    }

    /// The identity columns that are not part of the variant, in order.
    pub(super) fn group_cols(&self) -> Vec<String> {
        self.cols
            .iter()
            .filter(|c| !Self::is_variant_col(c))
            .cloned()
            .collect()
    }

    /// `binary`, or `binary quant.binary_scale=true` where the cell's precision reads
    /// an option the table lists.
    pub(super) fn variant(&self, r: &Row) -> String {
        let Some(p_col) = self.precision else {
            return String::new();
        };
        let precision = &r.ids[p_col];
        let reads = |c: &str| {
            Self::option(c)
                .is_some_and(|reads| precision.parse().is_ok_and(|p: Precision| reads(p)))
        };
        let mut parts = vec![precision.clone()];
        for (c, v) in self.cols.iter().zip(&r.ids) {
            if reads(c) && !v.is_empty() && v != "-" {
                parts.push(format!("{c}={v}"));
            }
        }
        parts.join(" ")
    }

    /// The row's values of [`Self::group_cols`].
    pub(super) fn group_ids(&self, r: &Row) -> Vec<String> {
        self.cols
            .iter()
            .zip(&r.ids)
            .filter(|(c, _)| !Self::is_variant_col(c))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

pub(super) fn compare_table(cols: &[String], rows: &[Row]) -> Result<Vec<u8>> {
    // Cells that differ only in their variant are one model at different precisions
    // and are paired.
    let variants = Variants::new(cols);
    let h = header(&variants.group_cols(), &compare_columns());
    if !variants.any() {
        return csv_bytes(&h, &[]);
    }
    let mut out = Vec::new();
    for (gid, members) in groups_by(rows.iter().map(|r| variants.group_ids(r))) {
        // The first cell of each variant in the group, in sweep order.
        let present: Vec<(String, &Row)> =
            groups_by(members.iter().map(|&i| variants.variant(&rows[i])))
                .into_iter()
                .map(|(v, at)| (v, &rows[members[at[0]]]))
                .collect();
        for (i, (va, a)) in present.iter().enumerate() {
            for (vb, b) in &present[i + 1..] {
                let mut v = gid.clone();
                v.push(va.clone());
                v.push(vb.clone());
                v.extend(pair_columns(a.sig.as_ref(), b.sig.as_ref()));
                out.push(v);
            }
        }
    }
    csv_bytes(&h, &out)
}

/// One column of compare.csv computed from a pair's signatures (a, b): its name and
/// its text. Differences are b − a.
type PairColumn = (&'static str, fn(&Signature, &Signature) -> String);

/// The columns of compare.csv after the group's identity columns and the two
/// variants (`precision_a`, `precision_b`), in order.
pub const PAIR_COLUMNS: &[PairColumn] = &[
    ("key_frequency_jaccard", |a, b| {
        opt(
            jaccard(&a.neurons.key_frequencies, &b.neurons.key_frequencies),
            fmt_fraction,
        )
    }),
    ("diff_n_key_frequencies", |a, b| {
        (b.neurons.key_frequencies.len() as i64 - a.neurons.key_frequencies.len() as i64)
            .to_string()
    }),
    ("diff_restricted_ratio", |a, b| {
        difference(a.logits.restricted_ratio, b.logits.restricted_ratio)
    }),
    ("diff_step_generalised", |a, b| {
        step_difference(a.outcome.step_generalised, b.outcome.step_generalised)
    }),
    ("diff_step_circuit_start", |a, b| {
        step_difference(
            phase(a, |p| p.step_circuit_start),
            phase(b, |p| p.step_circuit_start),
        )
    }),
    ("diff_gradient_symmetricity", |a, b| {
        difference(
            Some(a.algorithm.gradient_symmetricity),
            Some(b.algorithm.gradient_symmetricity),
        )
    }),
    // Labels compare algorithms: not for a model that learned none.
    ("same_label", |a, b| {
        let (a, b) = (a.algorithm.label, b.algorithm.label);
        if a == Label::NotGeneralised || b == Label::NotGeneralised {
            String::new()
        } else {
            yes_no(a == b)
        }
    }),
];

/// Every column of compare.csv after the group's identity columns.
pub fn compare_columns() -> Vec<&'static str> {
    ["precision_a", "precision_b"]
        .into_iter()
        .chain(names(PAIR_COLUMNS))
        .collect()
}

fn difference(x: Option<f64>, y: Option<f64>) -> String {
    opt(x.zip(y), |(x, y)| fmt_fraction(y - x))
}

fn step_difference(x: Option<u64>, y: Option<u64>) -> String {
    opt(x.zip(y), |(x, y)| (y as i64 - x as i64).to_string())
}

/// A pair's columns; empty when either cell has no signature.
pub(super) fn pair_columns(a: Option<&Signature>, b: Option<&Signature>) -> Vec<String> {
    match (a, b) {
        (Some(a), Some(b)) => PAIR_COLUMNS.iter().map(|(_, get)| get(a, b)).collect(),
        _ => vec![String::new(); PAIR_COLUMNS.len()],
    }
}
