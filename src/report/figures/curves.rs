//! Figure 1: train and test loss (log scale) and accuracy against step.

use super::{
    font, grid_shape, groups, panel_layout, plot_err, setting_entries, svg, tick, CellView, Dash,
    Figure, LegendStrip, Mark, Shape, SweepView, INK, TEXT, TITLE,
};
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

const PANEL: (u32, u32) = (380, 460);

/// How the two curves of a cell are told apart, besides their width.
pub const TRAIN: Dash = Dash::Dashed;
pub const TEST: Dash = Dash::Solid;

/// Small multiples: one panel per group of cells equal but for the seed (seeds
/// overlaid), panels in precision order; one panel per precision past
/// `MAX_PANELS` groups. Colour = setting, as in every figure.
pub fn figure(view: &SweepView) -> Result<Option<Figure>> {
    let with_curves: Vec<&CellView> = view.cells.iter().filter(|c| c.curves.is_some()).collect();
    if with_curves.is_empty() {
        return Ok(None);
    }
    let mut panels = groups(with_curves.iter().map(|c| c.setting.clone()));
    let aggregated = panels.len() > super::MAX_PANELS;
    if aggregated {
        panels = groups(with_curves.iter().map(|c| c.precision.clone()));
    }
    // Precision order first, then first appearance.
    panels.sort_by_key(|(_, m)| {
        let p = &with_curves[m[0]].precision;
        view.precisions.iter().position(|x| x == p)
    });
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
    let (width, max_cols) = panel_layout(PANEL.0, titles.iter().map(|t| t.as_str()), TITLE, 4);
    let (rows, cols) = grid_shape(panels.len(), max_cols);
    let mut entries = line_entries();
    // Panel titles name the setting; swatches only when a panel mixes settings.
    if aggregated {
        entries.extend(setting_entries(view, |s| {
            with_curves.iter().any(|c| c.setting == s)
        }));
    }
    let legend = LegendStrip::new(&entries, width * cols as u32);
    let thr = view.analysis.accuracy_threshold;
    let text = svg(
        (width * cols as u32, PANEL.1 * rows as u32 + legend.height()),
        |root| {
            let (strip, body) = root.split_vertically(legend.height());
            legend.draw(&strip)?;
            let areas = body.split_evenly((rows, cols));
            for (((_, members), title), area) in panels.iter().zip(&titles).zip(&areas) {
                let cells: Vec<(&CellView, RGBColor)> = members
                    .iter()
                    .map(|&i| (with_curves[i], view.color(&with_curves[i].setting)))
                    .collect();
                draw_panel(area, title, &cells, thr)?;
            }
            Ok(())
        },
    )?;
    let how = "train loss and accuracy dashed and thin, test solid and thick; ○ memorised (train accuracy ≥ threshold), ▲ generalised (test accuracy ≥ threshold); colour = setting";
    let caption = if aggregated {
        format!(
            "Every cell's curves, one panel per precision ({} groups are too many for one panel each); {how}: look for the step where test loss drops after train loss (grokking), and for cells that never generalise.",
            groups(with_curves.iter().map(|c| c.setting.clone())).len()
        )
    } else {
        format!("Loss and accuracy per setting, seeds overlaid; {how}: grokking is a test curve that drops long after the train curve.")
    };
    Ok(Some(Figure {
        id: "curves",
        title: "Training curves".into(),
        caption,
        svg: text,
    }))
}

/// The legend of the curves' line styles and step marks.
pub fn line_entries() -> Vec<(String, Mark)> {
    vec![
        ("train".to_string(), Mark::Line(INK, TRAIN, 1)),
        ("test".to_string(), Mark::Line(INK, TEST, 2)),
        (
            "memorised".to_string(),
            Mark::Marker(Shape::Circle, INK, false),
        ),
        (
            "generalised".to_string(),
            Mark::Marker(Shape::Triangle, INK, true),
        ),
    ]
}

/// One cell's curves with their legend, for its page (the page names the cell).
pub fn cell_figure(cell: &CellView, color: RGBColor, threshold: f64) -> Result<String> {
    let entries = line_entries();
    let legend = LegendStrip::new(&entries, PANEL.0 + 60);
    svg((PANEL.0 + 60, PANEL.1 + legend.height()), |root| {
        let (strip, body) = root.split_vertically(legend.height());
        legend.draw(&strip)?;
        draw_panel(&body, "", &[(cell, color)], threshold)
    })
}

/// One panel: loss (log y) above accuracy, each cell in its colour; `title` may be
/// empty.
pub fn draw_panel(
    area: &DrawingArea<SVGBackend, Shift>,
    title: &str,
    cells: &[(&CellView, RGBColor)],
    threshold: f64,
) -> Result<()> {
    let curves: Vec<&[crate::analysis::CurvePoint]> = cells
        .iter()
        .filter_map(|(c, _)| c.curves.as_deref())
        .collect();
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
    let (_, h) = area.dim_in_pixel();
    let (top, bottom) = area.split_vertically(h as i32 * 11 / 20);
    let mut builder = ChartBuilder::on(&top);
    if !title.is_empty() {
        builder.caption(title, font(TITLE));
    }
    let mut loss = builder
        .margin(6)
        .margin_right(18)
        .x_label_area_size(10)
        .y_label_area_size(62)
        .build_cartesian_2d(0f64..max_step, (lo..hi).log_scale())
        .map_err(plot_err)?;
    loss.configure_mesh()
        .y_desc("loss (log)")
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .x_label_formatter(&|_| String::new())
        .label_style(font(TEXT))
        .light_line_style(WHITE)
        .draw()
        .map_err(plot_err)?;
    let mut acc = ChartBuilder::on(&bottom)
        .margin(6)
        .margin_right(18)
        .x_label_area_size(40)
        .y_label_area_size(62)
        .build_cartesian_2d(0f64..max_step, -0.02f64..1.05)
        .map_err(plot_err)?;
    acc.configure_mesh()
        .x_desc("step")
        .y_desc("accuracy")
        .x_labels(5)
        .y_labels(6)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| tick(*v, 1))
        .label_style(font(TEXT))
        .light_line_style(WHITE)
        .draw()
        .map_err(plot_err)?;
    for &(cell, color) in cells {
        let Some(c) = cell.curves.as_deref() else {
            continue;
        };
        let pts = |f: fn(&crate::analysis::CurvePoint) -> f64| {
            c.iter()
                .map(move |p| (p.step as f64, f(p)))
                .filter(|(_, v)| v.is_finite())
        };
        let pos = |f: fn(&crate::analysis::CurvePoint) -> f64| pts(f).filter(|(_, v)| *v > 0.0);
        loss.draw_series(LineSeries::new(
            pos(|p| p.train_loss),
            TRAIN.style(color, 1),
        ))
        .map_err(plot_err)?;
        loss.draw_series(LineSeries::new(pos(|p| p.test_loss), TEST.style(color, 2)))
            .map_err(plot_err)?;
        acc.draw_series(LineSeries::new(pts(|p| p.train_acc), TRAIN.style(color, 1)))
            .map_err(plot_err)?;
        acc.draw_series(LineSeries::new(pts(|p| p.test_acc), TEST.style(color, 2)))
            .map_err(plot_err)?;
        if let Some(o) = cell.sig().map(|s| &s.outcome) {
            let area = acc.plotting_area();
            if let Some(m) = o.step_memorised {
                Shape::Circle.draw(area, (m as f64, threshold), 5, color, false)?;
            }
            if let Some(g) = o.step_generalised {
                Shape::Triangle.draw(area, (g as f64, threshold), 6, color, true)?;
            }
        }
    }
    Ok(())
}
