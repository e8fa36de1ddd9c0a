//! Figure 4: the algorithm plane, gradient symmetricity against distance
//! irrelevance, one point per cell, with the label regions of the sweep's analysis
//! settings drawn.

use super::{bounds, font, plot_err, svg, Figure, SweepView};
use crate::analysis::Signature;
use crate::report::aggregate::fmt_fraction;
use anyhow::Result;
use plotters::prelude::*;

/// A numeric signature field drawn as an encoding of the points.
pub struct Encoding {
    pub name: &'static str,
    pub get: fn(&Signature) -> Option<f64>,
}

/// Point size: the one place to show another numeric signature field (e.g.
/// attention non-uniformity) on the plane; the legend and caption follow.
pub const SIZE_BY: Encoding = Encoding {
    name: "final test accuracy",
    get: |s| s.outcome.final_test_acc,
};

const X: Encoding = Encoding {
    name: "distance irrelevance",
    get: |s| s.algorithm.distance_irrelevance,
};
const Y: Encoding = Encoding {
    name: "gradient symmetricity",
    get: |s| Some(s.algorithm.gradient_symmetricity),
};

pub fn figure(view: &SweepView) -> Result<Option<Figure>> {
    let points: Vec<(&str, f64, f64, Option<f64>, bool)> = view
        .analysed()
        .filter_map(|c| {
            let s = c.sig()?;
            Some((
                c.setting.as_str(),
                (X.get)(s)?,
                (Y.get)(s)?,
                (SIZE_BY.get)(s),
                s.algorithm.label != "none",
            ))
        })
        .collect();
    if points.is_empty() {
        return Ok(None);
    }
    let a = &view.analysis;
    let (ylo, _) = bounds(points.iter().map(|p| p.2));
    let ylo = ylo.min(0.0) - 0.02;
    let (slo, shi) = points
        .iter()
        .filter_map(|p| p.3)
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
    let radius = |v: Option<f64>| match v {
        Some(v) if shi > slo => 3.0 + 6.0 * ((v - slo) / (shi - slo)).clamp(0.0, 1.0),
        _ => 5.0,
    };
    let text = svg((760, 560), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("algorithm plane", font(15))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(-0.02f64..1.02, ylo..1.03)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc(X.name)
            .y_desc(Y.name)
            .label_style(font(11))
            .light_line_style(WHITE)
            .draw()
            .map_err(plot_err)?;
        let d = a.clock_min_distance_irrelevance;
        let regions = [
            (
                "pizza",
                [(-0.02, a.pizza_min_symmetricity), (d, 1.03)],
                RGBColor(230, 159, 0),
            ),
            (
                "clock",
                [(d, ylo), (1.02, a.clock_max_symmetricity)],
                RGBColor(0, 114, 178),
            ),
        ];
        for (name, r, color) in regions {
            chart
                .draw_series(std::iter::once(Rectangle::new(r, color.mix(0.12).filled())))
                .map_err(plot_err)?;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    r,
                    color.mix(0.6).stroke_width(1),
                )))
                .map_err(plot_err)?;
            let anchor = if name == "pizza" {
                (r[0].0 + 0.02, r[0].1 - 0.01)
            } else {
                (r[1].0 - 0.12, r[1].1 - 0.01)
            };
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{name} region"),
                    anchor,
                    font(12).color(&color),
                )))
                .map_err(plot_err)?;
        }
        chart
            .draw_series(std::iter::once(Text::new(
                "elsewhere: mixed",
                (0.02, ylo + 0.04),
                font(12).color(&BLACK.mix(0.6)),
            )))
            .map_err(plot_err)?;
        for p in &view.settings {
            let color = view.color(p);
            let mine: Vec<_> = points.iter().filter(|q| q.0 == p).collect();
            chart
                .draw_series(mine.iter().map(|&&(_, x, y, s, generalised)| {
                    let style = if generalised {
                        color.mix(0.8).filled()
                    } else {
                        color.stroke_width(2)
                    };
                    Circle::new((x, y), radius(s), style)
                }))
                .map_err(plot_err)?
                .label(p.as_str())
                .legend(move |(x, y)| Circle::new((x + 5, y), 5, color.filled()));
        }
        chart
            .configure_series_labels()
            .label_font(font(11))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .position(SeriesLabelPosition::MiddleLeft)
            .draw()
            .map_err(plot_err)?;
        Ok(())
    })?;
    Ok(Some(Figure {
        id: "algorithm_plane",
        title: "Algorithm plane".into(),
        caption: format!(
            "One point per cell, colour = setting, size = {} ({}), hollow = did not generalise (label not-generalised); the regions are the symmetricity rule of the labels (pizza: symmetricity ≥ {} and distance irrelevance < {}, clock: symmetricity ≤ {} and distance irrelevance ≥ {}; the label also reads the a − b share and attention uniformity, see the cells table): do the settings fall in the same region? Symmetricity is informative only when attention is not uniform.",
            SIZE_BY.name,
            match (slo.is_finite(), slo < shi) {
                (false, _) => "absent".to_string(),
                (true, false) => fmt_fraction(slo),
                (true, true) => format!("{}–{}", fmt_fraction(slo), fmt_fraction(shi)),
            },
            a.pizza_min_symmetricity,
            a.clock_min_distance_irrelevance,
            a.clock_max_symmetricity,
            a.clock_min_distance_irrelevance
        ),
        svg: text,
    }))
}
