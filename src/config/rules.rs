//! The rules every setting obeys ([`CellConfig::check`], [`AnalysisConfig::check`]):
//! the one rule set `check`, `run`, the trainer and the analyser apply.

use super::*;

/// A value that would make training or analysis fail (or exceed what a machine can
/// hold): the settings involved, the first one a sweep file sets being blamed, and
/// what is allowed.
#[derive(Clone, Debug, PartialEq)]
pub struct Violation {
    pub keys: Vec<&'static str>,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.keys.join(", "), self.message)
    }
}

/// Upper bounds on the sizes of a cell, so a typo fails at `check` rather than
/// hours later or by exhausting memory. At the bounds one cell needs a few GiB.
pub mod limits {
    pub const MAX_MODULUS: usize = 1024;
    pub const MAX_WIDTH: usize = 2048;
    pub const MAX_MLP_RATIO: usize = 16;
    pub const MAX_STEPS: u64 = 100_000_000;
    pub const MAX_SYMMETRICITY_TRIPLES: usize = 1_000_000;
    /// Sweep names become folder and file names; this leaves room for the
    /// temporary names built from them on every common file system (255 bytes).
    pub const MAX_NAME_LEN: usize = 100;
}

/// Errors of `check()` as one message, for callers that cannot point into a file.
fn joined(violations: Vec<Violation>) -> anyhow::Result<()> {
    if violations.is_empty() {
        return Ok(());
    }
    let all: Vec<String> = violations.iter().map(|v| v.to_string()).collect();
    anyhow::bail!("{}", all.join("; "))
}

fn ff(x: f64) -> String {
    crate::text::float(x)
}

/// "N is too small/large (allowed: an integer from LO to HI)", or None when in range.
fn out_of_range<T: PartialOrd + fmt::Display>(v: T, lo: T, hi: T) -> Option<String> {
    let side = if v < lo {
        "too small"
    } else if v > hi {
        "too large"
    } else {
        return None;
    };
    Some(format!(
        "{v} is {side} (allowed: an integer >= {lo} and <= {hi})"
    ))
}

impl CellConfig {
    /// Every violated rule of the training settings. The one rule set: the sweep
    /// validator maps each violation to file:line:col, the trainer refuses to start.
    pub fn check(&self) -> Vec<Violation> {
        use limits::*;
        let mut out = Vec::new();
        let mut bad = |keys: &[&'static str], message: String| {
            out.push(Violation {
                keys: keys.to_vec(),
                message,
            })
        };
        let t = &self.train;
        if let Some(m) = out_of_range(self.modulus, 3, MAX_MODULUS) {
            bad(&["modulus"], m);
        }
        if self.width == 0 {
            bad(
                &["width"],
                "0 is not allowed (allowed: a positive multiple of model.heads)".into(),
            );
        } else if self.width > MAX_WIDTH {
            bad(
                &["width"],
                format!(
                    "{} is too large (allowed: a multiple of model.heads <= {MAX_WIDTH})",
                    self.width
                ),
            );
        }
        if self.model.heads == 0 {
            bad(
                &["model.heads"],
                "0 is not allowed (allowed: an integer >= 1 that divides width)".into(),
            );
        } else if !self.width.is_multiple_of(self.model.heads) {
            bad(
                &["width", "model.heads"],
                format!(
                    "width {} is not divisible by model.heads = {} (allowed: a multiple of model.heads)",
                    self.width, self.model.heads
                ),
            );
        }
        if let Some(m) = out_of_range(self.model.mlp_ratio, 1, MAX_MLP_RATIO) {
            bad(&["model.mlp_ratio"], m);
        }
        if !(0.0..=1.0).contains(&self.model.attention_rate) {
            bad(
                &["model.attention_rate"],
                format!(
                    "{} is not allowed (allowed: a number from 0 to 1)",
                    ff(self.model.attention_rate)
                ),
            );
        }
        if !(self.model.eq_init_scale.is_finite() && self.model.eq_init_scale >= 0.0) {
            bad(
                &["model.eq_init_scale"],
                format!(
                    "{} is not allowed (allowed: a number >= 0)",
                    ff(self.model.eq_init_scale)
                ),
            );
        }
        if self.quant.eps <= 0.0 {
            bad(
                &["quant.eps"],
                format!(
                    "{} is not allowed (allowed: a number > 0)",
                    ff(self.quant.eps)
                ),
            );
        }
        if self.precision == Precision::Binary {
            match (self.quant.binary_scale, self.quant.scale) {
                (true, QuantScale::None) => bad(
                    &["quant.scale"],
                    "\"none\" is not allowed for binary (binary's unscaled grid ±1 is \
                     quant.binary_scale = false)"
                        .into(),
                ),
                (false, QuantScale::Initial) => bad(
                    &["quant.scale", "quant.binary_scale"],
                    "\"initial\" scales binary's β, which quant.binary_scale = false removes \
                     (allowed: quant.binary_scale = true with quant.scale = \"initial\")"
                        .into(),
                ),
                _ => {}
            }
        }
        if self.quant.matrices != QuantMatrices::All && self.quant.act_bits > 0 {
            bad(
                &["quant.matrices", "quant.act_bits"],
                format!(
                    "quant.matrices = \"{}\" with activation quantization is not supported \
                     (allowed: quant.act_bits = 0, or quant.matrices = \"all\")",
                    self.quant.matrices.name()
                ),
            );
        }
        if self.quant.act_bits == 1 || self.quant.act_bits > 16 {
            bad(
                &["quant.act_bits"],
                format!(
                    "{} is not allowed (allowed: 0 for off, or 2 to 16)",
                    self.quant.act_bits
                ),
            );
        }
        if t.steps == 0 {
            bad(
                &["train.steps"],
                format!("0 is not allowed (allowed: an integer >= 1 and <= {MAX_STEPS})"),
            );
        } else if let Some(m) = out_of_range(t.steps, 1, MAX_STEPS) {
            bad(&["train.steps"], m);
        }
        if let Some(m) = out_of_range(t.warmup_steps, 0, MAX_STEPS) {
            bad(&["train.warmup_steps"], m);
        }
        if t.lr <= 0.0 {
            bad(
                &["train.lr"],
                format!("{} is not allowed (allowed: a number > 0)", ff(t.lr)),
            );
        }
        if t.weight_decay < 0.0 {
            bad(
                &["train.weight_decay"],
                format!(
                    "{} is not allowed (allowed: a number >= 0)",
                    ff(t.weight_decay)
                ),
            );
        }
        if t.betas.iter().any(|b| !(0.0..1.0).contains(b)) {
            bad(
                &["train.betas"],
                format!(
                    "[{}, {}] is not allowed (allowed: two numbers, each in [0, 1))",
                    ff(t.betas[0]),
                    ff(t.betas[1])
                ),
            );
        }
        if t.eps <= 0.0 {
            bad(
                &["train.eps"],
                format!("{} is not allowed (allowed: a number > 0)", ff(t.eps)),
            );
        }
        if !(t.train_fraction > 0.0 && t.train_fraction < 1.0) {
            bad(
                &["train.train_fraction"],
                format!(
                    "{} is outside (0, 1) (allowed: a number strictly between 0 and 1)",
                    ff(t.train_fraction)
                ),
            );
        }
        if t.eval_every == 0 {
            bad(
                &["train.eval_every"],
                "0 is not allowed (allowed: 1 to train.steps)".into(),
            );
        } else if t.eval_every > t.steps && t.steps > 0 {
            bad(
                &["train.eval_every", "train.steps"],
                format!(
                    "train.eval_every {} is greater than train.steps = {} (allowed: 1 to train.steps)",
                    t.eval_every, t.steps
                ),
            );
        }
        if t.checkpoint_every == 0 {
            bad(
                &["train.checkpoint_every"],
                "0 is not allowed (allowed: an integer >= 1)".into(),
            );
        }
        if !(0.0..1.0).contains(&t.grokfast_alpha) {
            bad(
                &["train.grokfast_alpha"],
                format!(
                    "{} is not allowed (allowed: a number in [0, 1))",
                    ff(t.grokfast_alpha)
                ),
            );
        }
        if t.grokfast_lambda < 0.0 {
            bad(
                &["train.grokfast_lambda"],
                format!(
                    "{} is not allowed (allowed: a number >= 0)",
                    ff(t.grokfast_lambda)
                ),
            );
        }
        out
    }

    /// [`CellConfig::check`] as one error naming every violated setting.
    pub fn checked(&self) -> anyhow::Result<()> {
        joined(self.check())
    }
}

impl AnalysisConfig {
    /// Every violated rule of the analysis settings (the one rule set, as for
    /// [`CellConfig::check`]).
    pub fn check(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        for (key, v) in [
            ("analysis.fve_threshold", self.fve_threshold),
            ("analysis.energy_coverage", self.energy_coverage),
            ("analysis.accuracy_threshold", self.accuracy_threshold),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                out.push(Violation {
                    keys: vec![key],
                    message: format!("{} is not allowed (allowed: a number in (0, 1])", ff(v)),
                });
            }
        }
        for (key, v) in [
            (
                "analysis.uniform_attention_max_tv",
                self.uniform_attention_max_tv,
            ),
            (
                "analysis.constant_attention_max_variation",
                self.constant_attention_max_variation,
            ),
            (
                "analysis.fourier_min_logits_explained",
                self.fourier_min_logits_explained,
            ),
            ("analysis.pattern_min_margin", self.pattern_min_margin),
        ] {
            if !(0.0..=1.0).contains(&v) {
                out.push(Violation {
                    keys: vec![key],
                    message: format!("{} is not allowed (allowed: a number from 0 to 1)", ff(v)),
                });
            }
        }
        for (key, v) in [
            (
                "analysis.routing_min_loss_increase",
                self.routing_min_loss_increase,
            ),
            ("analysis.neuron_form_dominance", self.neuron_form_dominance),
        ] {
            if !(v.is_finite() && v > 0.0) {
                out.push(Violation {
                    keys: vec![key],
                    message: format!("{} is not allowed (allowed: a positive number)", ff(v)),
                });
            }
        }
        let max = limits::MAX_SYMMETRICITY_TRIPLES;
        if let Some(message) = out_of_range(self.symmetricity_triples, 1, max) {
            out.push(Violation {
                keys: vec!["analysis.symmetricity_triples"],
                message,
            });
        }
        out
    }

    /// [`AnalysisConfig::check`] as one error naming every violated setting.
    pub fn checked(&self) -> anyhow::Result<()> {
        joined(self.check())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eq_init_scale_is_a_finite_number_at_least_zero() {
        let with = |s: f64| {
            let mut c = CellConfig::default();
            c.model.eq_init_scale = s;
            c.check()
        };
        for ok in [0.0, 0.5, 1.0, 3.0] {
            assert!(with(ok).is_empty(), "{ok}");
        }
        for bad in [-0.5, f64::NAN, f64::INFINITY] {
            let v = with(bad);
            assert_eq!(v.len(), 1, "{bad}");
            assert_eq!(v[0].keys, ["model.eq_init_scale"]);
            assert!(v[0].message.contains("allowed: a number >= 0"), "{}", v[0]);
        }
    }
}
