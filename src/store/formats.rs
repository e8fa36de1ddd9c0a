//! The text formats of a cell's curves and split.

use anyhow::{Context, Result};
use std::path::Path;

/// curves.csv: step, train/test loss and accuracy.
pub fn curves_csv(curves: &[crate::engine::train::CurvePoint]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["step", "train_loss", "train_acc", "test_loss", "test_acc"])?;
    for c in curves {
        w.write_record([
            c.step.to_string(),
            c.train_loss.to_string(),
            c.train_acc.to_string(),
            c.test_loss.to_string(),
            c.test_acc.to_string(),
        ])?;
    }
    Ok(w.into_inner()?)
}

/// Read curves.csv back.
pub fn read_curves(path: &Path) -> Result<Vec<crate::engine::train::CurvePoint>> {
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for rec in r.records() {
        let rec = rec?;
        let f = |i: usize| -> Result<f64> { Ok(rec.get(i).unwrap_or("").parse::<f64>()?) };
        out.push(crate::engine::train::CurvePoint {
            step: rec.get(0).unwrap_or("").parse()?,
            train_loss: f(1)?,
            train_acc: f(2)?,
            test_loss: f(3)?,
            test_acc: f(4)?,
        });
    }
    Ok(out)
}

/// split.csv: every pair (a, b) and whether it was in the train or the test set.
pub fn split_csv(split: &crate::engine::data::Split) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["a", "b", "set"])?;
    for (set, pairs) in [("train", &split.train), ("test", &split.test)] {
        for (a, b) in pairs {
            w.write_record([a.to_string(), b.to_string(), set.to_string()])?;
        }
    }
    Ok(w.into_inner()?)
}

/// Read split.csv back.
pub fn read_split(path: &Path) -> Result<crate::engine::data::Split> {
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let mut split = crate::engine::data::Split {
        train: Vec::new(),
        test: Vec::new(),
    };
    for rec in r.records() {
        let rec = rec?;
        let pair = (
            rec.get(0).unwrap_or("").parse()?,
            rec.get(1).unwrap_or("").parse()?,
        );
        match rec.get(2) {
            Some("train") => split.train.push(pair),
            Some("test") => split.test.push(pair),
            other => anyhow::bail!("{}: unknown set {other:?}", path.display()),
        }
    }
    Ok(split)
}
