//! The figures of the HTML report, drawn with plotters' SVG backend.
//!
//! Every figure is a function of [`SweepView`] (the sweep's cells as
//! `report::aggregate` reads them, plus each cell's curves) listed in [`FIGURES`]:
//! adding a figure is one function and one line there. Per-cell figures (neuron
//! and attention heatmaps) live in [`cell`] and need the model's forward pass.

pub mod cell;
mod curves;
mod neurons;
mod plane;
mod progress;
mod spectrum;

use crate::analysis::{CurvePoint, Signature};
use crate::config::AnalysisConfig;
use crate::report::aggregate::Row;
use crate::store::CellState as Status;
pub use curves::draw_panel as curves_panel;
pub use spectrum::draw_spectrum as spectrum_panel;

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use std::collections::HashMap;

/// Small multiples are drawn one panel per group up to this many panels; past it a
/// figure aggregates (one panel per precision) so a big sweep stays readable.
pub const MAX_PANELS: usize = 24;

/// One drawn figure.
pub struct Figure {
    /// File stem under `figures/` and HTML anchor.
    pub id: &'static str,
    pub title: String,
    /// One line saying what to look for.
    pub caption: String,
    pub svg: String,
}

/// One cell of the sweep with what the figures need.
pub struct CellView<'a> {
    pub row: &'a Row,
    /// `precision` of the cell (an axis or not).
    pub precision: String,
    /// Short display name: the identity values, `name=value` except precision.
    pub name: String,
    /// Name without the `seed` column: cells sharing it are overlaid.
    pub group: String,
    /// Precision plus what tells this cell's setting apart from others of its
    /// precision (`binary, quant.binary_scale=true`): the colour key.
    pub setting: String,
    /// curves.csv of a done cell; None when absent or unreadable.
    pub curves: Option<Vec<CurvePoint>>,
}

impl CellView<'_> {
    pub fn sig(&self) -> Option<&Signature> {
        self.row.sig.as_ref()
    }
}

/// Everything the sweep-level figures draw.
pub struct SweepView<'a> {
    pub cells: Vec<CellView<'a>>,
    /// Precisions in first-appearance order (the curves' panel order).
    pub precisions: Vec<String>,
    /// Settings ([`CellView::setting`]) in first-appearance order (the colour order).
    pub settings: Vec<String>,
    /// The first cell's analysis settings: thresholds of labels and timings.
    pub analysis: AnalysisConfig,
}

impl SweepView<'_> {
    /// The colour of a setting: its first-appearance index in the palette.
    pub fn color(&self, setting: &str) -> RGBColor {
        let i = self.settings.iter().position(|s| s == setting).unwrap_or(0);
        palette(i)
    }

    /// Cells with a signature.
    pub fn analysed(&self) -> impl Iterator<Item = &CellView<'_>> {
        self.cells.iter().filter(|c| c.row.status == Status::Done)
    }
}

/// The sweep-level figures in page order.
type FigureFn = fn(&SweepView) -> Result<Option<Figure>>;
pub const FIGURES: &[FigureFn] = &[
    curves::figure,
    spectrum::spectra,
    spectrum::matrix,
    neurons::figure,
    plane::figure,
    progress::figure,
];

/// Draw every figure that has data.
pub fn sweep_figures(view: &SweepView) -> Result<Vec<Figure>> {
    let mut out = Vec::new();
    for f in FIGURES {
        if let Some(fig) = f(view)? {
            out.push(fig);
        }
    }
    Ok(out)
}

/// Tableau's 10 colours, repeated past 10.
pub fn palette(i: usize) -> RGBColor {
    const C: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let (r, g, b) = C[i % C.len()];
    RGBColor(r, g, b)
}

/// The font of every figure: the reader's own sans-serif (nothing is fetched).
pub fn font(size: u32) -> TextStyle<'static> {
    ("sans-serif", size).into_font().color(&BLACK)
}

/// Draw into an SVG string of `size` pixels.
pub fn svg(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend, plotters::coord::Shift>) -> Result<()>,
) -> Result<String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        draw(&root)?;
        root.present().map_err(plot_err)?;
    }
    Ok(buf)
}

/// plotters' errors as anyhow errors.
pub fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a figure: {e:?}")
}

/// `(lo, hi)` of finite values, widened when empty or flat.
pub fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
    if lo > hi {
        (0.0, 1.0)
    } else if lo == hi {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    }
}

/// Indices of items grouped by a key, groups in first-appearance order.
pub fn groups<K: Eq + std::hash::Hash + Clone>(
    keys: impl Iterator<Item = K>,
) -> Vec<(K, Vec<usize>)> {
    let mut out: Vec<(K, Vec<usize>)> = Vec::new();
    let mut at: HashMap<K, usize> = HashMap::new();
    for (i, k) in keys.enumerate() {
        match at.get(&k) {
            Some(&g) => out[g].1.push(i),
            None => {
                at.insert(k.clone(), out.len());
                out.push((k, vec![i]));
            }
        }
    }
    out
}

/// About how wide `text` is in `font(size)`, in pixels: 0.56 em a character, a
/// little over sans-serif's average, so an estimate errs on the wide side.
pub fn text_width(text: &str, size: u32) -> u32 {
    (text.chars().count() as f64 * 0.56 * size as f64).ceil() as u32
}

/// Widest a figure of small multiples grows before its panels wrap to more rows.
const MAX_FIGURE_WIDTH: u32 = 1600;

/// Panel width and the most columns for small multiples titled `titles` in
/// `font(size)`: at least `min` wide, and wide enough that no title overlaps its
/// neighbour's (sweeps with several dotted axes have long cell names).
pub fn panel_layout<'t>(
    min: u32,
    titles: impl Iterator<Item = &'t str>,
    size: u32,
    max_cols: usize,
) -> (u32, usize) {
    let width = titles
        .map(|t| text_width(t, size) + 24)
        .max()
        .unwrap_or(0)
        .max(min);
    let cols = ((MAX_FIGURE_WIDTH / width) as usize).clamp(1, max_cols);
    (width, cols)
}

/// Swatch-and-name rows of a legend drawn beside a chart rather than in it, where
/// it would hide data: entries flow in columns as wide as the longest name.
pub struct LegendStrip<'a> {
    entries: &'a [(String, RGBColor)],
    cols: usize,
    col_width: u32,
}

const LEGEND_ROW: u32 = 16;
const LEGEND_FONT: u32 = 11;

impl<'a> LegendStrip<'a> {
    pub fn new(entries: &'a [(String, RGBColor)], width: u32) -> Self {
        let col_width = entries
            .iter()
            .map(|(name, _)| text_width(name, LEGEND_FONT) + 34)
            .max()
            .unwrap_or(1);
        let cols = ((width.saturating_sub(20) / col_width) as usize).clamp(1, entries.len().max(1));
        LegendStrip {
            entries,
            cols,
            col_width,
        }
    }

    /// Pixels the strip needs below the chart.
    pub fn height(&self) -> u32 {
        self.entries.len().div_ceil(self.cols) as u32 * LEGEND_ROW + 12
    }

    pub fn draw(&self, area: &DrawingArea<SVGBackend, plotters::coord::Shift>) -> Result<()> {
        for (i, (name, color)) in self.entries.iter().enumerate() {
            let x = 20 + (i % self.cols) as i32 * self.col_width as i32;
            let y = 6 + (i / self.cols) as i32 * LEGEND_ROW as i32;
            area.draw(&Rectangle::new(
                [(x, y + 2), (x + 10, y + 12)],
                color.filled(),
            ))
            .map_err(plot_err)?;
            area.draw(&Text::new(name.as_str(), (x + 16, y), font(LEGEND_FONT)))
                .map_err(plot_err)?;
        }
        Ok(())
    }
}

/// Rows × columns for `n` panels at most `max_cols` wide.
pub fn grid_shape(n: usize, max_cols: usize) -> (usize, usize) {
    let cols = n.clamp(1, max_cols);
    (n.div_ceil(cols).max(1), cols)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_titles_widen_panels_and_wrap_them_to_fewer_columns() {
        let short = ["fp32", "binary"];
        assert_eq!(panel_layout(300, short.into_iter(), 13, 4), (300, 4));
        let long = "model.arch=nanda2023, model.attention_rate=1.0, seed=0, modulus=31";
        let (width, cols) = panel_layout(300, [long, "fp32"].into_iter(), 13, 4);
        assert!(width >= text_width(long, 13) && width > 300);
        assert!(width as usize * cols <= MAX_FIGURE_WIDTH as usize && cols >= 1);
        assert_eq!(
            panel_layout(300, [long.repeat(9).as_str()].into_iter(), 13, 4).1,
            1
        );
    }

    #[test]
    fn legend_strip_fits_its_width_and_draws_every_entry() {
        let entries: Vec<(String, RGBColor)> = (0..9)
            .map(|i| (format!("binary, quant.binary_scale={i}"), palette(i)))
            .collect();
        let strip = LegendStrip::new(&entries, 700);
        assert!(strip.cols >= 2 && strip.cols as u32 * strip.col_width <= 700);
        let rows = entries.len().div_ceil(strip.cols) as u32;
        assert_eq!(strip.height(), rows * LEGEND_ROW + 12);
        let text = svg((700, strip.height()), |root| strip.draw(root)).unwrap();
        for (name, _) in &entries {
            assert!(text.contains(name.as_str()), "{name} not drawn");
        }
        // One name wider than the figure still gets a column of its own.
        let wide = [("x".repeat(300), palette(0))];
        assert_eq!(LegendStrip::new(&wide, 700).cols, 1);
    }

    #[test]
    fn bounds_widen_flat_and_empty_ranges() {
        assert_eq!(bounds([2.0, f64::NAN, 5.0].into_iter()), (2.0, 5.0));
        assert_eq!(bounds([3.0].into_iter()), (2.5, 3.5));
        assert_eq!(bounds(std::iter::empty()), (0.0, 1.0));
    }

    #[test]
    fn groups_keep_first_appearance_order() {
        let g = groups(["b", "a", "b"].into_iter());
        assert_eq!(g, vec![("b", vec![0, 2]), ("a", vec![1])]);
        assert_eq!(grid_shape(5, 3), (2, 3));
        assert_eq!(grid_shape(2, 3), (1, 2));
    }
}
