//! The sweep's HTML report: `report.html` (one self-contained file: inline SVG and
//! CSS, no scripts, nothing fetched), each figure as `figures/<id>.svg`, and one
//! page per analysed cell, `cells/<key12>.html`, with its curves, spectrum and
//! heatmaps.
//!
//! Cells are read exactly as `report::aggregate` reads them, and the tables shown
//! are the bytes it writes. A cell page is rewritten only when its stamp (cell key,
//! analysis key, model checksum, page version) changed, so re-running the report
//! after each `run` costs little.

use crate::key::SHORT_KEY_LEN;
use crate::report::aggregate::{self, SweepCell, SweepRows};
use crate::report::figures::{self, cell, CellView, Figure, SweepView};
use crate::store::CellState as Status;
use crate::store::{self, write_atomic, Artifacts, CellStatus};
use crate::sweep::{Cell, Sweep};
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Bump when cell pages change, so stored ones are rewritten.
const CELL_PAGE_VERSION: u32 = 2;

/// What was written, for the caller to print.
#[derive(Debug)]
pub struct ReportSummary {
    pub html: PathBuf,
    pub html_bytes: u64,
    pub figures: Vec<&'static str>,
    pub cell_pages_written: usize,
    pub cell_pages_kept: usize,
    pub seconds: f64,
}

impl std::fmt::Display for ReportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({:.1} KiB, {} figures, {} cell pages written, {} unchanged, {:.2} s)",
            self.html.display(),
            self.html_bytes as f64 / 1024.0,
            self.figures.len(),
            self.cell_pages_written,
            self.cell_pages_kept,
            self.seconds
        )
    }
}

/// Write the report of a parsed sweep into `out_dir` (usually
/// `ARTIFACTS/sweeps/NAME`) from its cells as [`aggregate::read_sweep_of`] read them
/// (the same read the tables were written from).
pub fn write_report(
    artifacts_root: &Path,
    sweep: &Sweep,
    read: &SweepRows,
    out_dir: &Path,
) -> Result<ReportSummary> {
    let start = Instant::now();
    let cells = &sweep.cells;
    let sweep_cells: Vec<SweepCell> = cells.iter().map(SweepCell::from).collect();
    let artifacts = Artifacts::new(artifacts_root);
    let view = sweep_view(&artifacts, read, cells);
    let figs = figures::sweep_figures(&view)?;

    std::fs::create_dir_all(out_dir.join("figures"))
        .with_context(|| format!("creating {}", out_dir.join("figures").display()))?;
    for f in &figs {
        write_atomic(
            &out_dir.join("figures").join(format!("{}.svg", f.id)),
            f.svg.as_bytes(),
        )?;
    }
    remove_stale_figures(&out_dir.join("figures"), &figs)?;
    let (written, kept) =
        write_cell_pages(&artifacts, &view, &sweep_cells, &out_dir.join("cells"))?;
    let sweep_text = std::fs::read_to_string(&sweep.path).unwrap_or_default();
    let html = main_page(sweep, &sweep_text, read, &view, &figs)?;
    let path = out_dir.join("report.html");
    write_atomic(&path, html.as_bytes())?;
    Ok(ReportSummary {
        html: path,
        html_bytes: html.len() as u64,
        figures: figs.iter().map(|f| f.id).collect(),
        cell_pages_written: written,
        cell_pages_kept: kept,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn sweep_view<'a>(artifacts: &Artifacts, read: &'a SweepRows, cells: &[Cell]) -> SweepView<'a> {
    let cell_precisions: Vec<String> = cells
        .iter()
        .map(|c| c.config.precision.to_string())
        .collect();
    let labels = setting_labels(
        &read.columns,
        read.rows.iter().map(|r| &r.ids[..]),
        &cell_precisions,
    );
    let mut precisions: Vec<String> = Vec::new();
    let mut settings: Vec<String> = Vec::new();
    let views = read
        .rows
        .iter()
        .zip(cell_precisions)
        .zip(labels)
        .map(|((row, precision), setting)| {
            if !precisions.contains(&precision) {
                precisions.push(precision.clone());
            }
            if !settings.contains(&setting) {
                settings.push(setting.clone());
            }
            let curves = matches!(row.status, Status::Done | Status::Unanalysed)
                .then(|| store::read_curves(&artifacts.cell_dir(&row.key).join(store::CURVES)).ok())
                .flatten();
            CellView {
                row,
                name: cell_name(&setting, &read.columns, &row.ids),
                precision,
                setting,
                curves,
            }
        })
        .collect();
    SweepView {
        cells: views,
        precisions,
        settings,
        analysis: cells
            .first()
            .map(|c| c.analysis.clone())
            .unwrap_or_default(),
    }
}

/// Remove the `.svg` files of `dir` that are not among `figs`: figures an earlier
/// report drew and this one does not (a sweep grown past the spectrum figure's size,
/// snapshots gone), so `figures/` is always this report's figures and nothing else.
fn remove_stale_figures(dir: &Path, figs: &[Figure]) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let is_svg = path.extension().is_some_and(|e| e == "svg");
        if is_svg && !figs.iter().any(|f| f.id == stem) {
            std::fs::remove_file(&path)
                .with_context(|| format!("removing the stale figure {}", path.display()))?;
        }
    }
    Ok(())
}

/// Each cell's setting, the figures' colour key: its precision, plus the identity
/// values other than the seed that tell apart cells of the same precision
/// (`binary, quant.binary_scale=true`). Cells with one setting differ only by seed.
fn setting_labels<'r>(
    columns: &[String],
    ids: impl Iterator<Item = &'r [String]> + Clone,
    precisions: &[String],
) -> Vec<String> {
    // Columns whose value varies among the cells of a precision, per precision.
    let varies = |col: usize, precision: &str| {
        let mut values = ids
            .clone()
            .zip(precisions)
            .filter(|(_, p)| p.as_str() == precision)
            .map(|(v, _)| &v[col]);
        let first = values.next();
        values.any(|v| Some(v) != first)
    };
    ids.clone()
        .zip(precisions)
        .map(|(v, precision)| {
            let mut label = precision.clone();
            for (col, name) in columns.iter().enumerate() {
                if name != "precision" && name != "seed" && varies(col, precision) {
                    label.push_str(&format!(", {name}={}", v[col]));
                }
            }
            label
        })
        .collect()
}

/// A cell's display name: its setting and seed (`binary, quant.binary_scale=true,
/// seed=1`), unique in the sweep since the setting names every value but the seed
/// that tells cells of a precision apart.
fn cell_name(setting: &str, columns: &[String], ids: &[String]) -> String {
    match columns.iter().position(|c| c == "seed") {
        Some(i) if !ids[i].is_empty() => format!("{setting}, seed={}", ids[i]),
        _ => setting.to_string(),
    }
}

/// `&`, `<`, `>` and quotes escaped for HTML text and attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em auto;max-width:1400px;color:#222;padding:0 1em}\
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ccc}\
figure{margin:1em 0}figcaption{color:#444;font-size:.92em;margin-top:.3em;max-width:1100px}\
svg{max-width:100%;height:auto}table{border-collapse:collapse;font-size:.82em;margin:.5em 0}\
td,th{border:1px solid #ddd;padding:2px 6px;text-align:right;white-space:nowrap}\
th{background:#f3f3f3}.scroll{overflow-x:auto}pre{background:#f6f6f6;padding:.8em;overflow-x:auto}\
.meta{color:#555}nav a{margin-right:1em}";

fn page_head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(title)
    )
}

fn figure_html(out: &mut String, f: &Figure) {
    let _ = write!(
        out,
        "<figure id=\"{}\">\n<h3>{}</h3>\n{}<figcaption>{}</figcaption>\n</figure>\n",
        f.id,
        escape(&f.title),
        f.svg,
        escape(&f.caption)
    );
}

/// A column whose cells become links: its name, and the target of a cell value.
type LinkColumn<'a> = (&'a str, &'a dyn Fn(&str) -> Option<String>);

/// A CSV table as an HTML table; `link` turns a column's cells into links.
fn table_html(csv_bytes: &[u8], link: Option<LinkColumn>) -> Result<String> {
    let mut r = csv::ReaderBuilder::new().from_reader(csv_bytes);
    let header: Vec<String> = r.headers()?.iter().map(str::to_string).collect();
    let link_col = link.and_then(|(name, _)| header.iter().position(|h| h == name));
    let mut out = String::from("<div class=\"scroll\"><table>\n<tr>");
    for h in &header {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr>\n");
    for rec in r.records() {
        out.push_str("<tr>");
        for (i, v) in rec?.iter().enumerate() {
            let href = (Some(i) == link_col)
                .then(|| link.and_then(|(_, f)| f(v)))
                .flatten();
            match href {
                Some(h) => {
                    let short: String = v.chars().take(SHORT_KEY_LEN).collect();
                    let _ = write!(
                        out,
                        "<td><a href=\"{}\">{}</a></td>",
                        escape(&h),
                        escape(&short)
                    );
                }
                None => {
                    let _ = write!(out, "<td>{}</td>", escape(v));
                }
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table></div>\n");
    Ok(out)
}

fn main_page(
    sweep: &Sweep,
    sweep_text: &str,
    read: &SweepRows,
    view: &SweepView,
    figs: &[Figure],
) -> Result<String> {
    let mut out = page_head(&format!("bitgrok sweep {}", sweep.name));
    let counts = |s: Status| read.rows.iter().filter(|r| r.status == s).count();
    let _ = write!(
        out,
        "<h1>Sweep {}</h1>\n<p class=\"meta\">{}<br/>{}: {} done, {} unanalysed, {} failed, {} partial, {} missing. Written by bitgrok {}.</p>\n",
        escape(&sweep.name),
        escape(&sweep.description),
        crate::text::count(read.rows.len(), "cell"),
        counts(Status::Done),
        counts(Status::Unanalysed),
        counts(Status::Failed),
        counts(Status::Partial),
        counts(Status::Missing),
        env!("CARGO_PKG_VERSION")
    );
    out.push_str("<nav>");
    for f in figs {
        let _ = write!(out, "<a href=\"#{}\">{}</a>", f.id, escape(&f.title));
    }
    out.push_str("<a href=\"#tables\">Tables</a><a href=\"#sweep-file\">Sweep file</a></nav>\n<h2>Figures</h2>\n");
    for f in figs {
        figure_html(&mut out, f);
    }
    let tables = aggregate::tables(read)?;
    let table = |name: &str| {
        tables
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| b.as_slice())
    };
    let analysed: std::collections::HashSet<&str> =
        view.analysed().map(|c| c.row.key.as_str()).collect();
    let page_link = |key: &str| analysed.contains(key).then(|| cell_page_name(key));
    out.push_str("<h2 id=\"tables\">Tables</h2>\n");
    for (name, title, link) in [
        ("summary.csv", "Summary per setting, over seeds", false),
        ("compare.csv", "Precisions compared", false),
        (
            "overlap.csv",
            "Key-frequency overlap, within and across seeds",
            false,
        ),
        ("cells.csv", "Cells (key links to the cell's page)", true),
    ] {
        // A table with no rows (e.g. compare.csv without a precision axis) is left out.
        let Some(bytes) = table(name).filter(|b| b.iter().filter(|&&c| c == b'\n').count() > 1)
        else {
            continue;
        };
        let _ = writeln!(out, "<h3>{title} <span class=\"meta\">({name})</span></h3>");
        let link: Option<LinkColumn> =
            link.then_some(("key", &page_link as &dyn Fn(&str) -> Option<String>));
        out.push_str(&table_html(bytes, link)?);
    }
    let _ = write!(
        out,
        "<h2 id=\"sweep-file\">Sweep file <span class=\"meta\">({})</span></h2>\n<pre>{}</pre>\n</body>\n</html>\n",
        escape(&sweep.path.display().to_string()),
        escape(sweep_text)
    );
    Ok(out)
}

/// `cells/<key12>.html`, relative to the report.
pub fn cell_page_name(key: &str) -> String {
    format!("cells/{}.html", &key[..key.len().min(SHORT_KEY_LEN)])
}

/// Write the pages of analysed cells whose stamp changed, spread over the cores.
/// Returns (written, kept).
fn write_cell_pages(
    artifacts: &Artifacts,
    view: &SweepView,
    sweep_cells: &[SweepCell],
    dir: &Path,
) -> Result<(usize, usize)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut seen = std::collections::HashSet::new();
    let todo: Vec<(&CellView, &SweepCell)> = view
        .cells
        .iter()
        .zip(sweep_cells)
        .filter(|(c, _)| c.row.status == Status::Done && seen.insert(c.row.key.clone()))
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = todo.len().div_ceil(threads).max(1);
    let results: Vec<Result<(usize, usize)>> = std::thread::scope(|s| {
        let handles: Vec<_> = todo
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    let mut n = (0, 0);
                    for (c, sc) in part {
                        if write_cell_page(artifacts, view, c, sc, dir)? {
                            n.0 += 1;
                        } else {
                            n.1 += 1;
                        }
                    }
                    Ok(n)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("cell page panicked"))
            .collect()
    });
    let mut total = (0, 0);
    for r in results {
        let (w, k) = r?;
        total = (total.0 + w, total.1 + k);
    }
    Ok(total)
}

/// Write one cell page unless the stored one has the same stamp; true if written.
fn write_cell_page(
    artifacts: &Artifacts,
    view: &SweepView,
    c: &CellView,
    sc: &SweepCell,
    dir: &Path,
) -> Result<bool> {
    let model_hash = match artifacts.status_with(&sc.key, false) {
        CellStatus::Done(m) => m.files.get(store::MODEL_FILE).cloned().unwrap_or_default(),
        _ => String::new(),
    };
    let stamp = format!(
        "<meta name=\"bitgrok-cell\" content=\"{} {} {} v{CELL_PAGE_VERSION}\"/>",
        sc.key, sc.analysis_key, model_hash
    );
    let path = dir.join(format!("{}.html", &sc.key[..SHORT_KEY_LEN]));
    if std::fs::read_to_string(&path).is_ok_and(|t| t.contains(&stamp)) {
        return Ok(false);
    }
    let acts = cell::cell_activations(&artifacts.cell_dir(&sc.key))?;
    let mut figs = Vec::new();
    let color = view.color(&c.setting);
    if c.curves.is_some() {
        figs.push(Figure {
            id: "curves",
            title: "Training curves".into(),
            caption: "Train loss and accuracy dashed and thin, test solid and thick; ○ memorised, ▲ generalised (accuracy ≥ threshold)."
                .into(),
            svg: figures::curves_cell(c, color, view.analysis.accuracy_threshold)?,
        });
    }
    let sig = c.sig().expect("analysed cells have a signature");
    figs.push(Figure {
        id: "spectrum",
        title: "Embedding Fourier spectrum".into(),
        caption: "Norm of W_E per frequency, key frequencies in full colour, the others pale."
            .into(),
        svg: figures::svg((640, 280), |root| {
            figures::spectrum_panel(root, "", sig, color, None)
        })?,
    });
    figs.extend(cell::heatmap_figures(c, &acts)?);
    let mut out = page_head(&format!("bitgrok cell {}", c.name));
    out = out.replacen("</head>", &format!("{stamp}\n</head>"), 1);
    let _ = write!(
        out,
        "<p><a href=\"../report.html\">← sweep report</a></p>\n<h1>Cell {}</h1>\n\
         <p class=\"meta\">key {}<br/>label {} (attention routing {}, logit pattern {}, \
         neuron form {}), key frequencies {:?}, fraction clustered {}, \
         gradient symmetricity {}, final test accuracy {}</p>\n",
        escape(&c.name),
        sc.key,
        escape(sig.algorithm.label.word()),
        sig.algorithm.routing,
        sig.algorithm.pattern,
        sig.algorithm.neuron_form_label,
        sig.neurons.key_frequencies,
        aggregate::fmt_fraction(sig.neurons.fraction_clustered),
        aggregate::fmt_fraction(sig.algorithm.gradient_symmetricity),
        sig.outcome
            .final_test_acc
            .map(aggregate::fmt_fraction)
            .unwrap_or_default()
    );
    for f in &figs {
        figure_html(&mut out, f);
    }
    out.push_str("</body>\n</html>\n");
    write_atomic(&path, out.as_bytes())?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::setting_labels;

    #[test]
    fn settings_name_only_what_tells_cells_of_a_precision_apart() {
        let columns: Vec<String> = [
            "precision",
            "quant.binary_scale",
            "quant.ternary_center",
            "seed",
        ]
        .map(String::from)
        .into();
        let rows: Vec<Vec<String>> = [
            ["fp32", "false", "true", "0"],
            ["fp32", "false", "true", "1"],
            ["binary", "false", "true", "0"],
            ["binary", "true", "true", "0"],
            ["ternary", "false", "true", "0"],
            ["ternary", "false", "false", "0"],
        ]
        .iter()
        .map(|r| r.map(String::from).into())
        .collect();
        let precisions: Vec<String> = rows.iter().map(|r| r[0].clone()).collect();
        let labels = setting_labels(&columns, rows.iter().map(|r| &r[..]), &precisions);
        assert_eq!(
            labels,
            [
                "fp32",
                "fp32",
                "binary, quant.binary_scale=false",
                "binary, quant.binary_scale=true",
                "ternary, quant.ternary_center=true",
                "ternary, quant.ternary_center=false",
            ]
        );
    }
}
