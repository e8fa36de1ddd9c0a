//! The HTML report of the smoke sweep: every file parses as XML, is self-contained,
//! and every figure draws the data of the cells it is about.

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
        "routing",
    ];
    for id in figs {
        let svg = parse_xml(&dir.join("figures").join(format!("{id}.svg")));
        assert_self_contained(&svg, id);
        assert!(
            html.contains(&format!("<figure id=\"{id}\">")),
            "{id} not in the report"
        );
    }
    // A figure an earlier report drew and this one does not is removed; the others stay.
    std::fs::write(dir.join("figures/progress.svg"), "<svg/>").unwrap();
    let again = bitgrok(&["report", "sweeps/smoke.toml", "--artifacts", art_s]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(!dir.join("figures/progress.svg").exists());
    assert!(figs
        .iter()
        .all(|id| dir.join(format!("figures/{id}.svg")).is_file()));
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
    // Plus the legend's dot.
    assert_eq!(
        count(&svg("key_frequencies"), "<circle"),
        n_keys + 1,
        "key frequency dots"
    );
    // Spectrum: one bar per frequency 1..=11 per cell (p = 23).
    assert!(count(&svg("spectrum"), "<rect") >= 6 * 11, "spectrum bars");
    // Plane: a cell that did not generalise is drawn hollow (a 2 px outline, the
    // shape of its logits' label), and only such a cell, plus the legend's entry.
    let not_generalised = cells
        .iter()
        .filter(|c| c["label"] == "not-generalised")
        .count();
    assert!(
        not_generalised > 0,
        "the smoke sweep has a failed cell to draw"
    );
    let plane = svg("algorithm_plane");
    let hollow = plane
        .split('<')
        .filter(|e| e.contains("stroke-width=\"2\""))
        .filter(|e| {
            let closed = e.starts_with("polyline") && {
                let pts: Vec<&str> = e
                    .split("points=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
                    .split_whitespace()
                    .collect();
                pts.len() >= 4 && pts.first() == pts.last()
            };
            closed || (e.starts_with("circle") && e.contains("fill=\"none\""))
        })
        .count();
    assert_eq!(hollow, not_generalised + 1, "hollow plane points");
    // Each label present is named in the plane's legend.
    for c in cells.iter().filter(|c| c["label"] != "not-generalised") {
        let entry = format!(">\n{}\n</text>", c["label"]);
        assert!(
            plane.contains(&entry),
            "{} not in the plane's legend",
            c["label"]
        );
    }
    // Neurons: one bar per (cell, key frequency) plus a legend mark per precision;
    // one dot per cell on the right.
    let neurons = svg("neurons");
    assert!(count(&neurons, "<circle") >= 6, "fraction clustered dots");

    // Tables and the sweep file.
    for title in [
        "Summary per setting, over seeds",
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

    // No text smaller than 11 px at 100 % zoom, in any figure or cell page.
    let mut pages: Vec<std::path::PathBuf> = std::fs::read_dir(dir.join("figures"))
        .unwrap()
        .chain(std::fs::read_dir(dir.join("cells")).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    pages.push(dir.join("report.html"));
    for path in &pages {
        let body = std::fs::read_to_string(path).unwrap();
        for size in body.split("font-size=\"").skip(1) {
            let px: f64 = size.split('"').next().unwrap().parse().unwrap();
            assert!(px >= 11.0, "{}: text of {px} px", path.display());
        }
    }

    // A second report rewrites no cell page.
    let again = bitgrok(&["report", "sweeps/smoke.toml", "--artifacts", art_s]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    let err = text(&again.stderr);
    assert!(err.contains("0 cell pages written, 6 unchanged"), "{err}");
}
