//! The training loop of one cell: seeded split and initialisation, full-batch AdamW on
//! the fast pass, loss/accuracy curves, resumable checkpoints (science.md §1–4).
//!
//! Reproducibility: the same config gives bit-identical weights and curves whatever
//! the thread count, and a run resumed from a checkpoint at step s ends bit-identical
//! to an uninterrupted one (the checkpoint holds every piece of state, exactly).

use crate::config::CellConfig;
use crate::engine::data::{self, Split};
use crate::engine::eq_update::{eq_row, EqState, EqUpdateTrace, EqUpdateWindow};
use crate::engine::model::{self, init_weights, Batch};
use crate::engine::optim::{AdamW, GrokfastEma};
use crate::engine::quant::quantize;
use crate::engine::weights::{from_safetensors_bytes, to_safetensors_bytes, ModelWeights};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Train and test loss/accuracy of the model after `step` updates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CurvePoint {
    pub step: u64,
    pub train_loss: f64,
    pub train_acc: f64,
    pub test_loss: f64,
    pub test_acc: f64,
}

/// Everything needed to continue a run exactly: the state after `step` updates.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub step: u64,
    pub latent: ModelWeights,
    pub adam: AdamW,
    pub grokfast: GrokfastEma,
    /// Curve points evaluated so far (steps < `step`, or ≤ `step` when already evaluated).
    pub curves: Vec<CurvePoint>,
    /// Training seconds spent so far.
    pub seconds: f64,
    /// The cell config (JSON) the run belongs to.
    pub config: String,
    /// The record of E_='s updates so far (`train.eq_update_every` > 0).
    pub eq_update: Option<EqUpdateTrace>,
}

const CHECKPOINT_FORMAT: &str = "bitgrok-checkpoint-1";

impl Checkpoint {
    /// safetensors bytes: tensors under `latent.`, `adam.m.`, `adam.v.` and
    /// `grokfast.mu.` + TransformerLens names; step, config and curves in the metadata
    /// (curve values as f64 bit patterns, so they round-trip exactly).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut tensors = Vec::new();
        let mut add = |prefix: &str, w: &ModelWeights| {
            tensors.extend(
                w.to_named()
                    .into_iter()
                    .map(|(n, s, d)| (format!("{prefix}{n}"), s, d)),
            )
        };
        add("latent.", &self.latent);
        add("adam.m.", &self.adam.m);
        add("adam.v.", &self.adam.v);
        if let Some(mu) = &self.grokfast.mu {
            add("grokfast.mu.", mu);
        }
        let curves: Vec<[u64; 5]> = self
            .curves
            .iter()
            .map(|c| {
                [
                    c.step,
                    c.train_loss.to_bits(),
                    c.train_acc.to_bits(),
                    c.test_loss.to_bits(),
                    c.test_acc.to_bits(),
                ]
            })
            .collect();
        let mut meta = BTreeMap::from([
            ("format".to_string(), CHECKPOINT_FORMAT.to_string()),
            ("step".to_string(), self.step.to_string()),
            ("adam_t".to_string(), self.adam.t.to_string()),
            ("seconds".to_string(), self.seconds.to_bits().to_string()),
            ("config".to_string(), self.config.clone()),
            ("curves".to_string(), serde_json::to_string(&curves)?),
        ]);
        if let Some(trace) = &self.eq_update {
            meta.insert("eq_update".to_string(), trace.to_json()?);
        }
        to_safetensors_bytes(&tensors, &meta)
    }

    pub fn from_bytes(b: &[u8]) -> Result<Checkpoint> {
        let (tensors, meta) = from_safetensors_bytes(b).context("reading checkpoint")?;
        let get = |k: &str| {
            meta.get(k)
                .with_context(|| format!("checkpoint metadata lacks \"{k}\""))
        };
        if get("format")? != CHECKPOINT_FORMAT {
            bail!(
                "checkpoint format {:?} is not {CHECKPOINT_FORMAT}",
                get("format")?
            );
        }
        let curves: Vec<[u64; 5]> = serde_json::from_str(get("curves")?)?;
        let has_mu = tensors.keys().any(|k| k.starts_with("grokfast.mu."));
        let arch = serde_json::from_str::<CellConfig>(get("config")?)
            .context("checkpoint config")?
            .model
            .arch;
        Ok(Checkpoint {
            step: get("step")?.parse()?,
            latent: ModelWeights::from_named(&tensors, "latent.", arch)?,
            adam: AdamW {
                m: ModelWeights::from_named(&tensors, "adam.m.", arch)?,
                v: ModelWeights::from_named(&tensors, "adam.v.", arch)?,
                t: get("adam_t")?.parse()?,
            },
            grokfast: GrokfastEma {
                mu: if has_mu {
                    Some(ModelWeights::from_named(&tensors, "grokfast.mu.", arch)?)
                } else {
                    None
                },
            },
            curves: curves
                .into_iter()
                .map(|c| CurvePoint {
                    step: c[0],
                    train_loss: f64::from_bits(c[1]),
                    train_acc: f64::from_bits(c[2]),
                    test_loss: f64::from_bits(c[3]),
                    test_acc: f64::from_bits(c[4]),
                })
                .collect(),
            seconds: f64::from_bits(get("seconds")?.parse()?),
            config: get("config")?.clone(),
            eq_update: meta
                .get("eq_update")
                .map(|s| EqUpdateTrace::from_json(s))
                .transpose()
                .context("checkpoint eq_update")?,
        })
    }
}

/// The step of a checkpoint file, read from its header alone (for status displays).
pub fn checkpoint_step(path: &std::path::Path) -> Result<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)?;
    let n = u64::from_le_bytes(len);
    if n > 1 << 24 {
        bail!("{}: implausible header length {n}", path.display());
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)?;
    let header: serde_json::Value = serde_json::from_slice(&header)?;
    header["__metadata__"]["step"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{}: no step in the checkpoint header", path.display()))
}

/// Reported while training.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    /// Updates done.
    pub step: u64,
    pub steps: u64,
    /// Loss of the latest update's batch (or of the latest evaluation).
    pub train_loss: f64,
    /// Test accuracy when this report comes from an evaluation.
    pub test_acc: Option<f64>,
}

/// How a caller steers [`train_cell`].
pub struct TrainHooks<'a> {
    /// Threads of the matrix products and row kernels (the results do not depend on
    /// it). Training runs inside a rayon pool of this size; dfdx's CPU matmul calls
    /// gemm with `Parallelism::Rayon(rayon::current_num_threads())`, so it follows the
    /// pool, as do bitgrok's own kernels.
    pub threads: usize,
    /// Threads the cell may take beyond `threads` now, asked before every step: cores
    /// that other workers of a run have left idle ([`crate::run::schedule`]). `&|| 0`
    /// keeps `threads` throughout.
    pub more_threads: &'a (dyn Fn() -> usize + Sync),
    /// Continue from here.
    pub resume: Option<Checkpoint>,
    /// Called every `train.checkpoint_every` updates (not after the last one).
    pub on_checkpoint: &'a mut dyn FnMut(&Checkpoint) -> Result<()>,
    /// Called after every update and at every evaluation.
    pub on_progress: &'a mut dyn FnMut(&Progress),
    /// Called with the effective weights at step 0, every `train.snapshot_every`
    /// steps and at the last step, when `snapshot_every` > 0. After a resume the
    /// snapshot of the resumed step is passed again (same bits).
    pub on_snapshot: &'a mut dyn FnMut(u64, &ModelWeights) -> Result<()>,
    /// When set: write a checkpoint via `on_checkpoint` and return `Err(Interrupted)`.
    pub stop: &'a AtomicBool,
}

/// The error [`train_cell`] returns after a stop request (after checkpointing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("training interrupted (checkpoint written)")
    }
}

impl std::error::Error for Interrupted {}

/// What one trained cell gives.
#[derive(Clone, Debug)]
pub struct TrainOutput {
    /// The config trained.
    pub config: CellConfig,
    pub split: Split,
    /// Weights at step 0.
    pub init: ModelWeights,
    /// The fp32 weights the optimizer updated.
    pub latent: ModelWeights,
    /// The weights the forward pass uses: `Q(latent)` on the six projections.
    pub effective: ModelWeights,
    /// At step 0, every `eval_every` steps, and the final step.
    pub curves: Vec<CurvePoint>,
    pub seconds: f64,
    /// The most threads a step of this run took (`threads` plus any lent).
    pub max_threads: usize,
    /// How AdamW moved E_=, per window (empty unless `train.eq_update_every` > 0).
    pub eq_update: Vec<EqUpdateWindow>,
}

/// The quantizer of a cell: its precision's rule applied to the projection matrices
/// `quant.matrices` selects, with each matrix's initial scale when `quant.scale =
/// "initial"` (computed once, from the cell's initial weights).
#[derive(Clone, Debug)]
pub struct Quantizer {
    precision: crate::config::Precision,
    quant: crate::config::QuantConfig,
    initial_scales: BTreeMap<&'static str, f64>,
}

impl Quantizer {
    pub fn new(cfg: &CellConfig) -> Quantizer {
        let mut q = Quantizer {
            precision: cfg.precision,
            quant: cfg.quant.clone(),
            initial_scales: BTreeMap::new(),
        };
        if cfg.quant.scale == crate::config::QuantScale::Initial {
            for (spec, p) in crate::engine::model::init_weights(cfg).params() {
                if q.quantizes(spec) {
                    let s = crate::engine::quant::scale(cfg.precision, &cfg.quant, p);
                    q.initial_scales.extend(s.map(|s| (spec.name, s)));
                }
            }
        }
        q
    }

    /// Whether this parameter is quantized.
    pub fn quantizes(&self, spec: &crate::engine::weights::Param) -> bool {
        self.precision != crate::config::Precision::Fp32
            && spec.quantized
            && crate::engine::quant::selects(self.quant.matrices, spec.name)
    }

    /// The effective weights: `Q(W)` on the quantized matrices, everything else as is.
    pub fn effective(&self, latent: &ModelWeights) -> ModelWeights {
        let mut e = latent.clone();
        for (spec, p) in e.params_mut() {
            if self.quantizes(spec) {
                let initial = self.initial_scales.get(spec.name).copied();
                let q = quantize(self.precision, &self.quant, p, initial);
                p.copy_from_slice(&q);
            }
        }
        e
    }
}

/// The effective weights of a model: [`Quantizer::effective`] of the cell's quantizer.
pub fn effective_weights(cfg: &CellConfig, latent: &ModelWeights) -> ModelWeights {
    Quantizer::new(cfg).effective(latent)
}

/// The training state of one cell between updates.
pub struct Trainer {
    pub cfg: CellConfig,
    pub train: Batch,
    pub test: Batch,
    pub latent: ModelWeights,
    pub adam: AdamW,
    pub grokfast: GrokfastEma,
    pub step: u64,
    /// The record of E_='s updates, when `train.eq_update_every` > 0.
    pub eq_update: Option<EqUpdateTrace>,
    quantizer: Quantizer,
}

impl Trainer {
    pub fn new(cfg: &CellConfig, split: &Split, latent: ModelWeights) -> Trainer {
        let arch = cfg.model.arch;
        Trainer {
            cfg: cfg.clone(),
            train: Batch::new(arch, cfg.modulus, &split.train),
            test: Batch::new(arch, cfg.modulus, &split.test),
            adam: AdamW::new(&latent),
            latent,
            grokfast: GrokfastEma::default(),
            step: 0,
            eq_update: (cfg.train.eq_update_every > 0).then(EqUpdateTrace::default),
            quantizer: Quantizer::new(cfg),
        }
    }

    /// One full-batch update (quantize, forward, backward, optimizer); returns the loss.
    pub fn update(&mut self) -> f64 {
        let quantized;
        let eff = if self.cfg.precision == crate::config::Precision::Fp32 {
            &self.latent
        } else {
            quantized = self.quantizer.effective(&self.latent);
            &quantized
        };
        let q = &self.cfg.quant;
        let out = model::run(
            eff,
            q.act_bits,
            q.eps,
            self.cfg.model.attention_mix(),
            &self.train,
            true,
            false,
        );
        let mut grads = out.grads.expect("gradients were asked for");
        let t = &self.cfg.train;
        if t.grokfast {
            self.grokfast
                .filter(t.grokfast_alpha, t.grokfast_lambda, &mut grads);
        }
        let before = self
            .eq_update
            .is_some()
            .then(|| EqState::read(&self.latent, &self.adam, &grads));
        // Straight-through: the gradient w.r.t. Q(W) updates the latent W.
        self.adam.step(t, &mut self.latent, &grads);
        self.step += 1;
        if let (Some(trace), Some(before)) = (&mut self.eq_update, before) {
            let after = eq_row(&self.latent);
            trace.record(&self.cfg, &self.adam, &before, after, self.step);
        }
        out.loss
    }

    /// Loss and accuracy on the train and test sets now.
    pub fn evaluate(&self) -> CurvePoint {
        let eff = self.quantizer.effective(&self.latent);
        let q = &self.cfg.quant;
        let tr = model::run(
            &eff,
            q.act_bits,
            q.eps,
            self.cfg.model.attention_mix(),
            &self.train,
            false,
            false,
        );
        let (test_loss, test_acc) = if self.test.is_empty() {
            (f64::NAN, f64::NAN)
        } else {
            let te = model::run(
                &eff,
                q.act_bits,
                q.eps,
                self.cfg.model.attention_mix(),
                &self.test,
                false,
                false,
            );
            (te.loss, te.accuracy)
        };
        CurvePoint {
            step: self.step,
            train_loss: tr.loss,
            train_acc: tr.accuracy,
            test_loss,
            test_acc,
        }
    }

    fn checkpoint(&self, curves: &[CurvePoint], seconds: f64) -> Result<Checkpoint> {
        Ok(Checkpoint {
            step: self.step,
            latent: self.latent.clone(),
            adam: self.adam.clone(),
            grokfast: self.grokfast.clone(),
            curves: curves.to_vec(),
            seconds,
            config: resume_key(&self.cfg)?,
            eq_update: self.eq_update.clone(),
        })
    }
}

/// The config as a checkpoint records it; `steps` and `checkpoint_every` are left
/// out, so a run may be resumed with a longer schedule.
fn resume_key(cfg: &CellConfig) -> Result<String> {
    Ok(serde_json::to_string(&resumable(cfg))?)
}

fn resumable(cfg: &CellConfig) -> CellConfig {
    let mut c = cfg.clone();
    c.train.steps = 0;
    c.train.checkpoint_every = 0;
    c
}

/// Whether a checkpoint's recorded config is this one's. Compared as configs, not
/// text, so a checkpoint written before a setting existed (it parses with that
/// setting's default) still resumes.
fn same_config(recorded: &str, cfg: &CellConfig) -> bool {
    serde_json::from_str::<CellConfig>(recorded).is_ok_and(|c| resumable(&c) == resumable(cfg))
}

/// A pool with `threads` threads for the matrix products.
pub fn thread_pool(threads: usize) -> Result<rayon::ThreadPool> {
    Ok(rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()?)
}

/// `pool.install(f)` with the pool's other threads kept looking for work while `f`
/// runs ([`KeepWarm`]). Only for a pool that runs nothing else meanwhile (a cell's or
/// a benchmark's own): a job that waits for `f` to end must not hold up another.
pub fn install_warm<R: Send>(pool: &rayon::ThreadPool, f: impl FnOnce() -> R + Send) -> R {
    pool.install(|| {
        let _warm = KeepWarm::start();
        f()
    })
}

/// While it lives, the current pool's other threads keep looking for work: each runs
/// a job that takes the pool's jobs one at a time as they appear ([`rayon::yield_now`])
/// instead of going to sleep between a step's parallel loops. Waking a sleeping thread
/// took long enough that the thread that started a loop did most of it alone (at
/// p = 53 on two threads, the other was idle for a quarter to a third of a step).
/// Which thread runs a job never changes its bits.
struct KeepWarm(Option<Arc<AtomicBool>>);

impl KeepWarm {
    fn start() -> KeepWarm {
        let threads = rayon::current_num_threads();
        let Some(starter) = rayon::current_thread_index().filter(|_| threads > 1) else {
            return KeepWarm(None);
        };
        let done = Arc::new(AtomicBool::new(false));
        for _ in 1..threads {
            let done = done.clone();
            rayon::spawn(move || {
                // On the starting thread (which took the job back while waiting for
                // another) it returns at once: it would wait for itself.
                if rayon::current_thread_index() == Some(starter) {
                    return;
                }
                while !done.load(Ordering::Relaxed) {
                    if rayon::yield_now() != Some(rayon::Yield::Executed) {
                        // Lets other processes' threads run where cores are short.
                        std::thread::yield_now();
                    }
                }
            });
        }
        KeepWarm(Some(done))
    }
}

impl Drop for KeepWarm {
    fn drop(&mut self) {
        if let Some(done) = &self.0 {
            done.store(true, Ordering::Relaxed);
        }
    }
}

/// One pool per thread count a cell's training uses (a step's bits do not depend on
/// it), built when first asked for.
#[derive(Default)]
struct Pools(Vec<(usize, rayon::ThreadPool)>);

impl Pools {
    fn get(&mut self, threads: usize) -> Result<&rayon::ThreadPool> {
        let at = match self.0.iter().position(|(n, _)| *n == threads) {
            Some(at) => at,
            None => {
                self.0.push((threads, thread_pool(threads)?));
                self.0.len() - 1
            }
        };
        Ok(&self.0[at].1)
    }
}

/// Whether the weights at `step` are a snapshot: step 0, every
/// `train.snapshot_every` steps and the last step, when snapshots are on.
pub fn is_snapshot_step(cfg: &CellConfig, step: u64) -> bool {
    let every = cfg.train.snapshot_every;
    every > 0 && step <= cfg.train.steps && (step.is_multiple_of(every) || step == cfg.train.steps)
}

/// The steps of a cell's snapshots, ascending (empty when snapshots are off).
pub fn snapshot_steps(cfg: &CellConfig) -> Vec<u64> {
    if cfg.train.snapshot_every == 0 {
        return Vec::new();
    }
    (0..=cfg.train.steps)
        .step_by(cfg.train.snapshot_every as usize)
        .chain(std::iter::once(cfg.train.steps))
        .filter(|&s| is_snapshot_step(cfg, s))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Train one cell.
pub fn train_cell(cfg: &CellConfig, hooks: TrainHooks) -> Result<TrainOutput> {
    model::validate(cfg)?;
    let TrainHooks {
        threads,
        more_threads,
        resume,
        on_checkpoint,
        on_progress,
        on_snapshot,
        stop,
    } = hooks;
    let split = data::split(cfg);
    let init = init_weights(cfg);
    let mut trainer = Trainer::new(cfg, &split, init.clone());
    let mut curves = Vec::new();
    let mut seconds_before = 0.0;
    if let Some(ck) = resume {
        if !same_config(&ck.config, cfg) {
            bail!(
                "the checkpoint belongs to a different config; it cannot be resumed with this one"
            );
        }
        if ck.step > cfg.train.steps {
            bail!(
                "the checkpoint is at step {}, beyond train.steps = {}",
                ck.step,
                cfg.train.steps
            );
        }
        trainer.step = ck.step;
        trainer.latent = ck.latent;
        trainer.adam = ck.adam;
        trainer.grokfast = ck.grokfast;
        if trainer.eq_update.is_some() {
            trainer.eq_update =
                Some(ck.eq_update.context(
                    "the checkpoint has no record of E_='s updates, which this cell keeps",
                )?);
        }
        curves = ck.curves;
        seconds_before = ck.seconds;
    }
    let threads = threads.max(1);
    let mut pools = Pools::default();
    let mut max_threads = threads;
    let started = Instant::now();
    let steps = cfg.train.steps;
    let (eval_every, ck_every) = (cfg.train.eval_every, cfg.train.checkpoint_every);
    loop {
        let step = trainer.step;
        let due = step == steps || (eval_every > 0 && step.is_multiple_of(eval_every)) || step == 0;
        if due && curves.last().map(|c: &CurvePoint| c.step) != Some(step) {
            let point = install_warm(pools.get(threads)?, || trainer.evaluate());
            curves.push(point);
            on_progress(&Progress {
                step,
                steps,
                train_loss: point.train_loss,
                test_acc: Some(point.test_acc),
            });
        }
        if is_snapshot_step(cfg, step) {
            on_snapshot(step, &effective_weights(cfg, &trainer.latent))?;
        }
        if step >= steps {
            break;
        }
        if stop.load(Ordering::SeqCst) {
            let seconds = seconds_before + started.elapsed().as_secs_f64();
            on_checkpoint(&trainer.checkpoint(&curves, seconds)?)?;
            return Err(Interrupted.into());
        }
        let n = threads + more_threads();
        max_threads = max_threads.max(n);
        let loss = install_warm(pools.get(n)?, || trainer.update());
        on_progress(&Progress {
            step: trainer.step,
            steps,
            train_loss: loss,
            test_acc: None,
        });
        if ck_every > 0 && trainer.step.is_multiple_of(ck_every) && trainer.step < steps {
            let seconds = seconds_before + started.elapsed().as_secs_f64();
            on_checkpoint(&trainer.checkpoint(&curves, seconds)?)?;
        }
    }
    let effective = effective_weights(cfg, &trainer.latent);
    Ok(TrainOutput {
        config: cfg.clone(),
        split,
        init,
        latent: trainer.latent,
        effective,
        curves,
        seconds: seconds_before + started.elapsed().as_secs_f64(),
        max_threads,
        eq_update: trainer.eq_update.map(|t| t.windows).unwrap_or_default(),
    })
}
