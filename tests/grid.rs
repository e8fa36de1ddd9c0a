//! Grid expansion order, [[cells]] and deduplication.

use bitgrok::sweep::grid::{self, Cell};

use std::path::Path;

fn cells(text: &str) -> Vec<Cell> {
    let s = bitgrok::sweep::load_str(Path::new("g.toml"), text).unwrap_or_else(|e| panic!("{e}"));
    grid::expand(&s)
}

fn shown(cells: &[Cell]) -> Vec<String> {
    cells
        .iter()
        .map(|c| {
            c.axes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[test]
fn axes_in_file_order_last_fastest() {
    let c = cells(
        r#"name = "g"
[grid]
seed = [1, 0]
precision = ["binary", "fp32"]
"train.lr" = [1e-3, 3e-3]
"#,
    );
    assert_eq!(
        shown(&c),
        [
            "seed=1 precision=binary train.lr=0.001",
            "seed=1 precision=binary train.lr=0.003",
            "seed=1 precision=fp32 train.lr=0.001",
            "seed=1 precision=fp32 train.lr=0.003",
            "seed=0 precision=binary train.lr=0.001",
            "seed=0 precision=binary train.lr=0.003",
            "seed=0 precision=fp32 train.lr=0.001",
            "seed=0 precision=fp32 train.lr=0.003",
        ]
    );
    assert_eq!(c[5].config.seed, 0);
    assert_eq!(c[5].config.train.lr, 3e-3);
}

#[test]
fn dotted_axis_in_a_sub_table_keeps_file_order() {
    let c =
        cells("name = \"g\"\n[grid]\nseed = [0, 1]\ntrain.lr = [1e-3, 3e-3]\nwidth = [32, 64]\n");
    let order: Vec<&str> = c[0].axes.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(order, ["seed", "train.lr", "width"]);
    assert_eq!(c.len(), 8);
}

#[test]
fn no_grid_is_one_cell_of_defaults_and_fixed_settings() {
    let c = cells("name = \"g\"\nmodulus = 31\n");
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].config.modulus, 31);
    assert!(c[0].axes.is_empty());
}

#[test]
fn cells_vary_over_axes_they_do_not_name() {
    let c = cells(
        r#"name = "g"
[grid]
precision = ["fp32", "binary"]
seed = [0, 1]
[train]
lr = 1e-3
[[cells]]
precision = "int4"
"train.lr" = 3e-3
[[cells]]
precision = "ternary"
seed = 5
"#,
    );
    assert_eq!(
        shown(&c),
        [
            // A setting one entry names is shown, with its value, in every cell.
            "precision=fp32 seed=0 train.lr=0.001",
            "precision=fp32 seed=1 train.lr=0.001",
            "precision=binary seed=0 train.lr=0.001",
            "precision=binary seed=1 train.lr=0.001",
            "precision=int4 seed=0 train.lr=0.003",
            "precision=int4 seed=1 train.lr=0.003",
            "precision=ternary seed=5 train.lr=0.001",
        ]
    );
    assert_eq!(c[4].config.train.lr, 3e-3);
    assert_eq!(c[6].config.train.lr, 1e-3);
}

#[test]
fn cells_in_section_form() {
    let c = cells(
        "name = \"g\"\n[[cells]]\nprecision = \"int8\"\n[cells.train]\nsteps = 300\neval_every = 30\n",
    );
    assert_eq!(c.len(), 1, "only the explicit cells without a [grid]");
    assert_eq!(c[0].config.train.steps, 300);
    assert_eq!(
        shown(&c),
        ["precision=int8 train.steps=300 train.eval_every=30"]
    );
}

#[test]
fn identical_cells_are_deduplicated() {
    let c = cells(
        r#"name = "g"
[grid]
precision = ["fp32", "binary"]
[[cells]]
precision = "binary"
[[cells]]
precision = "int2"
"#,
    );
    assert_eq!(
        shown(&c),
        ["precision=fp32", "precision=binary", "precision=int2"]
    );
}

#[test]
fn every_cell_is_fully_resolved() {
    let c = cells("name = \"g\"\n[grid]\nwidth = [64]\n");
    let text = bitgrok::key::cell_toml(&c[0].config);
    let back: bitgrok::config::CellConfig = toml::from_str(&text).unwrap();
    assert_eq!(back.width, 64);
    assert_eq!(back.train, bitgrok::config::TrainConfig::default());
}
