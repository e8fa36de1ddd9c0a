//! The HTML report of the smoke sweep: every file parses as XML, is self-contained,
//! and every figure draws the data of the cells it is about.

use bitgrok::analysis::forward::{attention_all, attention_scale, input_vector};
use bitgrok::config::Arch;
use bitgrok::engine::weights::{Mat, ModelWeights};
use rand::{Rng, SeedableRng};
use std::path::Path;

mod common;
use common::{bitgrok, text};

fn parse_xml(path: &Path) -> String {
    let body = std::fs::read_to_string(path).unwrap();
    let opts = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    if let Err(e) = roxmltree::Document::parse_with_options(&body, opts) {
        panic!("{} is not well-formed XML: {e}", path.display());
    }
    body
}

fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

/// Nothing is fetched: no scripts, no external links, stylesheets, images or fonts.
fn assert_self_contained(body: &str, what: &str) {
    assert!(!body.contains("<script"), "{what} has a script");
    let external = body
        .replace("xmlns=\"http://www.w3.org/2000/svg\"", "")
        .contains("http");
    assert!(!external, "{what} refers to an outside resource");
    assert!(
        !body.contains("@import") && !body.contains("url("),
        "{what} loads CSS resources"
    );
}

/// The smoke sweep's columns of cells.csv, one map per cell.
fn cells_csv(dir: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let mut r = csv::Reader::from_path(dir.join("cells.csv")).unwrap();
    let h: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    r.records()
        .map(|rec| {
            h.iter()
                .cloned()
                .zip(rec.unwrap().iter().map(str::to_string))
                .collect()
        })
        .collect()
}

#[test]
fn smoke_report_draws_every_figure_from_the_cells() {
    let t = tempfile::tempdir().unwrap();
    let art = t.path().join("art");
    let art_s = art.to_str().unwrap();
    let out = bitgrok(&["run", "sweeps/smoke.toml", "--artifacts", art_s]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dir = art.join("sweeps/smoke");
    let html = parse_xml(&dir.join("report.html"));
    assert_self_contained(&html, "report.html");
    let cells = cells_csv(&dir);
    assert_eq!(cells.len(), 6);
    assert!(cells.iter().all(|c| c["status"] == "done"));

    // Every figure: in the page, as its own SVG, parsed, with its data drawn.
    let figs = [
        "curves",
        "spectrum",
        "key_frequencies",
        "neurons",
        "algorithm_plane",
    ];
    for id in figs {
        let svg = parse_xml(&dir.join("figures").join(format!("{id}.svg")));
        assert_self_contained(&svg, id);
        assert!(
            html.contains(&format!("<figure id=\"{id}\">")),
            "{id} not in the report"
        );
    }
    let svg =
        |id: &str| std::fs::read_to_string(dir.join("figures").join(format!("{id}.svg"))).unwrap();
    // Curves: 4 series per cell (train/test loss and accuracy), each a polyline of
    // all 31 evaluations (steps 0..=3000 by 100).
    let curves = svg("curves");
    let long_lines = curves
        .split("<polyline")
        .skip(1)
        .filter(|l| {
            l.split("points=\"").nth(1).is_some_and(|p| {
                p.split('"')
                    .next()
                    .unwrap()
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .count()
                    >= 31
            })
        })
        .count();
    assert_eq!(long_lines, 6 * 4, "curves figure");
    // Key frequencies: one dot per (cell, key frequency), as in cells.csv.
    let n_keys: usize = cells
        .iter()
        .map(|c| c["n_key_frequencies"].parse::<usize>().unwrap())
        .sum();
    assert!(n_keys > 0);
    assert_eq!(
        count(&svg("key_frequencies"), "<circle"),
        n_keys,
        "key frequency dots"
    );
    // Spectrum: one bar per frequency 1..=11 per cell (p = 23).
    assert!(count(&svg("spectrum"), "<rect") >= 6 * 11, "spectrum bars");
    // Plane: one point per cell plus one legend mark per precision.
    assert_eq!(
        count(&svg("algorithm_plane"), "<circle"),
        6 + 3,
        "plane points"
    );
    // Neurons: one bar per (cell, key frequency) plus a legend mark per precision;
    // one dot per cell on the right.
    let neurons = svg("neurons");
    assert!(count(&neurons, "<circle") >= 6, "fraction clustered dots");

    // Tables and the sweep file.
    for title in [
        "Summary per precision",
        "Precisions compared",
        "Cells (key links",
    ] {
        assert!(html.contains(title), "{title} missing");
    }
    assert!(
        html.contains("name = &quot;smoke&quot;"),
        "sweep file missing"
    );

    // One page per cell, linked, with its heatmaps.
    for c in &cells {
        let key12 = &c["key"][..12];
        let href = format!("href=\"cells/{key12}.html\"");
        assert!(html.contains(&href), "no link {href}");
        let page = parse_xml(&dir.join("cells").join(format!("{key12}.html")));
        assert_self_contained(&page.replace("data:image/png;base64,", ""), key12);
        let n_keys: usize = c["n_key_frequencies"].parse().unwrap();
        let neurons = if n_keys > 0 {
            count(&page, "<figure id=\"neurons\">")
        } else {
            1
        };
        assert_eq!(neurons, 1, "{key12}: neuron heatmaps");
        // 4 heads × (weight on a, weight on b), plus the neuron maps.
        assert!(count(&page, "<image ") >= 8 + n_keys, "{key12}: heatmaps");
    }

    // A second report rewrites no cell page.
    let again = bitgrok(&["report", "sweeps/smoke.toml", "--artifacts", art_s]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    let err = text(&again.stderr);
    assert!(err.contains("0 cell pages written, 6 unchanged"), "{err}");
}

#[test]
fn attention_weights_are_the_softmax_of_the_position_2_scores() {
    let (p, d, heads) = (5, 8, 2);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let mut mat = |r: usize, c: usize| {
        Mat::from_vec(r, c, (0..r * c).map(|_| rng.gen_range(-1.0..1.0)).collect())
    };
    let w = ModelWeights {
        arch: Arch::Nanda2023,
        heads,
        w_e: mat(p + 1, d),
        w_pos: Some(mat(3, d)),
        w_q: mat(d, d),
        w_k: mat(d, d),
        w_v: mat(d, d),
        w_o: mat(d, d),
        w_in: mat(d, 4 * d),
        b_in: None,
        w_out: mat(4 * d, d),
        b_out: None,
        ln_final_w: None,
        w_u: mat(d, p),
    };
    let att = attention_all(&w);
    assert_eq!(att.len(), p * p * heads * 3);
    let proj = |x: &[f64], m: &Mat| -> Vec<f64> {
        (0..d)
            .map(|j| (0..d).map(|i| x[i] * m.row(i)[j] as f64).sum())
            .collect()
    };
    let q = proj(&input_vector(&w, 2, p), &w.w_q);
    let dh = d / heads;
    for (a, b) in [(0, 0), (1, 4), (3, 2)] {
        let keys = [
            proj(&input_vector(&w, 0, a), &w.w_k),
            proj(&input_vector(&w, 1, b), &w.w_k),
            proj(&input_vector(&w, 2, p), &w.w_k),
        ];
        for h in 0..heads {
            let s: Vec<f64> = keys
                .iter()
                .map(|k| {
                    attention_scale(&w) * (h * dh..(h + 1) * dh).map(|i| q[i] * k[i]).sum::<f64>()
                })
                .collect();
            let z: f64 = s.iter().map(|x| x.exp()).sum();
            for pos in 0..3 {
                let got = att[((a * p + b) * heads + h) * 3 + pos] as f64;
                assert!(
                    (got - s[pos].exp() / z).abs() < 1e-5,
                    "({a},{b}) head {h} pos {pos}"
                );
            }
        }
    }
}
