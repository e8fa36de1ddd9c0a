//! Aggregation on a hand-made artifacts tree: exact table contents, statuses of
//! missing/failed/partial/unanalysed cells, stable bytes, compare pairs, summary.

use bitgrok::analysis::clock_pizza::{AttentionSummary, HeadAttention};
use bitgrok::analysis::labels::{Form, Label, Pattern, Routing};
use bitgrok::analysis::mechanism::{
    AttentionAblation, EqRouteAblation, HeadQuery, LogitPattern, QueryPath,
};
use bitgrok::analysis::{
    AlgorithmSummary, EmbeddingSummary, FrequencyRow, KeyFrequency, LogitSummary, MatrixStats,
    NeuronSummary, Outcome, OutcomeSource, Signature,
};
use bitgrok::config::Arch;
use bitgrok::report::aggregate::{aggregate, jaccard, median, SweepCell};
use bitgrok::store;
use std::path::Path;

const AKEY: &str = "a1";

/// A signature with modulus 7 (frequencies 0..=3) and the given key frequencies.
struct Planted {
    keys: Vec<usize>,
    test_acc: f64,
    step_generalised: Option<u64>,
    restricted_ratio: Option<f64>,
    symmetricity: f64,
    label: Label,
    zeros: f64,
}

fn signature(p: &Planted) -> Signature {
    let owned = |k: usize| if p.keys.contains(&k) { 3 } else { 0 };
    let head = HeadAttention {
        tv_from_uniform: 0.25,
        variation: 0.125,
        entropy: 0.75,
        qk_norm: 1.25,
    };
    Signature {
        analysis_version: 1,
        arch: Arch::Li2024,
        modulus: 7,
        width: 8,
        heads: 1,
        d_mlp: 32,
        outcome: Outcome {
            source: OutcomeSource::Curves,
            final_train_loss: Some(0.00012345),
            final_train_acc: Some(1.0),
            final_test_loss: Some(0.5),
            final_test_acc: Some(p.test_acc),
            all_pairs_loss: 0.1,
            all_pairs_acc: 0.9,
            generalised: p.test_acc >= 0.99,
            grokked: p.step_generalised.is_some(),
            step_memorised: Some(100),
            step_generalised: p.step_generalised,
            grokking_gap: p.step_generalised.map(|g| g as i64 - 100),
        },
        embedding: EmbeddingSummary {
            norm_by_frequency: vec![0.0, 1.0, 2.0, 3.0],
            gini: 0.123456,
            frequencies_for_coverage: 2,
            energy_coverage: 0.9,
        },
        neurons: NeuronSummary {
            neurons: 32,
            key_frequencies: p.keys.clone(),
            neurons_per_key_frequency: p
                .keys
                .iter()
                .map(|&k| KeyFrequency {
                    frequency: k,
                    neurons: 3,
                })
                .collect(),
            clustered: 3 * p.keys.len(),
            fraction_clustered: 3.0 * p.keys.len() as f64 / 32.0,
            dead: 1,
            mean_fve: 0.9,
        },
        logits: LogitSummary {
            explained_by_key_frequencies: 0.87654,
            full_loss_all_pairs: 0.1,
            restricted_pairs: "test".into(),
            full_loss_restricted_pairs: 0.2,
            restricted_loss: 2.5,
            restricted_ratio: p.restricted_ratio,
            excluded_pairs: "train".into(),
            full_loss_excluded_pairs: 0.3,
            excluded_loss: 30.0,
            excluded_ratio: Some(100.0),
        },
        algorithm: AlgorithmSummary {
            attention_rate: 1.0,
            attention: AttentionSummary {
                heads: vec![head.clone(), head.clone()],
                tv_from_uniform: 0.25,
                variation: 0.125,
                entropy: 0.75,
                qk_norm: 2.5,
                constant: false,
                uniform: false,
            },
            gradient_symmetricity: p.symmetricity,
            symmetricity_triples: 343,
            distance_irrelevance: None,
            distance_irrelevance_max_wrong: Some(0.375),
            query: QueryPath {
                eq_norm_ratio: 0.5,
                heads: vec![HeadQuery {
                    query_norm: 2.0,
                    score_spread: 0.25,
                }],
                score_spread: 0.25,
            },
            query_init: Some(QueryPath {
                eq_norm_ratio: 1.0,
                heads: vec![],
                score_spread: 0.125,
            }),
            ablation: AttentionAblation {
                loss_uniform: 1.1,
                accuracy_uniform: 0.5,
                loss_increase: 1.0,
            },
            eq_routes: Some(EqRouteAblation {
                residual_loss_increase: 0.5,
                value_loss_increase: -0.25,
            }),
            score_elasticity: Some(-0.5),
            eq_elasticity: Some(0.25),
            logit_patterns: vec![LogitPattern {
                frequency: 1,
                clock: 0.875,
                pizza: 0.75,
            }],
            neuron_form: None,
            difference_share: Some(0.0625),
            difference_share_pre_norm: Some(0.5),
            norm_split: None,
            routing: Routing::Content,
            pattern: Pattern::Clock,
            neuron_form_label: Form::None,
            label: p.label,
        },
        quantization: vec![
            MatrixStats {
                name: "embed.W_E".into(),
                zero_fraction: p.zeros,
                distinct_values: 3,
                distinct_values_over_cap: false,
                max_abs: 1.0,
                mean_abs: 0.5,
            },
            MatrixStats {
                name: "unembed.W_U".into(),
                zero_fraction: 0.0,
                distinct_values: 2,
                distinct_values_over_cap: false,
                max_abs: 1.0,
                mean_abs: 0.5,
            },
        ],
        frequency_table: (0..=3)
            .map(|k| FrequencyRow {
                frequency: k,
                embedding_norm: k as f64 * 1.5,
                embedding_energy_fraction: k as f64 / 10.0,
                neurons: owned(k),
                key: owned(k) > 0,
                logits_explained: k as f64 / 20.0,
                clock_score: (k == 1).then_some(0.875),
                pizza_score: (k == 1).then_some(0.75),
                pattern: (k == 1).then_some(Pattern::Clock),
            })
            .collect(),
        neuron_table: vec![],
        phases: None,
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A manifest as the runner writes it.
fn manifest(key: &str, status: &str, seconds: f64, error: Option<&str>) -> String {
    let mut m = store::new_manifest(key, 0, 1);
    m.status = serde_json::from_value(serde_json::json!(status)).unwrap();
    m.seconds = seconds;
    m.error = error.map(str::to_string);
    serde_json::to_string(&m).unwrap()
}

/// An analysis folder as the runner writes it (with its checksum manifest).
fn analysis(root: &Path, key: &str, akey: &str, signature: &str) {
    let dir = root.join("cells").join(key).join("analysis").join(akey);
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    store::write_dir_atomic(&dir, |tmp| {
        std::fs::write(tmp.join("signature.json"), signature)?;
        for name in store::ANALYSIS_FILES {
            if !tmp.join(name).exists() {
                std::fs::write(tmp.join(name), "")?;
            }
        }
        Ok(())
    })
    .unwrap();
}

/// A done cell's files and its manifest listing (and checking) every one of them.
fn done_manifest(root: &Path, key: &str, seconds: f64) {
    let dir = root.join("cells").join(key);
    let mut m: store::Manifest =
        serde_json::from_str(&manifest(key, "done", seconds, None)).unwrap();
    for name in store::CELL_FILES {
        write(&dir.join(name), name);
        m.files
            .insert(name.to_string(), store::hash_file(&dir.join(name)).unwrap());
    }
    write(
        &dir.join("manifest.json"),
        &serde_json::to_string(&m).unwrap(),
    );
}

fn done_cell(root: &Path, key: &str, p: &Planted) {
    done_manifest(root, key, 12.345);
    analysis(
        root,
        key,
        AKEY,
        &serde_json::to_string(&signature(p)).unwrap(),
    );
}

fn cell(precision: &str, seed: &str, key: &str) -> SweepCell {
    SweepCell {
        axes: vec![
            ("precision".into(), precision.into()),
            ("seed".into(), seed.into()),
        ],
        key: key.into(),
        analysis_key: AKEY.into(),
    }
}

fn planted(keys: &[usize], acc: f64, step: Option<u64>, label: Label) -> Planted {
    Planted {
        keys: keys.to_vec(),
        test_acc: acc,
        step_generalised: step,
        restricted_ratio: Some(0.5),
        symmetricity: 0.4,
        label,
        zeros: 0.25,
    }
}

/// fp32/ternary/binary × seeds 0, 1 with every status represented.
fn tree(root: &Path) -> (Vec<String>, Vec<SweepCell>) {
    done_cell(root, "k0", &planted(&[1, 3], 1.0, Some(300), Label::Clock));
    done_cell(
        root,
        "k1",
        &Planted {
            symmetricity: 0.9,
            restricted_ratio: Some(0.75),
            ..planted(&[2, 3], 0.995, Some(400), Label::Pizza)
        },
    );
    done_cell(root, "k2", &planted(&[3], 0.5, None, Label::NotGeneralised));
    // k3: missing.
    write(
        &root.join("cells/k4/manifest.json"),
        &manifest("k4", "failed", 1.0, Some("loss became NaN\n at step 10")),
    );
    // k5: partial (started: its config is written, no manifest yet).
    write(&root.join("cells/k5/cell.toml"), "");
    // k6: done but analysed only under another analysis key.
    done_manifest(root, "k6", 2.0);
    analysis(root, "k6", "other", "{}");
    let axes = vec!["precision".to_string(), "seed".to_string()];
    let cells = vec![
        cell("fp32", "0", "k0"),
        cell("fp32", "1", "k3"),
        cell("ternary", "0", "k1"),
        cell("ternary", "1", "k4"),
        cell("binary", "0", "k2"),
        cell("binary", "1", "k5"),
        cell("int4", "0", "k6"),
    ];
    (axes, cells)
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

#[test]
fn cells_table_has_every_cell_with_its_status() {
    let tmp = tempfile::tempdir().unwrap();
    let (axes, cells) = tree(tmp.path());
    let out = tmp.path().join("sweeps/t");
    let report = aggregate(tmp.path(), &axes, &cells, &out).unwrap();
    assert_eq!(
        (
            report.cells,
            report.done,
            report.failed,
            report.missing,
            report.partial,
            report.unanalysed
        ),
        (7, 3, 1, 1, 1, 1)
    );
    let text = read(&out, "cells.csv");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "precision,seed,key,status,final_train_loss,final_test_loss,final_train_acc,\
         final_test_acc,grokked,step_memorised,step_generalised,grokking_gap,\
         step_circuit_start,step_cleanup_start,step_cleanup_end,gini,\
         frequencies_for_coverage,n_key_frequencies,key_frequencies,fraction_clustered,\
         dead_neurons,logits_explained,restricted_loss,restricted_ratio,excluded_loss,\
         excluded_ratio,gradient_symmetricity,distance_irrelevance,\
         distance_irrelevance_max_wrong,clock_score,pizza_score,pattern_per_frequency,\
         attention_tv,attention_tv_per_head,attention_variation,attention_entropy,qk_norm,\
         qk_norm_per_head,eq_norm_ratio,query_norm_per_head,score_spread,\
         score_spread_per_head,score_spread_init,ablation_loss_increase,ablation_acc,eq_residual_loss_increase,\
         eq_value_loss_increase,score_elasticity,eq_elasticity,degree1_share,\
         degree2_share,phase_alignment,difference_share,difference_share_pre_norm,\
         x2_norm_cv,x2_norm_difference_share,routing,logit_pattern,neuron_form,label,\
         zero_fraction_mean,distinct_values_max,train_seconds,error"
    );
    assert_eq!(
        lines[1],
        "fp32,0,k0,done,1.234e-4,5.000e-1,1.0000,1.0000,yes,100,300,200,,,,0.1235,2,2,1;3,\
         0.1875,1,0.8765,2.500e0,0.5000,3.000e1,100.0000,0.4000,,0.3750,0.8750,0.7500,\
         1:clock,0.2500,0.2500;0.2500,0.1250,0.7500,2.500e0,1.250e0;1.250e0,5.000e-1,\
         2.000e0,2.500e-1,2.500e-1,1.250e-1,1.000e0,0.5000,5.000e-1,-2.500e-1,-5.000e-1,2.500e-1,,,,0.0625,0.5000,,,content-dependent,\
         clock,none,clock,0.1250,3,12.3,"
    );
    let empty_sig = ",".repeat(58);
    assert_eq!(lines[2], format!("fp32,1,k3,missing{empty_sig},,"));
    assert_eq!(
        lines[4],
        format!("ternary,1,k4,failed{empty_sig},1.0,loss became NaN at step 10")
    );
    assert_eq!(lines[6], format!("binary,1,k5,partial{empty_sig},,"));
    assert_eq!(lines[7], format!("int4,0,k6,unanalysed{empty_sig},2.0,"));
    assert_eq!(lines.len(), 8);
    assert!(lines[5].starts_with("binary,0,k2,done,"));
    // Every row has as many fields as the header.
    let n = lines[0].split(',').count();
    assert!(lines.iter().all(|l| l.split(',').count() == n), "{text}");
}

#[test]
fn frequencies_table_has_one_row_per_key_frequency() {
    let tmp = tempfile::tempdir().unwrap();
    let (axes, cells) = tree(tmp.path());
    let out = tmp.path().join("out");
    aggregate(tmp.path(), &axes, &cells, &out).unwrap();
    assert_eq!(
        read(&out, "frequencies.csv"),
        "precision,seed,frequency,key,embedding_norm,embedding_energy_fraction,neurons,\
         logits_explained,clock_score,pizza_score,pattern\n\
         fp32,0,1,k0,1.500e0,0.1000,3,0.0500,0.8750,0.7500,clock\n\
         fp32,0,3,k0,4.500e0,0.3000,3,0.1500,,,\n\
         ternary,0,2,k1,3.000e0,0.2000,3,0.1000,,,\n\
         ternary,0,3,k1,4.500e0,0.3000,3,0.1500,,,\n\
         binary,0,3,k2,4.500e0,0.3000,3,0.1500,,,\n"
    );
}

#[test]
fn compare_pairs_precisions_within_groups() {
    let tmp = tempfile::tempdir().unwrap();
    let (axes, cells) = tree(tmp.path());
    let out = tmp.path().join("out");
    aggregate(tmp.path(), &axes, &cells, &out).unwrap();
    // Seed 0: fp32 {1,3}, ternary {2,3}, binary {3} (not generalised: no
    // same_label), int4 unanalysed.
    // Seed 1: fp32 missing, ternary failed, binary partial.
    assert_eq!(
        read(&out, "compare.csv"),
        "seed,precision_a,precision_b,key_frequency_jaccard,diff_n_key_frequencies,\
         diff_restricted_ratio,diff_step_generalised,diff_step_circuit_start,\
         diff_gradient_symmetricity,same_label\n\
         0,fp32,ternary,0.3333,0,0.2500,100,,0.5000,no\n\
         0,fp32,binary,0.5000,-1,0.0000,,,0.0000,\n\
         0,fp32,int4,,,,,,,\n\
         0,ternary,binary,0.5000,-1,-0.2500,,,-0.5000,\n\
         0,ternary,int4,,,,,,,\n\
         0,binary,int4,,,,,,,\n\
         1,fp32,ternary,,,,,,,\n\
         1,fp32,binary,,,,,,,\n\
         1,ternary,binary,,,,,,,\n"
    );
}

#[test]
fn summary_groups_by_precision() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // Three fp32 seeds and one ternary, to check medians and spreads.
    done_cell(root, "a", &planted(&[1, 3], 1.0, Some(300), Label::Clock));
    done_cell(root, "b", &planted(&[1], 0.9, Some(500), Label::Pizza));
    done_cell(root, "c", &planted(&[1, 2, 3], 0.995, None, Label::Clock));
    done_cell(
        root,
        "d",
        &planted(&[2], 0.2, Some(1000), Label::NotGeneralised),
    );
    done_cell(
        root,
        "e",
        &planted(&[2, 3], 0.4, Some(1001), Label::NotGeneralised),
    );
    let axes = vec!["precision".to_string(), "seed".to_string()];
    let cells = vec![
        cell("fp32", "0", "a"),
        cell("fp32", "1", "b"),
        cell("fp32", "2", "c"),
        cell("fp32", "3", "missing"),
        cell("ternary", "0", "d"),
        cell("ternary", "1", "e"),
    ];
    let out = root.join("out");
    aggregate(root, &axes, &cells, &out).unwrap();
    let text = read(&out, "summary.csv");
    let mut csv = csv::Reader::from_reader(text.as_bytes());
    let h = csv.headers().unwrap().clone();
    assert_eq!(&h[0], "precision");
    assert_eq!(&h[h.len() - 6], "clock_share");
    assert_eq!(&h[h.len() - 1], "not_generalised_share");
    let rows: Vec<csv::StringRecord> = csv.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 2);
    let get = |r: &csv::StringRecord, name: &str| {
        r[h.iter().position(|c| c == name).unwrap()].to_string()
    };
    let fp = &rows[0];
    assert_eq!(get(fp, "precision"), "fp32");
    assert_eq!(get(fp, "cells"), "4");
    assert_eq!(get(fp, "done"), "3");
    assert_eq!(get(fp, "analysed"), "3");
    assert_eq!(get(fp, "grokked_share"), "0.6667");
    assert_eq!(get(fp, "test_acc_median"), "0.9950");
    assert_eq!(get(fp, "test_acc_min"), "0.9000");
    assert_eq!(get(fp, "test_acc_max"), "1.0000");
    assert_eq!(get(fp, "n_key_frequencies_median"), "2");
    assert_eq!(get(fp, "step_generalised_median"), "400");
    assert_eq!(get(fp, "step_generalised_min"), "300");
    assert_eq!(get(fp, "distance_irrelevance_median"), "");
    assert_eq!(get(fp, "clock_share"), "0.6667");
    assert_eq!(get(fp, "pizza_share"), "0.3333");
    assert_eq!(get(fp, "not_generalised_share"), "0.0000");
    assert_eq!(get(fp, "attention_tv_median"), "0.2500");
    let t = &rows[1];
    assert_eq!(get(t, "precision"), "ternary");
    assert_eq!(get(t, "n_key_frequencies_median"), "1.5");
    assert_eq!(get(t, "step_generalised_median"), "1000.5");
    assert_eq!(get(t, "step_generalised_max"), "1001");
    assert_eq!(get(t, "test_acc_median"), "0.3000");
    assert_eq!(get(t, "clock_share"), "0.0000");
    assert_eq!(get(t, "not_generalised_share"), "1.0000");
}

#[test]
fn summary_splits_every_setting_but_the_seed() {
    // Binary with and without the beta scale are both `precision = binary`: one
    // summary row each, not one row for both.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    done_cell(root, "a", &planted(&[1], 1.0, Some(300), Label::Clock));
    done_cell(root, "b", &planted(&[1], 1.0, Some(500), Label::Clock));
    done_cell(root, "c", &planted(&[2], 1.0, Some(700), Label::Pizza));
    let axes: Vec<String> = ["precision", "quant.binary_scale", "seed"]
        .map(String::from)
        .to_vec();
    let at = |scale: &str, seed: &str, key: &str| SweepCell {
        axes: vec![
            ("precision".into(), "binary".into()),
            ("quant.binary_scale".into(), scale.into()),
            ("seed".into(), seed.into()),
        ],
        key: key.into(),
        analysis_key: AKEY.into(),
    };
    let cells = vec![
        at("false", "0", "a"),
        at("false", "1", "b"),
        at("true", "0", "c"),
    ];
    let out = root.join("out");
    aggregate(root, &axes, &cells, &out).unwrap();
    let text = read(&out, "summary.csv");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("precision,quant.binary_scale,cells,"));
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[1].starts_with("binary,false,2,2,2,"), "{text}");
    assert!(lines[2].starts_with("binary,true,1,1,1,"), "{text}");
}

#[test]
fn running_twice_gives_identical_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let (axes, cells) = tree(tmp.path());
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    aggregate(tmp.path(), &axes, &cells, &a).unwrap();
    aggregate(tmp.path(), &axes, &cells, &b).unwrap();
    aggregate(tmp.path(), &axes, &cells, &b).unwrap();
    let tables = [
        "cells.csv",
        "frequencies.csv",
        "compare.csv",
        "overlap.csv",
        "summary.csv",
        "progress.csv",
    ];
    for name in tables {
        assert_eq!(read(&a, name), read(&b, name), "{name}");
    }
    // No temporary files are left behind.
    let names: Vec<String> = std::fs::read_dir(&b)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), tables.len(), "{names:?}");
}

#[test]
fn no_precision_axis_gives_compare_header_only_and_one_summary_row() {
    let tmp = tempfile::tempdir().unwrap();
    done_cell(
        tmp.path(),
        "a",
        &planted(&[1], 1.0, Some(300), Label::Clock),
    );
    let axes = vec!["seed".to_string()];
    let cells = vec![SweepCell {
        axes: vec![("seed".into(), "0".into())],
        key: "a".into(),
        analysis_key: AKEY.into(),
    }];
    let out = tmp.path().join("out");
    aggregate(tmp.path(), &axes, &cells, &out).unwrap();
    assert_eq!(
        read(&out, "compare.csv"),
        "seed,precision_a,precision_b,key_frequency_jaccard,diff_n_key_frequencies,\
         diff_restricted_ratio,diff_step_generalised,diff_step_circuit_start,\
         diff_gradient_symmetricity,same_label\n"
    );
    // One cell has no pair to overlap with.
    assert_eq!(read(&out, "overlap.csv").lines().count(), 1);
    let summary = read(&out, "summary.csv");
    assert_eq!(summary.lines().count(), 2);
    assert!(summary.starts_with("cells,done,analysed,grokked_share,"));
    assert!(summary.lines().nth(1).unwrap().starts_with("1,1,1,1.0000,"));
}

#[test]
fn unreadable_manifests_count_as_missing_and_bad_signatures_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("cells/a/manifest.json"), "{not json");
    let axes = vec!["seed".to_string()];
    let cells = vec![SweepCell {
        axes: vec![("seed".into(), "0".into())],
        key: "a".into(),
        analysis_key: AKEY.into(),
    }];
    let out = tmp.path().join("out");
    aggregate(tmp.path(), &axes, &cells, &out).unwrap();
    let rows = read(&out, "cells.csv");
    assert!(
        rows.lines().nth(1).unwrap().starts_with("0,a,missing,"),
        "{rows}"
    );

    done_manifest(tmp.path(), "a", 1.0);
    analysis(tmp.path(), "a", AKEY, r#"{"modulus": 7}"#);
    let err = format!(
        "{:#}",
        aggregate(tmp.path(), &axes, &cells, &out).unwrap_err()
    );
    assert!(err.contains("signature.json"), "{err}");
    assert!(err.contains("not a valid signature"), "{err}");

    // An altered signature no longer matches its analysis manifest: unanalysed.
    let sig = tmp
        .path()
        .join("cells/a/analysis")
        .join(AKEY)
        .join("signature.json");
    std::fs::write(&sig, r#"{"modulus": 8}"#).unwrap();
    aggregate(tmp.path(), &axes, &cells, &out).unwrap();
    let rows = read(&out, "cells.csv");
    assert!(
        rows.lines().nth(1).unwrap().starts_with("0,a,unanalysed,"),
        "{rows}"
    );
}

#[test]
fn jaccard_and_median() {
    assert_eq!(jaccard(&[1, 2], &[2, 3]), Some(1.0 / 3.0));
    assert_eq!(jaccard(&[], &[]), None);
    assert_eq!(jaccard(&[4], &[]), Some(0.0));
    assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
    assert_eq!(median(&mut []), None);
}

#[test]
fn grid_cells_with_entry_settings_get_extra_identity_columns() {
    let text = r#"
name = "t"
[grid]
precision = ["fp32", "binary"]
seed = [0]
[[cells]]
precision = "ternary"
"train.lr" = 0.003
"#;
    let sweep = bitgrok::sweep::load_str(Path::new("t.toml"), text).unwrap();
    let grid = bitgrok::sweep::grid::expand(&sweep);
    let cells: Vec<SweepCell> = grid.iter().map(SweepCell::from).collect();
    assert_eq!(cells.len(), 3);
    assert_eq!(cells[0].key, bitgrok::key::cell_key(&grid[0].config));
    let tmp = tempfile::tempdir().unwrap();
    done_cell(
        tmp.path(),
        &cells[0].key,
        &planted(&[1], 1.0, Some(1), Label::Clock),
    );
    // The signature lives under the sweep's analysis key, not the test's "a1".
    let adir = tmp
        .path()
        .join("cells")
        .join(&cells[0].key)
        .join("analysis");
    std::fs::rename(adir.join(AKEY), adir.join(&cells[0].analysis_key)).unwrap();
    let out = tmp.path().join("out");
    let axes = bitgrok::sweep::grid::axis_names(&sweep);
    aggregate(tmp.path(), &axes, &cells, &out).unwrap();
    let table = read(&out, "cells.csv");
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split(',').take(5).collect())
        .collect();
    assert_eq!(rows[0], ["precision", "seed", "train.lr", "key", "status"]);
    // Cells that do not name train.lr show the value they have.
    assert_eq!(rows[1][..3], ["fp32", "0", "0.001"]);
    assert_eq!(rows[1][4], "done");
    assert_eq!(rows[2][..3], ["binary", "0", "0.001"]);
    assert_eq!(rows[3][..3], ["ternary", "0", "0.003"]);
    assert_eq!(rows[3][4], "missing");
    // Compare groups by seed and train.lr: the ternary cell has its own group.
    let compare = read(&out, "compare.csv");
    assert_eq!(
        compare.lines().skip(1).collect::<Vec<_>>(),
        ["0,0.001,fp32,binary,,,,,,,"]
    );
}

#[test]
fn rows_keep_grid_order_with_many_cells() {
    // Enough cells to be read on several threads.
    let tmp = tempfile::tempdir().unwrap();
    let mut cells = Vec::new();
    for i in 0..300 {
        let key = format!("c{i:03}");
        if i % 3 != 0 {
            done_cell(
                tmp.path(),
                &key,
                &planted(&[1 + i % 3], 1.0, Some(i as u64), Label::Clock),
            );
        }
        cells.push(cell(["fp32", "binary"][i % 2], &i.to_string(), &key));
    }
    let axes = vec!["precision".to_string(), "seed".to_string()];
    let out = tmp.path().join("out");
    let report = aggregate(tmp.path(), &axes, &cells, &out).unwrap();
    assert_eq!((report.done, report.missing), (200, 100));
    let table = read(&out, "cells.csv");
    for (i, line) in table.lines().skip(1).enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f[1], i.to_string());
        assert_eq!(f[3], if i % 3 == 0 { "missing" } else { "done" });
        if i % 3 != 0 {
            assert_eq!(f[10], i.to_string(), "step_generalised of row {i}");
        }
    }
}

/// README names every column of every table the aggregator writes, in the table's
/// row of "Output tables" (progress.csv: in "Progress measures", eq_update.csv in
/// "The `=` embedding's updates"; a summary statistic `<m>_median` by its measure
/// `m`). The column lists in
/// src/report/aggregate/columns.rs are the one source.
#[test]
fn readme_lists_every_column() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = |title: &str| -> String {
        let s = &readme[readme.find(title).unwrap()..];
        s[..s[3..].find("\n## ").unwrap() + 3].to_string()
    };
    let output_tables = section("## Output tables");
    let progress = section("## Progress measures");
    let eq_update = section("## The `=` embedding's updates");
    let tables = bitgrok::report::aggregate::table_columns();
    assert_eq!(tables.len(), 7);
    let mut missing = Vec::new();
    for (file, columns) in tables {
        let text = if file == "progress.csv" {
            progress.clone()
        } else if file == "eq_update.csv" {
            eq_update.clone() + &output_tables
        } else {
            let row = output_tables
                .lines()
                .find(|l| l.starts_with(&format!("| `{file}`")))
                .unwrap_or_else(|| panic!("README's Output tables has no row for {file}"));
            row.to_string()
        };
        for c in columns {
            let stem = ["_median", "_min", "_max"]
                .iter()
                .find_map(|s| c.strip_suffix(s))
                .filter(|_| file == "summary.csv")
                .unwrap_or(&c);
            if !text.contains(&format!("`{stem}`")) {
                missing.push(format!("{file}: {c}"));
            }
        }
    }
    assert!(missing.is_empty(), "README lacks {missing:?}");
}

#[test]
fn overlap_compares_frequency_sets_within_and_across_seeds() {
    // Two precisions × three seeds; modulus 7 has frequencies 1..=3.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let keys = [
        ("fp32", "0", "f0", vec![1, 2]),
        ("fp32", "1", "f1", vec![1, 2]),
        ("fp32", "2", "f2", vec![3]),
        ("binary", "0", "b0", vec![1]),
        ("binary", "1", "b1", vec![2, 3]),
        ("binary", "2", "b2", vec![]),
    ];
    let mut cells = Vec::new();
    for (precision, seed, key, freqs) in &keys {
        done_cell(root, key, &planted(freqs, 1.0, Some(300), Label::Clock));
        cells.push(cell(precision, seed, key));
    }
    let axes = vec!["precision".to_string(), "seed".to_string()];
    let out = root.join("out");
    aggregate(root, &axes, &cells, &out).unwrap();
    let table = read(&out, "overlap.csv");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0],
        "precision_a,precision_b,seeds,pairs,key_frequency_jaccard_median,\
         key_frequency_jaccard_min,key_frequency_jaccard_max,chance_jaccard_mean"
    );
    let row = |a: &str, b: &str, seeds: &str| -> Vec<String> {
        let prefix = format!("{a},{b},{seeds},");
        let line = lines
            .iter()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no row {prefix} in\n{table}"));
        line.split(',').skip(3).map(String::from).collect()
    };
    // fp32 with itself, different seeds: {12,12}=1, {12,3}=0, {12,3}=0.
    let fp = row("fp32", "fp32", "different");
    assert_eq!(fp[..4], ["3", "0.0000", "0.0000", "1.0000"]);
    // Chance: the mean over the pairs' sizes (2,2), (2,1), (2,1) (chance_jaccard
    // itself is checked against enumeration in its unit test).
    let mean = (bitgrok::report::aggregate::chance_jaccard(3, 2, 2).unwrap()
        + 2.0 * bitgrok::report::aggregate::chance_jaccard(3, 2, 1).unwrap())
        / 3.0;
    assert_eq!(fp[4], format!("{mean:.4}"));
    // fp32 against binary, same seed: {12,1}=0.5, {12,23}=1/3, {3,∅}=0.
    assert_eq!(
        row("fp32", "binary", "same")[..4],
        ["3", "0.3333", "0.0000", "0.5000"]
    );
    // Different seeds: six pairs.
    assert_eq!(row("fp32", "binary", "different")[0], "6");
    // No same-seed row of a variant with itself.
    assert!(!table.contains("fp32,fp32,same"));
    // binary with itself: {1,23}=0, {1,∅}=0, {23,∅}=0.
    assert_eq!(
        row("binary", "binary", "different")[..4],
        ["3", "0.0000", "0.0000", "0.0000"]
    );
}

#[test]
fn compare_pairs_quantizer_variants_with_the_other_precisions() {
    // A quantizer ablation: fp32, ±1 binary and β-scaled binary (a `[[cells]]`
    // entry setting quant.binary_scale) of one seed are one group of three variants.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    done_cell(root, "f", &planted(&[1, 3], 1.0, Some(300), Label::Clock));
    done_cell(root, "b", &planted(&[3], 1.0, Some(500), Label::Clock));
    done_cell(root, "s", &planted(&[1], 1.0, Some(400), Label::Pizza));
    let with = |precision: &str, scale: Option<&str>, key: &str| {
        let mut c = cell(precision, "0", key);
        if let Some(v) = scale {
            c.axes.push(("quant.binary_scale".into(), v.into()));
        }
        c
    };
    let cells = vec![
        with("fp32", None, "f"),
        with("binary", None, "b"),
        with("binary", Some("true"), "s"),
    ];
    let axes = vec!["seed".to_string()];
    let out = root.join("out");
    aggregate(root, &axes, &cells, &out).unwrap();
    let table = read(&out, "compare.csv");
    let pairs: Vec<String> = table
        .lines()
        .skip(1)
        .map(|l| l.split(',').take(3).collect::<Vec<_>>().join(","))
        .collect();
    assert_eq!(
        pairs,
        [
            "0,fp32,binary",
            "0,fp32,binary quant.binary_scale=true",
            "0,binary,binary quant.binary_scale=true",
        ],
        "{table}"
    );
    assert!(table
        .lines()
        .next()
        .unwrap()
        .starts_with("seed,precision_a"));
}
