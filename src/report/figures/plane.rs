//! Figure 4: the algorithm plane, Zhong et al.'s clock score against their pizza
//! score (means over the key frequencies), one point per cell, with the label
//! regions of the sweep's `pattern_min_margin` drawn: the quantity the label rests
//! on.

use super::{bounds, font, plot_err, svg, Figure, SweepView};
use crate::analysis::labels::Label;
use crate::analysis::Signature;
use crate::report::aggregate::{fmt_fraction, mean_pattern};
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
    name: "clock score (mean over key frequencies)",
    get: |s| mean_pattern(s, |x| x.clock),
};
const Y: Encoding = Encoding {
    name: "pizza score (mean over key frequencies)",
    get: |s| mean_pattern(s, |x| x.pizza),
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
                s.algorithm.label != Label::NotGeneralised,
            ))
        })
        .collect();
    if points.is_empty() {
        return Ok(None);
    }
    let margin = view.analysis.pattern_min_margin;
    // One square range over both scores, so the diagonal is at 45°.
    let (lo, hi) = bounds(points.iter().flat_map(|p| [p.1, p.2]));
    let pad = 0.05 * (hi - lo).max(0.05);
    let (lo, hi) = (lo - pad, (hi + pad).min(1.02));
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
            .build_cartesian_2d(lo..hi, lo..hi)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc(X.name)
            .y_desc(Y.name)
            .label_style(font(11))
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
            // Clock's name just under the diagonal's upper end, clear of the legend.
            let anchor = if offset < 0.0 {
                (hi - 0.14 * (hi - lo), hi - 0.3 * (hi - lo))
            } else {
                (lo + 0.05 * (hi - lo), hi - 0.06 * (hi - lo))
            };
            chart
                .draw_series(std::iter::once(Text::new(
                    name.to_string(),
                    anchor,
                    font(13).color(&color),
                )))
                .map_err(plot_err)?;
        }
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
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(plot_err)?;
        Ok(())
    })?;
    Ok(Some(Figure {
        id: "algorithm_plane",
        title: "Algorithm plane".into(),
        caption: format!(
            "One point per analysed cell with key frequencies, colour = setting, size = {} ({}), hollow = did not generalise (label not-generalised). Axes: Zhong et al.'s clock and pizza scores (2ρ − 1 of the logits against cos(w(a+b−c)) and |cos(w(a−b)/2)|·cos(w(a+b−c)), each key frequency isolated in the embedding; 1 = perfect match, 0.80 = the other pattern's perfect model), averaged over the key frequencies. Shaded: where a frequency's pattern is clock or pizza (one score leads by ≥ {}); a model is labelled clock or pizza only when every key frequency is, see pattern_per_frequency in the cells table.",
            SIZE_BY.name,
            match (slo.is_finite(), slo < shi) {
                (false, _) => "absent".to_string(),
                (true, false) => fmt_fraction(slo),
                (true, true) => format!("{}–{}", fmt_fraction(slo), fmt_fraction(shi)),
            },
            margin
        ),
        svg: text,
    }))
}
