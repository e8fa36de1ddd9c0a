//! How AdamW moves the `=` embedding E_= (the read-out query's source) during
//! training, recorded when `train.eq_update_every` > 0: per window of updates, the
//! change of E_= along its own direction split into Adam's loss part and weight
//! decay's part, and which way the gradient, its momentum and Adam's normalised step
//! point (docs/science.md §6). Recording only reads the optimizer's state: a traced
//! cell trains to the same bits as an untraced one.

use crate::config::CellConfig;
use crate::engine::optim::{bias_corrections, direction, learning_rate, moments, AdamW};
use crate::engine::weights::ModelWeights;
use anyhow::{bail, Result};

/// The measures of a window, in [`EqUpdateWindow::values`] order (also the columns
/// of `eq_update.csv` after `step` and `updates`). Radial means along E_='s
/// direction before each update; parts are summed over the window's updates,
/// cosines averaged.
pub const EQ_UPDATE_MEASURES: [&str; 7] = [
    // ‖E_=‖ after the window.
    "eq_norm",
    // Σ ⟨θ_{t+1} − θ_t, θ̂_t⟩: the radial change the updates made (f32 weights).
    "radial_change",
    // Σ −lr·⟨m̂/(√v̂+ε), θ̂_t⟩: Adam's loss part of it (> 0 grows E_=).
    "loss_part",
    // Σ −lr·wd·‖θ_t‖: weight decay's part (never > 0).
    "decay_part",
    // Mean cos(−g_t, θ_t), g the gradient AdamW receives (> 0: it pulls E_= out).
    "gradient_cos",
    // Mean cos(−m̂_t, θ_t): the same for Adam's first moment.
    "momentum_cos",
    // Mean cos(−m̂/(√v̂+ε), θ_t): the same for Adam's normalised step.
    "adam_cos",
];
// Positions in [`EQ_UPDATE_MEASURES`] and [`EqUpdateWindow::values`].
pub const EQ_NORM: usize = 0;
pub const RADIAL_CHANGE: usize = 1;
pub const LOSS_PART: usize = 2;
pub const DECAY_PART: usize = 3;
pub const GRADIENT_COS: usize = 4;
pub const MOMENTUM_COS: usize = 5;
pub const ADAM_COS: usize = 6;
/// The measures that are mean cosines (the others are norms and sums of steps).
pub const COSINES: std::ops::Range<usize> = GRADIENT_COS..ADAM_COS + 1;

/// One window of updates of E_=.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EqUpdateWindow {
    /// The step after the window's last update.
    pub step: u64,
    /// Updates in the window.
    pub updates: u64,
    /// [`EQ_UPDATE_MEASURES`], in order.
    pub values: [f64; 7],
}

impl EqUpdateWindow {
    pub fn get(&self, measure: &str) -> Option<f64> {
        let i = EQ_UPDATE_MEASURES.iter().position(|m| *m == measure)?;
        Some(self.values[i])
    }
}

/// The windows so far and the one being filled.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EqUpdateTrace {
    pub windows: Vec<EqUpdateWindow>,
    pub open: EqUpdateWindow,
}

/// E_=: the embedding row of the `=` token (id p).
pub fn eq_row(w: &ModelWeights) -> &[f32] {
    w.w_e.row(w.modulus())
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// cos(−a, b); 0 when either is zero.
fn cos_opposite(a: &[f64], b: &[f64]) -> f64 {
    let n = norm(a) * norm(b);
    if n > 0.0 {
        -dot(a, b) / n
    } else {
        0.0
    }
}

fn widen(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

impl EqUpdateTrace {
    /// Record update number `adam.t` (already applied): `before` are E_=, its moments
    /// and its gradient before the update, `after` E_= after it.
    pub fn record(
        &mut self,
        cfg: &CellConfig,
        adam: &AdamW,
        before: &EqState,
        after: &[f32],
        step: u64,
    ) {
        let t = &cfg.train;
        let lr = learning_rate(t, adam.t - 1);
        let (c1, c2) = bias_corrections(t, adam.t);
        let mut m_hat = Vec::with_capacity(after.len());
        let mut step_dir = Vec::with_capacity(after.len());
        for i in 0..after.len() {
            let (m, v) = moments(t.betas, before.m[i], before.v[i], before.g[i]);
            m_hat.push(m / c1);
            step_dir.push(direction(m, v, c1, c2, t.eps));
        }
        let theta = widen(&before.theta);
        let r = norm(&theta);
        let unit: Vec<f64> = theta
            .iter()
            .map(|x| if r > 0.0 { x / r } else { 0.0 })
            .collect();
        let change: Vec<f64> = after
            .iter()
            .zip(&theta)
            .map(|(&a, b)| a as f64 - b)
            .collect();
        let w = &mut self.open;
        w.step = step;
        w.updates += 1;
        let cosines = [
            cos_opposite(&widen(&before.g), &theta),
            cos_opposite(&m_hat, &theta),
            cos_opposite(&step_dir, &theta),
        ];
        let v = &mut w.values;
        v[EQ_NORM] = norm(&widen(after));
        v[RADIAL_CHANGE] += dot(&change, &unit);
        v[LOSS_PART] += -lr * dot(&step_dir, &unit);
        v[DECAY_PART] += -lr * t.weight_decay * r;
        for (i, c) in COSINES.zip(cosines) {
            v[i] += c;
        }
        if step.is_multiple_of(t.eq_update_every) || step == t.steps {
            for i in COSINES {
                v[i] /= w.updates as f64;
            }
            self.windows.push(std::mem::take(w));
        }
    }

    /// Exact text for a checkpoint: the windows then the open one, every f64 as
    /// its bit pattern.
    pub fn to_json(&self) -> Result<String> {
        let rows: Vec<Vec<u64>> = self
            .windows
            .iter()
            .chain(std::iter::once(&self.open))
            .map(|w| {
                [w.step, w.updates]
                    .into_iter()
                    .chain(w.values.iter().map(|x| x.to_bits()))
                    .collect()
            })
            .collect();
        Ok(serde_json::to_string(&rows)?)
    }

    /// Read [`EqUpdateTrace::to_json`] back.
    pub fn from_json(s: &str) -> Result<EqUpdateTrace> {
        let rows: Vec<Vec<u64>> = serde_json::from_str(s)?;
        let mut windows = rows
            .into_iter()
            .map(|r| {
                let [step, updates, ref values @ ..] = r[..] else {
                    bail!("an E_= update window has {} numbers, not 9", r.len());
                };
                let values: [u64; 7] = values.try_into()?;
                Ok(EqUpdateWindow {
                    step,
                    updates,
                    values: values.map(f64::from_bits),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let Some(open) = windows.pop() else {
            bail!("an E_= update trace needs its open window");
        };
        Ok(EqUpdateTrace { windows, open })
    }
}

/// E_=, its Adam moments and its gradient before an update.
pub struct EqState {
    pub theta: Vec<f32>,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    pub g: Vec<f32>,
}

impl EqState {
    pub fn read(latent: &ModelWeights, adam: &AdamW, grads: &ModelWeights) -> EqState {
        EqState {
            theta: eq_row(latent).to_vec(),
            m: eq_row(&adam.m).to_vec(),
            v: eq_row(&adam.v).to_vec(),
            g: eq_row(grads).to_vec(),
        }
    }
}

/// The columns of `eq_update.csv`: `step`, `updates`, then [`EQ_UPDATE_MEASURES`].
pub fn columns() -> Vec<&'static str> {
    ["step", "updates"]
        .into_iter()
        .chain(EQ_UPDATE_MEASURES)
        .collect()
}

/// The cell's `eq_update.csv`: one row per window, every number in its shortest
/// round-trip spelling.
pub fn to_csv(windows: &[EqUpdateWindow]) -> String {
    let mut s = columns().join(",") + "\n";
    for w in windows {
        let row: Vec<String> = [w.step.to_string(), w.updates.to_string()]
            .into_iter()
            .chain(w.values.iter().map(|x| format!("{x:e}")))
            .collect();
        s.push_str(&row.join(","));
        s.push('\n');
    }
    s
}

/// Read a cell's `eq_update.csv` back.
pub fn from_csv(text: &str) -> Result<Vec<EqUpdateWindow>> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    if header != columns() {
        bail!("eq_update.csv: header {header:?} is not {:?}", columns());
    }
    lines
        .enumerate()
        .map(|(i, line)| {
            let f: Vec<&str> = line.split(',').collect();
            let [step, updates, values @ ..] = &f[..] else {
                bail!("eq_update.csv line {}: too few fields", i + 2);
            };
            let values: Vec<f64> = values.iter().map(|x| x.parse()).collect::<Result<_, _>>()?;
            let Ok(values) = <[f64; 7]>::try_from(values) else {
                bail!("eq_update.csv line {}: {} fields, not 9", i + 2, f.len());
            };
            Ok(EqUpdateWindow {
                step: step.parse()?,
                updates: updates.parse()?,
                values,
            })
        })
        .collect()
}
