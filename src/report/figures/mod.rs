//! The figures of the HTML report, drawn with plotters' SVG backend.
//!
//! Every figure is a function of [`SweepView`] (the sweep's cells as
//! `report::aggregate` reads them, plus each cell's curves) listed in [`FIGURES`]:
//! adding a figure is one function and one line there. Per-cell figures (neuron
//! and attention heatmaps) live in [`cell`] and need the model's forward pass.

pub mod cell;
mod curves;
mod eq_update;
mod neurons;
mod plane;
mod progress;
mod routing;
mod spectrum;

use crate::analysis::{CurvePoint, Signature};
use crate::config::AnalysisConfig;
use crate::report::aggregate::Row;
use crate::store::CellState as Status;
pub use curves::cell_figure as curves_cell;
pub use spectrum::draw_spectrum as spectrum_panel;

use anyhow::{anyhow, Result};
use plotters::coord::CoordTranslate;
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
    /// Display name: the setting and the seed (`binary, quant.binary_scale=true,
    /// seed=1`), unique in the sweep.
    pub name: String,
    /// Precision plus what tells this cell's setting apart from others of its
    /// precision (`binary, quant.binary_scale=true`): the colour key, and the group
    /// of cells equal but for the seed that the curves overlay.
    pub setting: String,
    /// curves.csv of a done cell; None when absent or unreadable.
    pub curves: Option<Vec<CurvePoint>>,
}

impl CellView<'_> {
    pub fn sig(&self) -> Option<&Signature> {
        self.row.sig.as_ref()
    }

    /// Analysed and generalised: what the point figures draw filled (else hollow).
    pub fn generalised(&self) -> bool {
        self.sig()
            .is_some_and(|s| s.algorithm.label != crate::analysis::labels::Label::NotGeneralised)
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

    /// The settings that have a cell among `cells`, in colour order: a panel or slot
    /// per setting would otherwise leave empty ones.
    pub fn settings_among(&self, cells: &[&CellView]) -> Vec<&String> {
        self.settings
            .iter()
            .filter(|p| cells.iter().any(|c| &c.setting == *p))
            .collect()
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
    routing::figure,
    progress::figure,
    eq_update::figure,
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

/// Text sizes of every figure, in CSS pixels as the reader sees them at 100 % zoom.
/// Nothing is smaller than [`MIN_TEXT`] (`tests/report.rs` checks every SVG).
pub const MIN_TEXT: u32 = 11;
/// Tick labels, axis names and legends.
pub const TEXT: u32 = 12;
/// Panel titles.
pub const TITLE: u32 = 14;
/// The title of a figure drawn as one chart.
pub const HEADING: u32 = 15;

/// plotters' SVG backend writes a font of size `s` as `font-size = s / 1.24`.
const PLOTTERS_FONT_SCALE: f64 = 1.24;

/// The font of every figure: the reader's own sans-serif (nothing is fetched),
/// rendered `px` CSS pixels high.
pub fn font(px: u32) -> TextStyle<'static> {
    debug_assert!(px >= MIN_TEXT, "text of {px} px is below {MIN_TEXT} px");
    ("sans-serif", px as f64 * PLOTTERS_FONT_SCALE)
        .into_font()
        .color(&BLACK)
}

/// A tick label with `digits` decimals, never `-0.00`.
pub fn tick(v: f64, digits: usize) -> String {
    let s = format!("{v:.digits$}");
    if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
        s[1..].to_string()
    } else {
        s
    }
}

/// How a line is stroked. plotters' SVG backend draws every path solid, so a
/// dashed path is drawn at its dash's marker opacity and [`svg`] rewrites that
/// opacity into the dash pattern (at opacity [`DASH_OPACITY`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dash {
    Solid,
    Dashed,
    Dotted,
    DashDot,
}

/// The opacity of dashed lines.
const DASH_OPACITY: f64 = 0.9;

impl Dash {
    /// The marker opacity (no figure draws anything else at these) and the
    /// `stroke-dasharray` it becomes.
    fn marker(self) -> Option<(f64, &'static str)> {
        match self {
            Dash::Solid => None,
            Dash::Dashed => Some((0.9011, "7 4")),
            Dash::Dotted => Some((0.9012, "2 3")),
            Dash::DashDot => Some((0.9013, "9 3 2 3")),
        }
    }

    /// A line of this dash in `color`, `width` pixels wide.
    pub fn style(self, color: RGBColor, width: u32) -> ShapeStyle {
        match self.marker() {
            Some((alpha, _)) => color.mix(alpha).stroke_width(width),
            None => color.stroke_width(width),
        }
    }
}

/// Turn the marker opacities of dashed lines into their dash patterns.
fn apply_dashes(mut text: String) -> String {
    for dash in [Dash::Dashed, Dash::Dotted, Dash::DashDot] {
        let (alpha, array) = dash.marker().expect("dashed");
        text = text.replace(
            &format!("opacity=\"{alpha}\""),
            &format!("opacity=\"{DASH_OPACITY}\" stroke-dasharray=\"{array}\""),
        );
    }
    text
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
    Ok(apply_dashes(buf))
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

/// Widest a figure of small multiples grows before its panels wrap to more rows:
/// the report's column (1,400 px less its padding), so no figure is shrunk to fit
/// and its text stays at the size drawn.
pub const MAX_FIGURE_WIDTH: u32 = 1360;

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

/// What a legend entry shows beside its name.
#[derive(Clone, Copy, Debug)]
pub enum Mark {
    /// A filled square: a colour (a setting).
    Swatch(RGBColor),
    /// A short line of a dash and width.
    Line(RGBColor, Dash, u32),
    /// A point marker, filled or hollow.
    Marker(Shape, RGBColor, bool),
    /// A small solid dot.
    Dot(RGBColor),
}

/// Point markers; each is drawn filled (translucent, with an outline) or hollow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Circle,
    Triangle,
    Diamond,
    Square,
    TriangleDown,
}

/// The colour of legend marks that stand for no setting (line styles, shapes):
/// darker than any palette colour.
pub const INK: RGBColor = RGBColor(40, 40, 40);

/// Fill opacity of filled markers: overlapping markers show through each other.
pub const MARKER_FILL: f64 = 0.6;

impl Shape {
    /// The outline's vertices around the origin for radius `r` (None for the circle).
    fn vertices(self, r: i32) -> Option<Vec<(i32, i32)>> {
        let (t, b) = (r * 6 / 5, r * 4 / 5);
        Some(match self {
            Shape::Circle => return None,
            Shape::Triangle => vec![(0, -t), (t, b), (-t, b)],
            Shape::TriangleDown => vec![(0, t), (t, -b), (-t, -b)],
            Shape::Diamond => vec![(0, -t), (t, 0), (0, t), (-t, 0)],
            Shape::Square => vec![(-r, -r), (r, -r), (r, r), (-r, r)],
        })
    }

    /// Draw at `at` (in `area`'s coordinates) with radius `r` pixels: filled = a
    /// translucent fill and a 1 px outline; hollow = a 2 px outline only.
    pub fn draw<CT: CoordTranslate>(
        self,
        area: &DrawingArea<SVGBackend<'_>, CT>,
        at: CT::From,
        r: i32,
        color: RGBColor,
        filled: bool,
    ) -> Result<()>
    where
        CT::From: Clone,
    {
        let outline = color.stroke_width(if filled { 1 } else { 2 });
        let fill = color.mix(MARKER_FILL).filled();
        let here = || EmptyElement::at(at.clone());
        match self.vertices(r) {
            None => {
                if filled {
                    area.draw(&(here() + Circle::new((0, 0), r, fill)))
                        .map_err(plot_err)?;
                }
                area.draw(&(here() + Circle::new((0, 0), r, outline)))
                    .map_err(plot_err)?;
            }
            Some(v) => {
                if filled {
                    area.draw(&(here() + Polygon::new(v.clone(), fill)))
                        .map_err(plot_err)?;
                }
                let mut closed = v.clone();
                closed.push(v[0]);
                area.draw(&(here() + PathElement::new(closed, outline)))
                    .map_err(plot_err)?;
            }
        }
        Ok(())
    }
}

/// Mark-and-name entries of a legend drawn beside a chart rather than in it, where
/// it would hide data: entries flow in columns as wide as the longest name.
pub struct LegendStrip<'a> {
    entries: &'a [(String, Mark)],
    cols: usize,
    col_width: u32,
}

const LEGEND_ROW: u32 = 20;
/// Room for a mark before its name.
const LEGEND_MARK: u32 = 30;

impl<'a> LegendStrip<'a> {
    pub fn new(entries: &'a [(String, Mark)], width: u32) -> Self {
        let col_width = entries
            .iter()
            .map(|(name, _)| text_width(name, TEXT) + LEGEND_MARK + 20)
            .max()
            .unwrap_or(1);
        let cols = ((width.saturating_sub(20) / col_width) as usize).clamp(1, entries.len().max(1));
        LegendStrip {
            entries,
            cols,
            col_width,
        }
    }

    /// Pixels the strip needs.
    pub fn height(&self) -> u32 {
        self.entries.len().div_ceil(self.cols) as u32 * LEGEND_ROW + 12
    }

    pub fn draw(&self, area: &DrawingArea<SVGBackend, plotters::coord::Shift>) -> Result<()> {
        for (i, (name, mark)) in self.entries.iter().enumerate() {
            let x = 20 + (i % self.cols) as i32 * self.col_width as i32;
            let y = 6 + (i / self.cols) as i32 * LEGEND_ROW as i32;
            let mid = y + TEXT as i32 / 2 + 1;
            match *mark {
                Mark::Swatch(color) => {
                    area.draw(&Rectangle::new(
                        [(x + 6, mid - 6), (x + 18, mid + 6)],
                        color.filled(),
                    ))
                    .map_err(plot_err)?;
                }
                Mark::Line(color, dash, width) => {
                    area.draw(&PathElement::new(
                        vec![(x, mid), (x + LEGEND_MARK as i32 - 6, mid)],
                        dash.style(color, width),
                    ))
                    .map_err(plot_err)?;
                }
                Mark::Marker(shape, color, filled) => {
                    shape.draw(area, (x + 12, mid), 6, color, filled)?;
                }
                Mark::Dot(color) => {
                    area.draw(&Circle::new((x + 12, mid), 3, color.filled()))
                        .map_err(plot_err)?;
                }
            }
            area.draw(&Text::new(
                name.as_str(),
                (x + LEGEND_MARK as i32, y),
                font(TEXT),
            ))
            .map_err(plot_err)?;
        }
        Ok(())
    }
}

/// Setting swatches for a legend: the settings of `view` that `used` keeps, in
/// colour order.
pub fn setting_entries(view: &SweepView, used: impl Fn(&str) -> bool) -> Vec<(String, Mark)> {
    view.settings
        .iter()
        .filter(|s| used(s))
        .map(|s| (s.clone(), Mark::Swatch(view.color(s))))
        .collect()
}

/// Rows × columns for `n` panels at most `max_cols` wide, with as few empty slots
/// as the width allows: the column count (down to half of `max_cols`) that leaves
/// the fewest empty slots in the last row, the widest among equals.
pub fn grid_shape(n: usize, max_cols: usize) -> (usize, usize) {
    let max_cols = max_cols.max(1);
    if n <= max_cols {
        return (1, n.max(1));
    }
    let cols = (max_cols.div_ceil(2).max(2).min(max_cols)..=max_cols)
        .rev()
        .min_by_key(|&c| n.div_ceil(c) * c - n)
        .unwrap_or(max_cols);
    (n.div_ceil(cols), cols)
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
        let entries: Vec<(String, Mark)> = (0..9)
            .map(|i| {
                (
                    format!("binary, quant.binary_scale={i}"),
                    Mark::Swatch(palette(i)),
                )
            })
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
        let wide = [("x".repeat(300), Mark::Swatch(palette(0)))];
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

    #[test]
    fn grids_leave_as_few_empty_slots_as_the_width_allows() {
        // The precision ladder's 9 panels: 3 × 3, not 3 rows of 4 with 3 empty.
        assert_eq!(grid_shape(9, 4), (3, 3));
        assert_eq!(grid_shape(16, 4), (4, 4));
        assert_eq!(grid_shape(7, 4), (2, 4));
        assert_eq!(grid_shape(15, 4), (5, 3));
        assert_eq!(grid_shape(1, 4), (1, 1));
    }

    #[test]
    fn text_renders_at_the_size_asked_for() {
        let text = svg((200, 50), |root| {
            root.draw(&Text::new("x", (10, 10), font(TEXT)))
                .map_err(plot_err)
        })
        .unwrap();
        assert!(text.contains(&format!("font-size=\"{TEXT}\"")), "{text}");
    }

    #[test]
    fn ticks_never_read_minus_zero() {
        assert_eq!(tick(-0.001, 2), "0.00");
        assert_eq!(tick(-0.0, 1), "0.0");
        assert_eq!(tick(-0.02, 2), "-0.02");
        assert_eq!(tick(0.5, 2), "0.50");
    }

    #[test]
    fn dashed_lines_get_a_dash_pattern_and_solid_ones_none() {
        let text = svg((100, 100), |root| {
            for (dash, y) in [(Dash::Solid, 10), (Dash::Dashed, 20), (Dash::Dotted, 30)] {
                root.draw(&PathElement::new(
                    vec![(0, y), (90, y)],
                    dash.style(palette(0), 1),
                ))
                .map_err(plot_err)?;
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(text.matches("stroke-dasharray=\"7 4\"").count(), 1);
        assert_eq!(text.matches("stroke-dasharray=\"2 3\"").count(), 1);
        assert_eq!(text.matches("stroke-dasharray").count(), 2);
        assert!(!text.contains("0.901"), "a marker opacity is left: {text}");
    }

    #[test]
    fn every_figure_of_a_sweep_has_text_of_at_least_the_minimum_size() {
        let rows = fixture::rows(30, |_, _| {});
        let view = fixture::view(&rows, &["fp32", "binary, quant.binary_scale=true"]);
        let figs = sweep_figures(&view).unwrap();
        assert!(
            figs.len() >= 5,
            "{:?}",
            figs.iter().map(|f| f.id).collect::<Vec<_>>()
        );
        for f in &figs {
            for size in font_sizes(&f.svg) {
                assert!(size >= MIN_TEXT as f64, "{}: text of {size} px", f.id);
            }
        }
    }

    /// Every `font-size` in an SVG, in pixels.
    pub(crate) fn font_sizes(svg: &str) -> Vec<f64> {
        svg.split("font-size=\"")
            .skip(1)
            .map(|s| s.split('"').next().unwrap().parse().unwrap())
            .collect()
    }
}

/// Synthetic sweeps for the figures' tests: one small random model analysed once,
/// its signature copied into every cell.
#[cfg(test)]
pub(crate) mod fixture;
