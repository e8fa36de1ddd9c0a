//! Parsing and validation of sweep files.

use bitgrok::config::{Arch, CellConfig, Precision};
use bitgrok::sweep::grid;
use bitgrok::sweep::settings;
use bitgrok::sweep::spec::{Problem, SpecError};
use std::path::Path;

const FILE: &str = "sweeps/test.toml";

fn parse(text: &str) -> Result<bitgrok::sweep::spec::Sweep, SpecError> {
    bitgrok::sweep::load_str(Path::new(FILE), text)
}

fn problems(text: &str) -> Vec<Problem> {
    match parse(text) {
        Ok(_) => panic!("expected problems in:\n{text}"),
        Err(e) => e.problems,
    }
}

/// Exactly one problem; it names the file and `key`, points at `line`, and its text
/// contains every one of `words`.
fn one_problem(text: &str, key: &str, line: usize, words: &[&str]) -> String {
    let ps = problems(text);
    assert_eq!(ps.len(), 1, "expected one problem, got {ps:#?}");
    let p = &ps[0];
    let shown = p.to_string();
    assert_eq!(p.key, key, "{shown}");
    assert!(shown.starts_with(&format!("{FILE}:{line}:")), "{shown}");
    assert!(shown.contains(&format!(": {key}: ")), "{shown}");
    for w in words {
        assert!(shown.contains(w), "{shown:?} lacks {w:?}");
    }
    shown
}

#[test]
fn shipped_sweeps_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let paper = bitgrok::sweep::load(&root.join("sweeps/paper.toml")).expect("paper.toml is valid");
    let cells = grid::expand(&paper);
    assert_eq!(cells.len(), 15);
    for c in &cells {
        assert_eq!(c.config.modulus, 113);
        assert_eq!(c.config.width, 128);
        assert_eq!(c.config.train.steps, 10_000);
        assert_eq!(c.config.model.arch, Arch::Li2024);
        assert!(!c.config.quant.binary_scale);
        assert!(c.config.quant.ternary_center);
    }
    let precisions: Vec<Precision> = cells.iter().map(|c| c.config.precision).collect();
    assert_eq!(
        precisions
            .iter()
            .filter(|p| **p == Precision::Binary)
            .count(),
        5
    );

    let smoke = bitgrok::sweep::load(&root.join("sweeps/smoke.toml")).expect("smoke.toml is valid");
    let cells = grid::expand(&smoke);
    assert_eq!(cells.len(), 6);
    // CI trains it at about 2 ms per step: keep it to seconds.
    let steps: u64 = cells.iter().map(|c| c.config.train.steps).sum();
    assert!(steps <= 6 * 3000, "smoke sweep must stay small");
    assert!(cells
        .iter()
        .all(|c| c.config.modulus <= 31 && c.config.width <= 64));
}

#[test]
fn good_file_resolves_every_form_of_setting() {
    let s = parse(
        r#"
name = "good"
description = "all forms"
seed = 7
[grid]
"train.lr" = [1e-3, 3e-3]
quant.act_bits = [0, 8]
[model]
heads = 8
[train]
steps = 500
weight_decay = 1      # integer where a float is expected
eval_every = 50
[analysis]
fve_threshold = 0.9
"#,
    )
    .unwrap();
    assert_eq!(s.name, "good");
    assert_eq!(s.description, "all forms");
    let keys: Vec<_> = s.axes.iter().map(|a| a.key.as_str()).collect();
    assert_eq!(keys, ["train.lr", "quant.act_bits"]);
    let cells = grid::expand(&s);
    assert_eq!(cells.len(), 4);
    let c = &cells[3].config;
    assert_eq!(c.seed, 7);
    assert_eq!(c.model.heads, 8);
    assert_eq!(c.train.weight_decay, 1.0);
    assert_eq!(c.train.lr, 3e-3);
    assert_eq!(c.quant.act_bits, 8);
    assert_eq!(cells[0].analysis.fve_threshold, 0.9);
    // Unset settings keep their defaults.
    assert_eq!(c.train.betas, CellConfig::default().train.betas);
}

#[test]
fn settings_are_derived_from_config() {
    let keys: Vec<&str> = settings::settings()
        .iter()
        .map(|s| s.key.as_str())
        .collect();
    for k in [
        "precision",
        "modulus",
        "width",
        "seed",
        "model.arch",
        "quant.binary_scale",
        "train.betas",
        "train.checkpoint_every",
        "analysis.fve_threshold",
    ] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
    assert_eq!(
        settings::sections(),
        ["model", "quant", "train", "analysis"]
    );
}

#[test]
fn toml_syntax_error() {
    let ps = problems("name = \"x\"\n[grid]\nseed = [1, 2\n");
    assert_eq!(ps.len(), 1);
    assert!(
        ps[0].to_string().starts_with(&format!("{FILE}:")),
        "{}",
        ps[0]
    );
    assert!(ps[0].message.contains("not valid TOML"));
}

#[test]
fn missing_name() {
    one_problem(
        "[train]\nsteps = 10\neval_every = 5\n",
        "name",
        1,
        &["missing"],
    );
}

#[test]
fn unknown_top_level_key_suggests() {
    one_problem(
        "name = \"x\"\ndescripton = \"y\"\n",
        "descripton",
        2,
        &["unknown key", "did you mean `description`?"],
    );
}

#[test]
fn unknown_setting_in_section_suggests() {
    one_problem(
        "name = \"x\"\n[train]\nstepz = 10\n",
        "train.stepz",
        3,
        &[
            "unknown setting",
            "did you mean `train.steps`?",
            "allowed in [train]:",
            "lr",
        ],
    );
}

#[test]
fn setting_in_wrong_section_suggests_right_one() {
    one_problem(
        "name = \"x\"\n[model]\nlr = 0.01\n",
        "model.lr",
        3,
        &["did you mean `train.lr`?"],
    );
}

#[test]
fn unknown_axis_suggests() {
    one_problem(
        "name = \"x\"\n[grid]\n\"train.lrr\" = [1e-3]\n",
        "grid.train.lrr",
        3,
        &["did you mean `train.lr`?"],
    );
}

#[test]
fn wrong_type() {
    one_problem(
        "name = \"x\"\n[train]\nweight_decay = \"big\"\n",
        "train.weight_decay",
        3,
        &["expected a number", "found a string"],
    );
    one_problem(
        "name = \"x\"\n[quant]\nbinary_scale = 1\n",
        "quant.binary_scale",
        3,
        &["expected true or false"],
    );
    one_problem(
        "name = \"x\"\n[train]\nsteps = 10.5\n",
        "train.steps",
        3,
        &["expected an integer", "found a float"],
    );
    one_problem(
        "name = \"x\"\n[train]\nbetas = [0.9]\n",
        "train.betas",
        3,
        &["array of 2"],
    );
}

#[test]
fn integer_accepted_for_float() {
    let s = parse("name = \"x\"\n[train]\nlr = 1\nbetas = [0, 0]\n").unwrap();
    let c = &grid::expand(&s)[0].config;
    assert_eq!(c.train.lr, 1.0);
    assert_eq!(c.train.betas, [0.0, 0.0]);
}

#[test]
fn array_as_fixed_value_hints_at_grid() {
    one_problem(
        "name = \"x\"\n[train]\nlr = [1e-3, 3e-3]\n",
        "train.lr",
        3,
        &["[grid] axis"],
    );
}

#[test]
fn empty_axis() {
    one_problem(
        "name = \"x\"\n[grid]\nseed = []\n",
        "grid.seed",
        3,
        &["empty axis"],
    );
}

#[test]
fn scalar_axis() {
    one_problem(
        "name = \"x\"\n[grid]\nmodulus = 23\n",
        "grid.modulus",
        3,
        &["must be an array", "before [grid]"],
    );
}

#[test]
fn duplicate_axis_values() {
    // 1e-3 and 0.001 are the same value.
    one_problem(
        "name = \"x\"\n[grid]\n\"train.lr\" = [1e-3, 0.001]\n",
        "grid.train.lr",
        3,
        &["duplicate axis value 0.001", "first at 3:15"],
    );
}

#[test]
fn fixed_and_axis() {
    one_problem(
        "name = \"x\"\n[grid]\n\"train.lr\" = [1e-3, 3e-3]\n[train]\nlr = 1e-3\n",
        "grid.train.lr",
        3,
        &["both a fixed setting at 5:1 and a grid axis"],
    );
}

#[test]
fn modulus_too_small() {
    one_problem(
        "name = \"x\"\n[grid]\nmodulus = [2, 113]\n",
        "grid.modulus",
        3,
        &["2 is too small", "integer >= 3"],
    );
}

#[test]
fn width_not_divisible_by_heads() {
    one_problem(
        "name = \"x\"\nwidth = 30\n",
        "width",
        2,
        &["not divisible by model.heads = 4"],
    );
    // Blamed on heads when width is the default.
    one_problem(
        "name = \"x\"\n[model]\nheads = 5\n",
        "model.heads",
        3,
        &["width 128 is not divisible by model.heads = 5"],
    );
}

#[test]
fn train_fraction_outside_unit_interval() {
    for v in ["0", "1", "1.5", "-0.1"] {
        one_problem(
            &format!("name = \"x\"\n[train]\ntrain_fraction = {v}\n"),
            "train.train_fraction",
            3,
            &["outside (0, 1)"],
        );
    }
}

#[test]
fn unknown_precision_lists_allowed() {
    one_problem(
        "name = \"x\"\n[grid]\nprecision = [\"fp32\", \"fp16\"]\n",
        "grid.precision",
        3,
        &["\"fp16\"", "allowed: fp32, ternary, binary, int8"],
    );
}

#[test]
fn unknown_arch_lists_allowed() {
    one_problem(
        "name = \"x\"\n[model]\narch = \"gpt\"\n",
        "model.arch",
        3,
        &["li2024", "nanda2023"],
    );
}

#[test]
fn steps_zero() {
    one_problem(
        "name = \"x\"\n[train]\nsteps = 0\n",
        "train.steps",
        3,
        &["0 is not allowed", "allowed: an integer >= 1"],
    );
}

#[test]
fn eval_every_greater_than_steps() {
    one_problem(
        "name = \"x\"\n[train]\nsteps = 100\neval_every = 200\n",
        "train.eval_every",
        4,
        &["greater than train.steps = 100"],
    );
}

#[test]
fn values_that_would_crash_training() {
    let cases = [
        ("[model]\nheads = 0", "model.heads"),
        ("[model]\nheads = -1", "model.heads"),
        ("[model]\nmlp_ratio = 0", "model.mlp_ratio"),
        ("[train]\nlr = 0", "train.lr"),
        ("[train]\nlr = -1e-3", "train.lr"),
        ("[train]\nbetas = [0.9, 1.0]", "train.betas"),
        ("[train]\nbetas = [-0.1, 0.9]", "train.betas"),
        ("[train]\neps = 0", "train.eps"),
        ("[train]\nweight_decay = -1", "train.weight_decay"),
        ("[train]\neval_every = 0", "train.eval_every"),
        ("[train]\ncheckpoint_every = 0", "train.checkpoint_every"),
        ("[train]\ngrokfast_alpha = 1.0", "train.grokfast_alpha"),
        ("[train]\nlr = nan", "train.lr"),
        ("[quant]\neps = 0", "quant.eps"),
        ("[quant]\nact_bits = 1", "quant.act_bits"),
        ("[analysis]\nfve_threshold = 0", "analysis.fve_threshold"),
        (
            "[analysis]\nsymmetricity_triples = 0",
            "analysis.symmetricity_triples",
        ),
        ("width = 0", "width"),
    ];
    for (body, key) in cases {
        let text = format!("name = \"x\"\n{body}\n");
        let ps = problems(&text);
        assert!(
            ps.iter()
                .any(|p| p.key == key && p.to_string().starts_with(FILE)),
            "{body:?}: {ps:#?}"
        );
        assert!(
            ps.iter()
                .all(|p| p.message.contains("allowed") || p.message.contains("expected")),
            "{ps:#?}"
        );
    }
}

#[test]
fn bad_cells_entries() {
    one_problem(
        "name = \"x\"\n[[cells]]\nprecision = \"int4\"\n\"train.lr\" = [1, 2]\n",
        "cells[0].train.lr",
        4,
        &["one value per setting"],
    );
    one_problem(
        "name = \"x\"\n[[cells]]\nprecison = \"int4\"\n",
        "cells[0].precison",
        3,
        &["did you mean `precision`?"],
    );
    one_problem(
        "name = \"x\"\n[[cells]]\nmodulus = 1\n",
        "cells[0].modulus",
        3,
        &["too small"],
    );
}

#[test]
fn all_problems_reported_at_once() {
    let text = r#"name = "x"
descripton = "typo"
[grid]
precision = ["fp32", "int9"]
modulus = [2, 113]
seed = []
width = [30]
[model]
mlp_ratio = 0
[train]
stepz = 100
train_fraction = 1.5
weight_decay = "big"
[[cells]]
"train.lr" = [1, 2]
"#;
    let ps = problems(text);
    let keys: Vec<&str> = ps.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "descripton",
            "grid.precision",
            "grid.modulus",
            "grid.seed",
            "grid.width",
            "model.mlp_ratio",
            "train.stepz",
            "train.train_fraction",
            "train.weight_decay",
            "cells[0].train.lr",
        ],
        "{ps:#?}"
    );
    let lines: Vec<usize> = ps.iter().map(|p| p.location.unwrap().line).collect();
    assert_eq!(lines, [2, 4, 5, 6, 7, 9, 11, 12, 13, 15]);
    // The error's text has one line per problem.
    let e = parse(text).unwrap_err();
    assert_eq!(e.to_string().lines().count(), ps.len());
}

#[test]
fn problems_of_one_setting_in_many_cells_are_reported_once() {
    let ps = problems("name = \"x\"\n[grid]\nseed = [0, 1, 2, 3]\n[train]\nsteps = 0\n");
    assert_eq!(ps.len(), 1, "{ps:#?}");
}

/// The README's settings table lists every setting with its default, and its example
/// sweep file is valid.
#[test]
fn readme_documents_every_setting() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for s in settings::settings() {
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", s.key)))
            .unwrap_or_else(|| panic!("README lacks a row for {}", s.key));
        let default = format!("`{}`", settings::value_text(&s.default));
        assert!(
            row.contains(&default),
            "README row of {} lacks default {default}",
            s.key
        );
    }
    let example = readme
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a toml example");
    let sweep = parse(example).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(grid::expand(&sweep).len(), 8);
}

/// The quantizer settings that contradict each other are refused, each naming why.
#[test]
fn contradicting_quantizer_settings_are_refused() {
    one_problem(
        "name = \"x\"\nprecision = \"binary\"\n[quant]\nscale = \"none\"\n",
        "quant.scale",
        4,
        &["binary_scale = false"],
    );
    let ps = problems(
        "name = \"x\"\nprecision = \"binary\"\n[quant]\nbinary_scale = false\nscale = \"initial\"\n",
    );
    assert!(ps[0].to_string().contains("removes"), "{}", ps[0]);
    let ps =
        problems("name = \"x\"\nprecision = \"int4\"\n[quant]\nact_bits = 8\nmatrices = \"qk\"\n");
    assert!(ps[0].to_string().contains("not supported"), "{}", ps[0]);
    // Each alone is fine, as is fp32 with any of them (it reads none).
    for ok in [
        "name = \"x\"\nprecision = \"ternary\"\n[quant]\nscale = \"none\"\n",
        "name = \"x\"\nprecision = \"binary\"\n[quant]\nscale = \"initial\"\n",
        "name = \"x\"\nprecision = \"binary\"\n[quant]\nmatrices = \"all-but-qk\"\n",
    ] {
        assert!(parse(ok).is_ok(), "{ok}");
    }
}
