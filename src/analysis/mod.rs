//! Learned-algorithm signatures (science.md §5): what algorithm a trained cell's
//! effective weights implement, as one JSON signature plus per-frequency and
//! per-neuron CSV tables.
//!
//! Choices of ours, all documented on the fields they set:
//! - restricted and excluded loss act on the logits (science.md §5; Nanda's code
//!   projects the MLP activations instead, which only matches for a linear readout).
//!   As in Nanda's code, restricted loss is measured on the test pairs and excluded
//!   loss on the training pairs when a split is given; both use all p² pairs
//!   otherwise. Each ratio divides by the full loss on the same pairs;
//! - generalised means final test accuracy (all-pairs accuracy without a split or
//!   curves) ≥ `accuracy_threshold`; the memorised (generalised) step is the first
//!   evaluated step with train (test) accuracy at or above it, whether or not it
//!   stays there; grokked means the generalised step exists and is later than the
//!   memorised one (so a model can have grokked and then fallen back: grokked, not
//!   generalised);
//! - the labels are [`labels`]'s, from the measures of [`mechanism`].

pub mod clock_pizza;
pub mod forward;
pub mod fourier;
pub mod labels;
pub mod measures;
pub mod mechanism;
pub mod planted;
pub mod progress;

use crate::analysis::fourier::FourierBasis;
use crate::config::{AnalysisConfig, Arch};
use crate::engine::model_file::{read_model_file, Described, Model};
use crate::store::read_cell_model;
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub use crate::key::{analysis_key, ANALYSIS_VERSION};

/// Distinct values of a matrix are counted up to this many.
pub const DISTINCT_VALUES_CAP: usize = 256;

pub use crate::engine::train::CurvePoint;

mod signature;
pub use signature::*;

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// Quantization statistics of one matrix.
pub fn matrix_stats(name: &str, data: &[f32]) -> MatrixStats {
    let n = data.len().max(1) as f64;
    let mut distinct = std::collections::BTreeSet::new();
    for &v in data {
        if distinct.len() > DISTINCT_VALUES_CAP {
            break;
        }
        // -0.0 and 0.0 are one value.
        distinct.insert(if v == 0.0 { 0u32 } else { v.to_bits() });
    }
    MatrixStats {
        name: name.to_string(),
        zero_fraction: data.iter().filter(|&&v| v == 0.0).count() as f64 / n,
        distinct_values: distinct.len().min(DISTINCT_VALUES_CAP),
        distinct_values_over_cap: distinct.len() > DISTINCT_VALUES_CAP,
        max_abs: data.iter().fold(0f64, |a, &v| a.max(v.abs() as f64)),
        mean_abs: data.iter().map(|&v| v.abs() as f64).sum::<f64>() / n,
    }
}

/// [`matrix_stats`] of every matrix the model's precision quantizes (`quant.matrices`
/// of the six projections; computed for fp32 too, where no entry is forced to zero).
pub fn quantization_stats(m: &Model) -> Vec<MatrixStats> {
    m.weights
        .params()
        .into_iter()
        .filter(|(spec, _)| spec.quantized && crate::engine::quant::selects(m.quantized, spec.name))
        .map(|(spec, data)| matrix_stats(spec.name, data))
        .collect()
}

/// Mean over the quantized matrices of their fraction of exact zeros; `None`
/// without any.
pub fn zero_fraction_mean(q: &[MatrixStats]) -> Option<f64> {
    (!q.is_empty()).then(|| q.iter().map(|m| m.zero_fraction).sum::<f64>() / q.len() as f64)
}

fn outcome_from_curves(
    curves: &[CurvePoint],
    all_pairs: (f64, f64),
    threshold: f64,
) -> Result<Outcome> {
    let last = curves.last().context("training curves are empty")?;
    let first =
        |acc: fn(&CurvePoint) -> f64| curves.iter().find(|c| acc(c) >= threshold).map(|c| c.step);
    let step_memorised = first(|c| c.train_acc);
    let step_generalised = first(|c| c.test_acc);
    let generalised = last.test_acc >= threshold;
    let grokking_gap = match (step_memorised, step_generalised) {
        (Some(m), Some(g)) => Some(g as i64 - m as i64),
        _ => None,
    };
    Ok(Outcome {
        source: OutcomeSource::Curves,
        final_train_loss: finite(last.train_loss),
        final_train_acc: finite(last.train_acc),
        final_test_loss: finite(last.test_loss),
        final_test_acc: finite(last.test_acc),
        all_pairs_loss: all_pairs.0,
        all_pairs_acc: all_pairs.1,
        generalised,
        grokked: grokking_gap.is_some_and(|g| g > 0),
        step_memorised,
        step_generalised,
        grokking_gap,
    })
}

type Pairs = Vec<(usize, usize)>;

/// Split the p² pairs into (train, test), checking the train pairs.
pub(crate) fn split_pairs(p: usize, split: &TrainSplit) -> Result<(Pairs, Pairs)> {
    let mut is_train = vec![false; p * p];
    for &(a, b) in &split.train {
        if a >= p || b >= p {
            bail!("train pair ({a}, {b}) is out of range for modulus {p}");
        }
        is_train[a * p + b] = true;
    }
    let (train, test): (Vec<usize>, Vec<usize>) = (0..p * p).partition(|&i| is_train[i]);
    let pair = |i: usize| (i / p, i % p);
    Ok((
        train.into_iter().map(pair).collect(),
        test.into_iter().map(pair).collect(),
    ))
}

/// The signature of one model's effective weights. `curves` supply the outcome and
/// timings; without them the outcome is computed from the weights on `split` (or on
/// all pairs). `split` also selects the pairs of the excluded loss.
pub fn analyze(
    m: &Model,
    curves: Option<&[CurvePoint]>,
    split: Option<&TrainSplit>,
    cfg: &AnalysisConfig,
) -> Result<Signature> {
    check_analysable(m, cfg)?;
    let w = &m.weights;
    let p = w.modulus();
    let attention_rate = m.attention.rate;
    let basis = FourierBasis::new(p);
    let fwd = forward::forward_all(m, crate::engine::reference::Depth::Logits);
    let all = measures::all_pairs(p);
    let all_pairs = measures::full_loss(&fwd.logits, p, &all);
    let split_sets = split.map(|s| split_pairs(p, s)).transpose()?;

    // Outcome.
    let threshold = cfg.accuracy_threshold;
    let outcome = match (curves, &split_sets) {
        (Some(c), _) => outcome_from_curves(c, all_pairs, threshold)?,
        (None, Some((train, test))) => {
            let (trl, tra) = measures::full_loss(&fwd.logits, p, train);
            let (tel, tea) = measures::full_loss(&fwd.logits, p, test);
            let generalised = if test.is_empty() { all_pairs.1 } else { tea } >= threshold;
            Outcome {
                source: OutcomeSource::WeightsSplit,
                final_train_loss: finite(trl),
                final_train_acc: finite(tra),
                final_test_loss: finite(tel),
                final_test_acc: finite(tea),
                all_pairs_loss: all_pairs.0,
                all_pairs_acc: all_pairs.1,
                generalised,
                grokked: generalised,
                step_memorised: None,
                step_generalised: None,
                grokking_gap: None,
            }
        }
        (None, None) => Outcome {
            source: OutcomeSource::WeightsAllPairs,
            final_train_loss: None,
            final_train_acc: None,
            final_test_loss: None,
            final_test_acc: None,
            all_pairs_loss: all_pairs.0,
            all_pairs_acc: all_pairs.1,
            generalised: all_pairs.1 >= threshold,
            grokked: all_pairs.1 >= threshold,
            step_memorised: None,
            step_generalised: None,
            grokking_gap: None,
        },
    };

    // Embedding spectrum.
    let spectrum = measures::embedding_spectrum(&basis, &w.w_e, cfg.energy_coverage);

    // Neurons.
    let d_mlp = fwd.d_mlp;
    let mut neuron_table = neuron_table(&fwd, &basis, cfg);
    let kmax = basis.max_frequency();
    let (owned, key_frequencies) = key_frequencies(&neuron_table, kmax);
    let clustered = neuron_table.iter().filter(|r| r.clustered).count();
    let dead = neuron_table.iter().filter(|r| r.dead).count();
    let live: Vec<f64> = neuron_table
        .iter()
        .filter(|r| !r.dead)
        .map(|r| r.fve)
        .collect();
    let neurons = NeuronSummary {
        neurons: d_mlp,
        neurons_per_key_frequency: key_frequencies
            .iter()
            .map(|&k| KeyFrequency {
                frequency: k,
                neurons: owned[k],
            })
            .collect(),
        key_frequencies: key_frequencies.clone(),
        clustered,
        fraction_clustered: if d_mlp == 0 {
            0.0
        } else {
            clustered as f64 / d_mlp as f64
        },
        dead,
        mean_fve: if live.is_empty() {
            0.0
        } else {
            live.iter().sum::<f64>() / live.len() as f64
        },
    };

    // Logits.
    let all_freqs: Vec<usize> = (0..=kmax).collect();
    let explained_by_freq = measures::logits_explained(&fwd.logits, p, &all_freqs);
    let explained: f64 = key_frequencies.iter().map(|&k| explained_by_freq[k]).sum();
    let (restricted_pairs, re_set) = match &split_sets {
        Some((_, test)) if !test.is_empty() => ("test", test.as_slice()),
        _ => ("all_pairs", all.as_slice()),
    };
    let full_re = measures::full_loss(&fwd.logits, p, re_set).0;
    let restricted = measures::restricted_loss(&fwd.logits, p, &key_frequencies, re_set);
    let (excluded_pairs, ex_set) = match &split_sets {
        Some((train, _)) if !train.is_empty() => ("train", train.as_slice()),
        _ => ("all_pairs", all.as_slice()),
    };
    let full_ex = measures::full_loss(&fwd.logits, p, ex_set).0;
    let excluded = measures::excluded_loss(&fwd.logits, p, &key_frequencies, ex_set);
    let logits = LogitSummary {
        explained_by_key_frequencies: explained,
        full_loss_all_pairs: all_pairs.0,
        restricted_pairs: restricted_pairs.to_string(),
        full_loss_restricted_pairs: full_re,
        restricted_loss: restricted,
        restricted_ratio: finite(restricted / full_re),
        excluded_pairs: excluded_pairs.to_string(),
        full_loss_excluded_pairs: full_ex,
        excluded_loss: excluded,
        excluded_ratio: finite(excluded / full_ex),
    };

    // Clock or pizza, level by level.
    let attention = clock_pizza::attention_summary(&fwd.attention, &clock_pizza::qk_norms(w), cfg);
    let (symmetricity, triples) = clock_pizza::gradient_symmetricity(m, cfg);
    let di = measures::distance_irrelevance(&fwd.logits, p);
    let di_wrong =
        mechanism::distance_irrelevance_of(&mechanism::max_wrong_logits(&fwd.logits, p), p);
    let correct = clock_pizza::correct_logits(&fwd.logits, p);
    let logit_patterns = mechanism::logit_patterns(m, &key_frequencies);
    let per_frequency: Vec<labels::Pattern> = logit_patterns
        .iter()
        .map(|x| labels::frequency_pattern(x, cfg))
        .collect();
    let pattern = labels::model_pattern(&per_frequency);
    let best: Vec<(bool, Option<usize>)> = neuron_table
        .iter()
        .map(|r| (r.clustered, r.best_frequency))
        .collect();
    let (forms, neuron_form) = mechanism::neuron_forms(&fwd, &best);
    for (row, f) in neuron_table.iter_mut().zip(&forms) {
        if let Some(f) = f {
            row.degree1 = Some(f.degree1);
            row.degree2 = Some(f.degree2);
            row.phase_a = Some(f.phase_a);
            row.phase_b = Some(f.phase_b);
        }
    }
    let ablation = mechanism::attention_ablation(m, all_pairs.0);
    let elasticities = mechanism::elasticities(m, ex_set);
    let label = labels::summary_label(
        &labels::LabelInputs {
            generalised: outcome.generalised,
            n_key_frequencies: key_frequencies.len(),
            logits_explained: explained,
            pattern,
        },
        cfg,
    );
    let algorithm = AlgorithmSummary {
        attention_rate,
        attention,
        query: mechanism::query_path(w),
        query_init: None,
        routing: labels::routing(ablation.loss_increase, cfg),
        ablation,
        eq_routes: Some(mechanism::eq_route_ablation(m)),
        score_elasticity: Some(elasticities.score),
        eq_elasticity: Some(elasticities.eq),
        gradient_symmetricity: symmetricity,
        symmetricity_triples: triples,
        distance_irrelevance: di,
        distance_irrelevance_max_wrong: di_wrong,
        neuron_form_label: labels::form(neuron_form.as_ref(), cfg),
        neuron_form,
        difference_share: mechanism::difference_share(&correct, p),
        difference_share_pre_norm: fwd
            .pre_norm_correct_logit
            .as_ref()
            .and_then(|c| mechanism::difference_share(c, p)),
        norm_split: fwd.x2_norms.as_ref().map(|n| mechanism::norm_split(n, p)),
        pattern,
        label,
        logit_patterns,
    };

    let quantization = quantization_stats(m);

    let nonconstant: f64 = spectrum.norms[1..].iter().map(|n| n * n).sum();
    let frequency_table = (0..=kmax)
        .map(|k| FrequencyRow {
            frequency: k,
            embedding_norm: spectrum.norms[k],
            embedding_energy_fraction: if k == 0 || nonconstant <= 0.0 {
                0.0
            } else {
                spectrum.norms[k] * spectrum.norms[k] / nonconstant
            },
            neurons: owned[k],
            key: owned[k] > 0 && k > 0,
            logits_explained: explained_by_freq[k],
            clock_score: None,
            pizza_score: None,
            pattern: None,
        })
        .collect::<Vec<_>>();
    let mut frequency_table = frequency_table;
    for (x, &pattern) in algorithm.logit_patterns.iter().zip(&per_frequency) {
        let row = &mut frequency_table[x.frequency];
        row.clock_score = Some(x.clock);
        row.pizza_score = Some(x.pizza);
        row.pattern = Some(pattern);
    }

    Ok(Signature {
        analysis_version: ANALYSIS_VERSION,
        arch: w.arch,
        modulus: p,
        width: w.width(),
        heads: w.heads,
        d_mlp,
        outcome,
        embedding: EmbeddingSummary {
            norm_by_frequency: spectrum.norms,
            gini: spectrum.gini,
            frequencies_for_coverage: spectrum.frequencies_for_coverage,
            energy_coverage: cfg.energy_coverage,
        },
        neurons,
        logits,
        algorithm,
        quantization,
        frequency_table,
        neuron_table,
        phases: None,
    })
}

/// The signature as pretty JSON (deterministic: fixed field order, shortest
/// round-trip float formatting).
pub fn signature_json(sig: &Signature) -> Result<String> {
    Ok(serde_json::to_string_pretty(sig)? + "\n")
}

/// Fail unless `m` and `cfg` can be analysed: attention rate in [0, 1], p ≥ 3, an
/// embedding of p + 1 rows, finite weights, valid settings.
pub(crate) fn check_analysable(m: &Model, cfg: &AnalysisConfig) -> Result<()> {
    let w = &m.weights;
    let p = w.modulus();
    let attention_rate = m.attention.rate;
    if !(0.0..=1.0).contains(&attention_rate) {
        bail!("attention rate {attention_rate} is out of range (allowed: 0 to 1)");
    }
    if p < 3 {
        bail!("modulus {p} is too small to analyse: the Fourier basis needs p ≥ 3");
    }
    cfg.checked()?;
    if w.w_e.rows != p + 1 {
        bail!(
            "embed.W_E has {} rows, expected p + 1 = {} for modulus {p}",
            w.w_e.rows,
            p + 1
        );
    }
    for (name, _, data) in w.to_named() {
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            bail!(
                "tensor {name} holds a non-finite value ({}) at flat index {i}",
                data[i]
            );
        }
    }
    Ok(())
}

/// One row per MLP neuron: its best frequency and fit over the p² inputs. Each
/// neuron alone, collected in order: nothing depends on threads.
pub(crate) fn neuron_table(
    fwd: &forward::ForwardPass,
    basis: &FourierBasis,
    cfg: &AnalysisConfig,
) -> Vec<NeuronRow> {
    fwd.neurons
        .par_chunks(fwd.p * fwd.p)
        .enumerate()
        .map(|(n, grid)| {
            let fit = measures::neuron_fit(basis, grid, cfg.dead_neuron_std);
            NeuronRow {
                neuron: n,
                best_frequency: fit.best_frequency,
                clustered: !fit.dead && fit.fve >= cfg.fve_threshold,
                fve: fit.fve,
                dead: fit.dead,
                mean: fit.mean,
                std: fit.std,
                degree1: None,
                degree2: None,
                phase_a: None,
                phase_b: None,
            }
        })
        .collect()
}

/// Clustered neurons per frequency `0..=kmax`, and the key frequencies: those that
/// own at least one, ascending.
pub(crate) fn key_frequencies(table: &[NeuronRow], kmax: usize) -> (Vec<usize>, Vec<usize>) {
    let mut owned = vec![0usize; kmax + 1];
    for r in table.iter().filter(|r| r.clustered) {
        owned[r.best_frequency.expect("clustered neurons are live")] += 1;
    }
    let keys = (1..=kmax).filter(|&k| owned[k] > 0).collect();
    (owned, keys)
}

/// Write `signature.json`, `frequencies.csv` and `neurons.csv` into `dir`.
pub fn write_tables(sig: &Signature, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json_path = dir.join(crate::store::SIGNATURE);
    std::fs::write(&json_path, signature_json(sig)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    let freq_path = dir.join("frequencies.csv");
    write_csv(&freq_path, &sig.frequency_table)?;
    write_csv(&dir.join("neurons.csv"), &sig.neuron_table)?;
    Ok(())
}

pub(crate) fn write_csv<T: Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    let mut w =
        csv::Writer::from_path(path).with_context(|| format!("writing {}", path.display()))?;
    for r in rows {
        w.serialize(r)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// What the analysis of a trained cell stores: its signature (with its phases when
/// the cell has snapshots) and the progress rows of its snapshots. `run` and
/// `analyze KEY` both compute it with [`analyze_cell`], so they never store less.
pub struct CellAnalysis {
    pub signature: Signature,
    pub progress: Option<Vec<progress::ProgressRow>>,
}

impl CellAnalysis {
    /// Write the signature's tables and, with snapshots, `progress.csv` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        write_tables(&self.signature, dir)?;
        match &self.progress {
            Some(rows) => progress::write_progress(rows, dir),
            None => Ok(()),
        }
    }
}

/// Analyse a trained cell folder: its model (run as it was trained, see
/// [`read_cell_model`]), its curves (curves.csv), its split (split.csv), its initial
/// weights' query path and its snapshots.
pub fn analyze_cell(dir: &Path, cfg: &AnalysisConfig) -> Result<CellAnalysis> {
    let (cell, model) = read_cell_model(dir)?;
    let curves = crate::store::read_curves(&dir.join(crate::store::CURVES))?;
    let train = read_train_split(dir)?;
    let mut signature = analyze(&model, Some(&curves), Some(&train), cfg)
        .with_context(|| format!("analysing {}", dir.display()))?;
    signature.algorithm.query_init = Some(initial_query_path(&cell));
    let progress = progress::cell_progress(dir, &cell, &mut signature, cfg)
        .with_context(|| format!("progress measures of {}", dir.display()))?;
    Ok(CellAnalysis {
        signature,
        progress,
    })
}

/// The query path of a cell's initial weights, quantized as its first step saw them.
pub fn initial_query_path(cell: &crate::config::CellConfig) -> mechanism::QueryPath {
    let latent = crate::engine::model::init_weights(cell);
    mechanism::query_path(&crate::engine::train::effective_weights(cell, &latent))
}

/// The training pairs of a trained cell folder (its split.csv).
pub fn read_train_split(dir: &Path) -> Result<TrainSplit> {
    read_train_split_file(&dir.join(crate::store::SPLIT))
}

/// The train pairs of a `split.csv` file.
pub fn read_train_split_file(path: &Path) -> Result<TrainSplit> {
    let split = crate::store::read_split(path)?;
    Ok(TrainSplit {
        train: split
            .train
            .iter()
            .map(|&(a, b)| (a as usize, b as usize))
            .collect(),
    })
}

/// Analyse a safetensors file with TransformerLens names, read strictly (see
/// [`crate::engine::model_file`]; `given` supplies what a file without bitgrok
/// metadata cannot say), and write the signature and tables into `out_dir`.
pub fn analyze_file(
    path: &Path,
    given: &Described,
    cfg: &AnalysisConfig,
    out_dir: &Path,
) -> Result<Signature> {
    let loaded = read_model_file(path, given)?;
    let sig = analyze(&loaded.model, None, None, cfg)
        .with_context(|| format!("analysing {}", path.display()))?;
    write_tables(&sig, out_dir)?;
    Ok(sig)
}

#[cfg(test)]
mod tests;
