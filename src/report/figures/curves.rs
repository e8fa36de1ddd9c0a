//! Figure 1: train and test loss (log scale) and accuracy against step.

use super::{
    font, grid_shape, groups, palette, panel_layout, plot_err, svg, CellView, Figure, SweepView,
};
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

const PANEL: (u32, u32) = (380, 440);
/// Panels with more cells than this have no legend (the caption explains colours).
const MAX_LEGEND: usize = 6;

/// Small multiples: one panel per group of cells equal but for the seed (seeds
/// overlaid), panels grouped by precision; one panel per precision past
/// `MAX_PANELS` groups.
pub fn figure(view: &SweepView) -> Result<Option<Figure>> {
    let with_curves: Vec<&CellView> = view.cells.iter().filter(|c| c.curves.is_some()).collect();
    if with_curves.is_empty() {
        return Ok(None);
    }
    let mut panels = groups(with_curves.iter().map(|c| c.group.clone()));
    let aggregated = panels.len() > super::MAX_PANELS;
    if aggregated {
        panels = groups(with_curves.iter().map(|c| c.precision.clone()));
    }
    // Precision order first, then first appearance.
    panels.sort_by_key(|(_, m)| {
        let p = &with_curves[m[0]].precision;
        view.precisions.iter().position(|x| x == p)
    });
    let per_precision = groups(
        panels
            .iter()
            .map(|(_, m)| with_curves[m[0]].precision.clone()),
    );
    let widest = per_precision
        .iter()
        .map(|(_, g)| g.len())
        .max()
        .unwrap_or(1);
    let titles: Vec<String> = panels
        .iter()
        .map(|(title, members)| {
            if aggregated {
                format!("{title} ({})", crate::text::count(members.len(), "cell"))
            } else {
                title.clone()
            }
        })
        .collect();
    let (width, max_cols) = panel_layout(PANEL.0, titles.iter().map(|t| t.as_str()), 15, 4);
    // One row per precision when precisions have several panels and they fit; else
    // the panels wrap.
    let by_precision = widest > 1 && widest <= max_cols;
    let (rows, cols) = if by_precision {
        (per_precision.len(), widest)
    } else {
        grid_shape(panels.len(), max_cols)
    };
    let thr = view.analysis.accuracy_threshold;
    let text = svg((width * cols as u32, PANEL.1 * rows as u32), |root| {
        let areas = root.split_evenly((rows, cols));
        let slots: Vec<usize> = if by_precision {
            per_precision
                .iter()
                .enumerate()
                .flat_map(|(r, (_, g))| (0..g.len()).map(move |c| r * cols + c))
                .collect()
        } else {
            (0..panels.len()).collect()
        };
        for (((_, members), title), slot) in panels.iter().zip(&titles).zip(slots) {
            let cells: Vec<&CellView> = members.iter().map(|&i| with_curves[i]).collect();
            // A legend of more than a few seeds hides the curves.
            let legend = !aggregated && cells.len() <= MAX_LEGEND;
            draw_panel(&areas[slot], title, &cells, thr, legend)?;
        }
        Ok(())
    })?;
    let caption = if aggregated {
        format!(
            "Every cell's curves, one panel per precision ({} groups are too many for one panel each): look for the step where test loss drops after train loss (grokking), and for cells that never generalise.",
            groups(with_curves.iter().map(|c| c.group.clone())).len()
        )
    } else {
        "Train (thin) and test (thick) loss and accuracy per group, seeds overlaid (one colour each); ○ memorised (train accuracy ≥ threshold), ▲ generalised (test accuracy ≥ threshold): grokking is a test curve that drops long after the train curve.".to_string()
    };
    Ok(Some(Figure {
        id: "curves",
        title: "Training curves".into(),
        caption,
        svg: text,
    }))
}

/// One panel: loss (log y) above accuracy, one colour per cell.
pub fn draw_panel(
    area: &DrawingArea<SVGBackend, Shift>,
    title: &str,
    cells: &[&CellView],
    threshold: f64,
    legend: bool,
) -> Result<()> {
    let curves: Vec<&[crate::analysis::CurvePoint]> =
        cells.iter().filter_map(|c| c.curves.as_deref()).collect();
    let max_step = curves
        .iter()
        .filter_map(|c| c.last().map(|p| p.step))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let losses = curves
        .iter()
        .flat_map(|c| c.iter().flat_map(|p| [p.train_loss, p.test_loss]))
        .filter(|v| v.is_finite() && *v > 0.0);
    let (lo, hi) = super::bounds(losses);
    let (lo, hi) = ((lo * 0.8).max(1e-12), hi * 1.25);
    let (top, bottom) = area.split_vertically(PANEL.1 as i32 * 11 / 20);
    let mut loss = ChartBuilder::on(&top)
        .caption(title, font(15))
        .margin(6)
        .margin_right(18)
        .x_label_area_size(18)
        .y_label_area_size(52)
        .build_cartesian_2d(0f64..max_step, (lo..hi).log_scale())
        .map_err(plot_err)?;
    loss.configure_mesh()
        .y_desc("loss (log)")
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .x_label_formatter(&|_| String::new())
        .label_style(font(11))
        .light_line_style(WHITE)
        .draw()
        .map_err(plot_err)?;
    let mut acc = ChartBuilder::on(&bottom)
        .margin(6)
        .margin_right(18)
        .x_label_area_size(34)
        .y_label_area_size(52)
        .build_cartesian_2d(0f64..max_step, -0.02f64..1.05)
        .map_err(plot_err)?;
    acc.configure_mesh()
        .x_desc("step")
        .y_desc("accuracy")
        .x_labels(5)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .label_style(font(11))
        .light_line_style(WHITE)
        .draw()
        .map_err(plot_err)?;
    for (i, cell) in cells.iter().enumerate() {
        let Some(c) = cell.curves.as_deref() else {
            continue;
        };
        let color = palette(i);
        let pts = |f: fn(&crate::analysis::CurvePoint) -> f64| {
            c.iter()
                .map(move |p| (p.step as f64, f(p)))
                .filter(|(_, v)| v.is_finite())
        };
        let pos = |f: fn(&crate::analysis::CurvePoint) -> f64| pts(f).filter(|(_, v)| *v > 0.0);
        let name = seed_name(cell);
        loss.draw_series(LineSeries::new(
            pos(|p| p.train_loss),
            color.mix(0.5).stroke_width(1),
        ))
        .map_err(plot_err)?;
        let s = loss
            .draw_series(LineSeries::new(pos(|p| p.test_loss), color.stroke_width(2)))
            .map_err(plot_err)?;
        if legend {
            s.label(name).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        }
        acc.draw_series(LineSeries::new(
            pts(|p| p.train_acc),
            color.mix(0.5).stroke_width(1),
        ))
        .map_err(plot_err)?;
        acc.draw_series(LineSeries::new(pts(|p| p.test_acc), color.stroke_width(2)))
            .map_err(plot_err)?;
        if let Some(o) = cell.sig().map(|s| &s.outcome) {
            if let Some(m) = o.step_memorised {
                acc.draw_series(std::iter::once(Circle::new(
                    (m as f64, threshold),
                    5,
                    color.stroke_width(2),
                )))
                .map_err(plot_err)?;
            }
            if let Some(g) = o.step_generalised {
                acc.draw_series(std::iter::once(TriangleMarker::new(
                    (g as f64, threshold),
                    6,
                    color.filled(),
                )))
                .map_err(plot_err)?;
            }
        }
    }
    if legend {
        loss.configure_series_labels()
            .label_font(font(11))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(plot_err)?;
    }
    Ok(())
}

/// The seed's name in a legend ("seed 1"), or the cell's name without one.
fn seed_name(cell: &CellView) -> String {
    cell.name
        .split(", ")
        .find_map(|kv| kv.strip_prefix("seed="))
        .map(|s| format!("seed {s}"))
        .unwrap_or_else(|| cell.name.clone())
}
