//! Figure: attention routing per cell, the level FINDINGS' headline rests on. Left:
//! the all-pairs loss increase when position-2 attention is made uniform (what the
//! `routing` column reads), with the sweep's `routing_min_loss_increase` drawn.
//! Right: the `=` embedding's norm relative to a number token's, the read-out
//! query's source in li2024.

use super::{font, plot_err, setting_entries, svg, Figure, LegendStrip, SweepView};
use super::{CellView, Shape, HEADING, INK, TEXT};
use anyhow::Result;
use plotters::prelude::*;

/// Loss increases at or below this (the exact 0 and round-off of models that need
/// no attention) are drawn on the axis floor.
const FLOOR: f64 = 1e-6;

/// One strip panel: a measure per cell, on a log axis.
struct Strip {
    title: &'static str,
    y_desc: &'static str,
    get: fn(&CellView) -> Option<f64>,
}

const STRIPS: [Strip; 2] = [
    Strip {
        title: "loss increase, attention made uniform",
        y_desc: "nats (log; ≤ 1e-6 drawn at 1e-6)",
        get: |c| {
            c.sig()
                .map(|s| s.algorithm.ablation.loss_increase.max(FLOOR))
        },
    },
    Strip {
        title: "‖E_=‖ / median number-token norm",
        y_desc: "ratio (log)",
        get: |c| {
            c.sig()
                .map(|s| s.algorithm.query.eq_norm_ratio)
                .filter(|v| *v > 0.0)
        },
    },
];

/// log10 of the decade range that holds `values` and `extra`, at least one decade.
fn decades(values: impl Iterator<Item = f64>, extra: Option<f64>) -> (f64, f64) {
    let (lo, hi) = values
        .chain(extra)
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v.log10()), h.max(v.log10()))
        });
    if lo > hi {
        return (-1.0, 0.0);
    }
    let (lo, hi) = (lo.floor(), hi.ceil());
    (lo, hi.max(lo + 1.0))
}

pub fn figure(view: &SweepView) -> Result<Option<Figure>> {
    let cells: Vec<&CellView> = view.analysed().filter(|c| c.sig().is_some()).collect();
    if cells.is_empty() {
        return Ok(None);
    }
    let settings = view.settings_among(&cells);
    let np = settings.len();
    let threshold = view.analysis.routing_min_loss_increase;
    let entries = setting_entries(view, |s| cells.iter().any(|c| c.setting == s));
    let width = 1100;
    let legend = LegendStrip::new(&entries, width);
    let text = svg((width, 380 + legend.height()), |root| {
        let (charts, strip) = root.split_vertically(380);
        legend.draw(&strip)?;
        let panels = charts.split_evenly((1, 2));
        for (k, (area, m)) in panels.iter().zip(STRIPS.iter()).enumerate() {
            let line = (k == 0).then_some(threshold);
            let (lo, hi) = decades(cells.iter().filter_map(|c| (m.get)(c)), line);
            let mut chart = ChartBuilder::on(area)
                .caption(m.title, font(HEADING))
                .margin(8)
                .margin_right(16)
                .x_label_area_size(30)
                .y_label_area_size(70)
                .build_cartesian_2d(-0.5f64..np as f64 - 0.5, lo..hi)
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .x_desc("setting (colours as in the legend below)")
                .y_desc(m.y_desc)
                .x_labels(0)
                .y_labels((hi - lo) as usize + 1)
                .y_label_formatter(&|v| format!("1e{}", v.round() as i64))
                .label_style(font(TEXT))
                .light_line_style(WHITE)
                .draw()
                .map_err(plot_err)?;
            if let Some(t) = line {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(-0.5, t.log10()), (np as f64 - 0.5, t.log10())],
                        INK.stroke_width(1),
                    )))
                    .map_err(plot_err)?;
            }
            for (i, p) in settings.iter().enumerate() {
                let color = view.color(p);
                let mine: Vec<&&CellView> = cells.iter().filter(|c| &c.setting == *p).collect();
                let n = mine.len().max(1) as f64;
                for (j, c) in mine.iter().enumerate() {
                    let Some(v) = (m.get)(c) else { continue };
                    let x = i as f64 + 0.6 * ((j as f64 + 0.5) / n - 0.5);
                    Shape::Circle.draw(
                        chart.plotting_area(),
                        (x, v.log10()),
                        5,
                        color,
                        c.generalised(),
                    )?;
                }
            }
        }
        Ok(())
    })?;
    Ok(Some(Figure {
        id: "routing",
        title: "Attention routing".into(),
        caption: format!(
            "One dot per cell, colour = setting, hollow = not generalised. Left: how much the all-pairs loss rises when position-2 attention is replaced by uniform (the `routing` column: content-dependent at or above the line, {threshold} nats; increases at or below 1e-6, including the exact 0 of constant attention, sit on the floor). Right: the `=` embedding's norm relative to the median number-token norm (in li2024 the read-out query's only source)."
        ),
        svg: text,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_axis_holds_every_value_and_the_threshold_in_whole_decades() {
        assert_eq!(decades([1e-6, 3.0].into_iter(), Some(0.05)), (-6.0, 1.0));
        assert_eq!(decades([0.02, 0.03].into_iter(), None), (-2.0, -1.0));
        assert_eq!(decades([1.0].into_iter(), None), (0.0, 1.0));
        assert_eq!(decades(std::iter::empty(), None), (-1.0, 0.0));
        // Values the floor replaces never reach the axis as zeros or negatives.
        assert_eq!(decades([0.0, -1e-9, 2.0].into_iter(), None), (0.0, 1.0));
    }
}
