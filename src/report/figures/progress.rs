//! Figure 5: progress measures over training (science.md §7), for cells trained with
//! snapshots: one panel per measure, one line per cell, coloured by setting.

use super::{font, plot_err, svg, CellView, Figure, LegendStrip, SweepView};
use crate::analysis::progress::ProgressRow;
use anyhow::Result;
use plotters::prelude::*;

const PANEL: (u32, u32) = (360, 260);
const COLS: usize = 3;

/// One panel: which measure, and whether its axis is logarithmic.
struct Measure {
    title: &'static str,
    get: fn(&ProgressRow) -> f64,
    log: bool,
}

const MEASURES: &[Measure] = &[
    Measure {
        title: "test loss",
        get: |r| r.test_loss,
        log: true,
    },
    Measure {
        title: "excluded loss (train, final keys removed)",
        get: |r| r.excluded_loss,
        log: true,
    },
    Measure {
        title: "restricted loss (test, final keys only)",
        get: |r| r.restricted_loss,
        log: true,
    },
    Measure {
        title: "Gini of the embedding spectrum",
        get: |r| r.gini,
        log: false,
    },
    Measure {
        title: "sum of squared weights",
        get: |r| r.weight_sq_sum,
        log: true,
    },
    Measure {
        title: "quantized weights at zero (mean fraction)",
        get: |r| r.zero_fraction_mean,
        log: false,
    },
    Measure {
        title: "attention distance from uniform",
        get: |r| r.attention_tv,
        log: false,
    },
];

pub fn figure(view: &SweepView) -> Result<Option<Figure>> {
    let cells: Vec<&CellView> = view
        .cells
        .iter()
        .filter(|c| !c.row.progress.is_empty())
        .collect();
    if cells.is_empty() {
        return Ok(None);
    }
    let max_step = cells
        .iter()
        .filter_map(|c| c.row.progress.last().map(|r| r.step))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let rows = MEASURES.len().div_ceil(COLS);
    let entries: Vec<(String, RGBColor)> = view
        .settings
        .iter()
        .filter(|p| cells.iter().any(|c| &c.setting == *p))
        .map(|p| (p.clone(), view.color(p)))
        .collect();
    let legend = LegendStrip::new(&entries, PANEL.0 * COLS as u32);
    let text = svg(
        (
            PANEL.0 * COLS as u32,
            PANEL.1 * rows as u32 + legend.height(),
        ),
        |root| {
            let (strip, body) = root.split_vertically(legend.height());
            legend.draw(&strip)?;
            for (area, m) in body.split_evenly((rows, COLS)).iter().zip(MEASURES) {
                // Log panels plot log10 of the value on a linear axis labelled 10^x.
                let value = |r: &ProgressRow| {
                    let v = (m.get)(r);
                    if m.log {
                        (v > 0.0).then(|| v.log10())
                    } else {
                        Some(v)
                    }
                    .filter(|v| v.is_finite())
                };
                let (lo, hi) = super::bounds(
                    cells
                        .iter()
                        .flat_map(|c| c.row.progress.iter().filter_map(value)),
                );
                let pad = (hi - lo) * 0.05;
                let mut chart = ChartBuilder::on(area)
                    .caption(m.title, font(13))
                    .margin(6)
                    .margin_right(14)
                    .x_label_area_size(30)
                    .y_label_area_size(50)
                    .build_cartesian_2d(0f64..max_step, lo - pad..hi + pad)
                    .map_err(plot_err)?;
                // Within a decade, whole powers of ten would repeat: show two digits.
                let digits = if hi - lo < 1.0 { 1 } else { 0 };
                let log = m.log;
                chart
                    .configure_mesh()
                    .x_desc("step")
                    .x_labels(4)
                    .x_label_formatter(&|v| format!("{v:.0}"))
                    .y_labels(5)
                    .y_label_formatter(&|v| {
                        if log {
                            format!("{:.*e}", digits, 10f64.powf(*v))
                        } else {
                            format!("{v:.2}")
                        }
                    })
                    .label_style(font(10))
                    .light_line_style(WHITE)
                    .draw()
                    .map_err(plot_err)?;
                for c in &cells {
                    let color = view.color(&c.setting);
                    chart
                        .draw_series(LineSeries::new(
                            c.row
                                .progress
                                .iter()
                                .filter_map(|r| value(r).map(|v| (r.step as f64, v))),
                            color.mix(0.8).stroke_width(1),
                        ))
                        .map_err(plot_err)?;
                }
            }
            Ok(())
        },
    )?;
    Ok(Some(Figure {
        id: "progress",
        title: "Progress measures over training".into(),
        caption: format!(
            "Every stored snapshot of {} cell{} (one line each, colour by setting): excluded loss rising while test loss is still high is the circuit forming on the final key frequencies; the weight norm falling afterwards is cleanup (phase rule in README, \"Progress measures\").",
            cells.len(),
            if cells.len() == 1 { "" } else { "s" }
        ),
        svg: text,
    }))
}
