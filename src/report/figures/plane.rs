//! Figure 4: the algorithm plane, Zhong et al.'s clock score against their pizza
//! score (means over the key frequencies), one point per cell, with the label
//! regions of the sweep's `pattern_min_margin` drawn: the quantity the label rests
//! on. Colour = setting, marker shape = label, hollow = not generalised.

use super::{bounds, font, plot_err, setting_entries, svg, tick, Figure, LegendStrip, Mark, INK};
use super::{Shape, SweepView, HEADING, TEXT, TITLE};
use crate::analysis::labels::{summary_label, Label, LabelInputs};
use crate::analysis::Signature;
use crate::config::AnalysisConfig;
use crate::report::aggregate::mean_pattern;
use anyhow::Result;
use plotters::prelude::*;

/// A numeric signature field drawn as an axis.
struct Encoding {
    name: &'static str,
    get: fn(&Signature) -> Option<f64>,
}

const X: Encoding = Encoding {
    name: "clock score (mean over key frequencies)",
    get: |s| mean_pattern(s, |x| x.clock),
};
const Y: Encoding = Encoding {
    name: "pizza score (mean over key frequencies)",
    get: |s| mean_pattern(s, |x| x.pizza),
};

/// Marker radius in pixels.
const RADIUS: i32 = 7;
/// Markers closer than this many pixels are spread apart.
const OVERLAP: f64 = 1.5 * RADIUS as f64;

/// The marker of each label. A cell that did not generalise is drawn hollow with
/// the shape of the label its logits would get had it generalised
/// ([`marker_label`]), so `NotGeneralised` itself is never drawn.
pub fn shape(label: Label) -> Shape {
    match label {
        Label::Clock => Shape::Circle,
        Label::Pizza => Shape::Triangle,
        Label::Mixed => Shape::Diamond,
        Label::Undecided | Label::NotGeneralised => Shape::Square,
        Label::NoFourier => Shape::TriangleDown,
    }
}

/// The label whose shape a cell's point takes: its label, or for a model that did
/// not generalise the label of its logits (the summary rule read as if it had).
pub fn marker_label(sig: &Signature, cfg: &AnalysisConfig) -> Label {
    match sig.algorithm.label {
        Label::NotGeneralised => summary_label(
            &LabelInputs {
                generalised: true,
                n_key_frequencies: sig.neurons.key_frequencies.len(),
                logits_explained: sig.logits.explained_by_key_frequencies,
                pattern: sig.algorithm.pattern,
            },
            cfg,
        ),
        label => label,
    }
}

struct Point<'a> {
    setting: &'a str,
    x: f64,
    y: f64,
    label: Label,
    generalised: bool,
}

pub fn figure(view: &SweepView) -> Result<Option<Figure>> {
    let points: Vec<Point> = view
        .analysed()
        .filter_map(|c| {
            let s = c.sig()?;
            Some(Point {
                setting: c.setting.as_str(),
                x: (X.get)(s)?,
                y: (Y.get)(s)?,
                label: marker_label(s, &view.analysis),
                generalised: c.generalised(),
            })
        })
        .collect();
    if points.is_empty() {
        return Ok(None);
    }
    let margin = view.analysis.pattern_min_margin;
    // One square range over both scores, so the diagonal is at 45°.
    let (lo, hi) = bounds(points.iter().flat_map(|p| [p.x, p.y]));
    let pad = 0.05 * (hi - lo).max(0.05);
    let (lo, hi) = (lo - pad, (hi + pad).min(1.02));
    // Colours (settings) on one strip, shapes (labels) on the next.
    let colours = setting_entries(view, |s| points.iter().any(|p| p.setting == s));
    let mut shapes: Vec<(String, Mark)> = Label::ALL
        .iter()
        .filter(|&&l| l != Label::NotGeneralised && points.iter().any(|p| p.label == l))
        .map(|&l| (l.word().to_string(), Mark::Marker(shape(l), INK, true)))
        .collect();
    if points.iter().any(|p| !p.generalised) {
        shapes.push((
            "hollow: not generalised".into(),
            Mark::Marker(Shape::Circle, INK, false),
        ));
    }
    let colour_strip = LegendStrip::new(&colours, 760);
    let shape_strip = LegendStrip::new(&shapes, 760);
    let legend_h = colour_strip.height() + shape_strip.height();
    let mut spread = 0;
    let text = svg((760, 600 + legend_h), |root| {
        let (body, strips) = root.split_vertically(600);
        let (first, second) = strips.split_vertically(colour_strip.height());
        colour_strip.draw(&first)?;
        shape_strip.draw(&second)?;
        let mut chart = ChartBuilder::on(&body)
            .caption("algorithm plane", font(HEADING))
            .margin(10)
            .margin_right(20)
            .x_label_area_size(48)
            .y_label_area_size(70)
            .build_cartesian_2d(lo..hi, lo..hi)
            .map_err(plot_err)?;
        let digits = if hi - lo < 0.5 { 2 } else { 1 };
        chart
            .configure_mesh()
            .x_desc(X.name)
            .y_desc(Y.name)
            .x_label_formatter(&|v| tick(*v, digits))
            .y_label_formatter(&|v| tick(*v, digits))
            .label_style(font(TEXT))
            .light_line_style(WHITE)
            .draw()
            .map_err(plot_err)?;
        // Clock below the line pizza = clock − margin, pizza above pizza = clock + margin.
        let regions = [
            ("clock", -margin, RGBColor(0, 114, 178)),
            ("pizza", margin, RGBColor(230, 159, 0)),
        ];
        for (name, offset, color) in regions {
            let edge = [(lo, lo + offset), (hi, hi + offset)];
            let far = if offset < 0.0 { lo } else { hi };
            let area = vec![edge[0], edge[1], (if offset < 0.0 { hi } else { lo }, far)];
            chart
                .draw_series(std::iter::once(Polygon::new(
                    area,
                    color.mix(0.10).filled(),
                )))
                .map_err(plot_err)?;
            chart
                .draw_series(LineSeries::new(edge, color.mix(0.7).stroke_width(1)))
                .map_err(plot_err)?;
            // Each region's name in its far corner.
            let anchor = if offset < 0.0 {
                (hi - 0.12 * (hi - lo), lo + 0.06 * (hi - lo))
            } else {
                (lo + 0.03 * (hi - lo), hi - 0.03 * (hi - lo))
            };
            chart
                .draw_series(std::iter::once(Text::new(
                    name.to_string(),
                    anchor,
                    font(TITLE).color(&color),
                )))
                .map_err(plot_err)?;
        }
        let at: Vec<(i32, i32)> = points
            .iter()
            .map(|p| chart.backend_coord(&(p.x, p.y)))
            .collect();
        let (placed, moved) = spread_apart(&at, OVERLAP);
        spread = moved;
        for (p, &xy) in points.iter().zip(&placed) {
            shape(p.label).draw(root, xy, RADIUS, view.color(p.setting), p.generalised)?;
        }
        Ok(())
    })?;
    Ok(Some(Figure {
        id: "algorithm_plane",
        title: "Algorithm plane".into(),
        caption: format!(
            "One point per analysed cell with key frequencies: colour = setting, shape = label, hollow = did not generalise (shape = the label its logits would get). Axes: Zhong et al.'s clock and pizza scores (2ρ − 1 of the logits against cos(w(a+b−c)) and |cos(w(a−b)/2)|·cos(w(a+b−c)), each key frequency isolated in the embedding; 1 = perfect match, 0.80 = the other pattern's perfect model), averaged over the key frequencies. Shaded: where a frequency's pattern is clock or pizza (one score leads by ≥ {margin}); a model is labelled clock or pizza only when every key frequency is, see pattern_per_frequency in the cells table. Fills are translucent; points that would overlap (closer than {OVERLAP} px) are spread on a small ring around their common position ({} here).",
            crate::text::count(spread, "point"),
        ),
        svg: text,
    }))
}

/// Pixel positions with every group of points closer than `min` (chained) moved
/// onto a ring around the group's centre, just wide enough that neighbours on it
/// are `min` apart. Returns the positions and how many points moved.
fn spread_apart(at: &[(i32, i32)], min: f64) -> (Vec<(i32, i32)>, usize) {
    let n = at.len();
    let mut group: Vec<usize> = (0..n).collect();
    fn root(g: &mut [usize], mut i: usize) -> usize {
        while g[i] != i {
            g[i] = g[g[i]];
            i = g[i];
        }
        i
    }
    for i in 0..n {
        for j in i + 1..n {
            let (dx, dy) = ((at[i].0 - at[j].0) as f64, (at[i].1 - at[j].1) as f64);
            if dx.hypot(dy) < min {
                let (a, b) = (root(&mut group, i), root(&mut group, j));
                group[a] = b;
            }
        }
    }
    let mut out = at.to_vec();
    let mut moved = 0;
    let roots: Vec<usize> = (0..n).map(|i| root(&mut group, i)).collect();
    for r in 0..n {
        let members: Vec<usize> = (0..n).filter(|&i| roots[i] == r).collect();
        let m = members.len();
        if m < 2 {
            continue;
        }
        let (cx, cy) = members.iter().fold((0.0, 0.0), |(x, y), &i| {
            (x + at[i].0 as f64 / m as f64, y + at[i].1 as f64 / m as f64)
        });
        let ring = min / 2.0 / (std::f64::consts::PI / m as f64).sin();
        for (k, &i) in members.iter().enumerate() {
            let a = 2.0 * std::f64::consts::PI * k as f64 / m as f64 - std::f64::consts::FRAC_PI_2;
            out[i] = (
                (cx + ring * a.cos()).round() as i32,
                (cy + ring * a.sin()).round() as i32,
            );
        }
        moved += m;
    }
    (out, moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_has_its_own_shape() {
        let drawn: Vec<Label> = Label::ALL
            .iter()
            .copied()
            .filter(|&l| l != Label::NotGeneralised)
            .collect();
        let shapes: Vec<Shape> = drawn.iter().map(|&l| shape(l)).collect();
        for (i, a) in shapes.iter().enumerate() {
            assert!(!shapes[i + 1..].contains(a), "{a:?} used twice");
        }
    }

    #[test]
    fn overlapping_points_are_spread_and_others_stay() {
        let at = [(100, 100), (100, 100), (101, 100), (300, 300)];
        let (out, moved) = spread_apart(&at, 10.0);
        assert_eq!(moved, 3);
        assert_eq!(out[3], (300, 300));
        for i in 0..3 {
            for j in i + 1..3 {
                let d = ((out[i].0 - out[j].0) as f64).hypot((out[i].1 - out[j].1) as f64);
                assert!(d >= 9.0, "{i} and {j} still overlap: {out:?}");
            }
            let r = ((out[i].0 - 100) as f64).hypot((out[i].1 - 100) as f64);
            assert!(r < 10.0, "{i} moved too far: {out:?}");
        }
    }
}

#[cfg(test)]
mod drawn {
    use super::super::fixture;
    use super::*;
    use crate::analysis::labels::Pattern;

    /// The outlines of the markers in a plane: (shape, filled). A filled marker's
    /// outline is 1 px, a hollow one's 2 px.
    fn outlines(svg: &str) -> Vec<(Shape, bool)> {
        let attr = |e: &str, name: &str| -> Option<String> {
            e.split(&format!(" {name}=\""))
                .nth(1)
                .map(|v| v.split('"').next().unwrap().to_string())
        };
        let mut out = Vec::new();
        for e in svg.split('<').skip(1) {
            let filled = match attr(e, "stroke-width").as_deref() {
                Some("1") => true,
                Some("2") => false,
                _ => continue,
            };
            if e.starts_with("circle") && attr(e, "fill").as_deref() == Some("none") {
                out.push((Shape::Circle, filled));
            } else if e.starts_with("polyline") {
                let pts: Vec<(i32, i32)> = attr(e, "points")
                    .unwrap()
                    .split_whitespace()
                    .map(|p| {
                        let (x, y) = p.split_once(',').unwrap();
                        (x.parse().unwrap(), y.parse().unwrap())
                    })
                    .collect();
                if pts.len() < 4 || pts[0] != pts[pts.len() - 1] {
                    continue;
                }
                let v = &pts[..pts.len() - 1];
                let top = v.iter().map(|p| p.1).min().unwrap();
                let shape = match v.len() {
                    3 if v.iter().filter(|p| p.1 == top).count() == 1 => Shape::Triangle,
                    3 => Shape::TriangleDown,
                    4 if v.iter().filter(|p| p.1 == top).count() == 2 => Shape::Square,
                    4 => Shape::Diamond,
                    _ => continue,
                };
                out.push((shape, filled));
            }
        }
        out
    }

    #[test]
    fn the_plane_draws_each_label_in_its_shape_and_failed_models_hollow() {
        let labels = [
            Label::Clock,
            Label::Pizza,
            Label::Mixed,
            Label::Undecided,
            Label::NoFourier,
        ];
        let rows = fixture::rows(12, |i, s| {
            s.logits.explained_by_key_frequencies = 0.9;
            if i < 10 {
                s.algorithm.label = labels[i % 5];
            } else {
                // Did not generalise; its logits read clock.
                s.algorithm.label = Label::NotGeneralised;
                s.algorithm.pattern = Pattern::Clock;
            }
        });
        let view = fixture::view(&rows, &["fp32", "ternary"]);
        let fig = figure(&view).unwrap().unwrap();
        let mut got = outlines(&fig.svg);
        got.sort_by_key(|(s, f)| (*s as u8, *f));
        // One outline per cell, plus one per legend entry: each label (filled) and
        // the hollow circle.
        let mut want: Vec<(Shape, bool)> = (0..10).map(|i| (shape(labels[i % 5]), true)).collect();
        // The two failed cells (clock: hollow circles) and the legend's hollow circle.
        want.extend([(Shape::Circle, false); 3]);
        want.extend(labels.iter().map(|&l| (shape(l), true)));
        want.sort_by_key(|(s, f)| (*s as u8, *f));
        assert_eq!(got, want);
        let shapes: std::collections::HashSet<u8> = got.iter().map(|(s, _)| *s as u8).collect();
        assert_eq!(shapes.len(), labels.len(), "one shape per label");
        for l in labels {
            assert!(
                fig.svg.contains(&format!(">\n{}\n</text>", l.word())),
                "{l} not in the legend"
            );
        }
        // 12 points from nearby scores: those closer than a marker are spread.
        assert!(fig.caption.contains("spread"));
    }
}
