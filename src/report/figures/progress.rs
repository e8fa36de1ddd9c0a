//! Figure 5: progress measures over training (science.md §7), for cells trained with
//! snapshots: one panel per measure, one line per cell, coloured by setting, with
//! the phase boundaries bitgrok computes as vertical lines.

use super::{
    font, grid_shape, plot_err, setting_entries, svg, tick, CellView, Dash, Figure, LegendStrip,
    Mark, SweepView, INK, TEXT, TITLE,
};
use crate::analysis::progress::{Phases, ProgressRow};
use crate::report::aggregate::Row;
use anyhow::Result;
use plotters::prelude::*;

const PANEL: (u32, u32) = (340, 270);
const MAX_COLS: usize = 4;

/// One panel of a figure over training steps: its title, the kind of axis it
/// needs, and the measure it draws from one row of type `R`.
pub(super) struct Measure<R> {
    pub(super) title: &'static str,
    get: fn(&R) -> f64,
    axis: Axis,
}

/// How a measure's values are drawn.
#[derive(Clone, Copy)]
pub(super) enum Axis {
    /// A positive quantity spanning decades: logarithmic.
    Log,
    /// A share in [0, 1]: linear, never below 0 (no negative fractions).
    Share,
    /// A quantity of either sign: linear.
    Signed,
}

impl<R> Measure<R> {
    fn log(&self) -> bool {
        matches!(self.axis, Axis::Log)
    }
    /// The least value the measure can take: its axis never reaches below it.
    fn least(&self) -> Option<f64> {
        matches!(self.axis, Axis::Share).then_some(0.0)
    }
}

pub(super) const fn measure<R>(title: &'static str, axis: Axis, get: fn(&R) -> f64) -> Measure<R> {
    Measure { title, get, axis }
}

const MEASURES: &[Measure<ProgressRow>] = &[
    measure("test loss", Axis::Log, |r| r.test_loss),
    measure("excluded loss (train, final keys out)", Axis::Log, |r| {
        r.excluded_loss
    }),
    measure("restricted loss (test, final keys only)", Axis::Log, |r| {
        r.restricted_loss
    }),
    measure("Gini of the embedding spectrum", Axis::Share, |r| r.gini),
    measure("sum of squared weights", Axis::Log, |r| r.weight_sq_sum),
    measure("quantized weights at zero (mean)", Axis::Share, |r| {
        r.zero_fraction_mean
    }),
    measure("attention distance from uniform", Axis::Share, |r| {
        r.attention_tv
    }),
    measure(
        "loss increase, attention made uniform (nats)",
        Axis::Signed,
        |r| r.ablation_loss_increase,
    ),
    measure("train-loss elasticity to score scale", Axis::Signed, |r| {
        r.score_elasticity
    }),
    measure("train-loss elasticity to ‖E_=‖", Axis::Signed, |r| {
        r.eq_elasticity
    }),
];

/// A phase boundary drawn: its legend name, dash and step.
type Boundary = (&'static str, Dash, fn(&Phases) -> Option<u64>);

/// The phase boundaries drawn.
const PHASES: &[Boundary] = &[
    ("circuit formation starts", Dash::Dashed, |p| {
        p.step_circuit_start
    }),
    ("cleanup starts", Dash::Dotted, |p| p.step_cleanup_start),
    ("cleanup ends", Dash::DashDot, |p| p.step_cleanup_end),
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
    let phases = |c: &CellView| c.sig().and_then(|s| s.phases.clone());
    let mut entries = setting_entries(view, |s| cells.iter().any(|c| c.setting == s));
    for &(name, dash, get) in PHASES {
        if cells
            .iter()
            .any(|c| phases(c).as_ref().and_then(get).is_some())
        {
            entries.push((name.to_string(), Mark::Line(INK, dash, 2)));
        }
    }
    let draw_phases = |chart: &mut Chart, c: &CellView, top: f64| -> Result<()> {
        let Some(p) = phases(c) else { return Ok(()) };
        let color = view.color(&c.setting);
        // Boundaries at the same snapshot sit 3 px apart, so none hides another.
        let height = {
            let ys = chart.plotting_area().get_pixel_range().1;
            ys.end - ys.start
        };
        let mut drawn: Vec<u64> = Vec::new();
        for &(_, dash, get) in PHASES {
            if let Some(step) = get(&p) {
                let dx = 3 * drawn.iter().filter(|&&s| s == step).count() as i32;
                drawn.push(step);
                chart
                    .plotting_area()
                    .draw(
                        &(EmptyElement::at((step as f64, top))
                            + PathElement::new(vec![(dx, 0), (dx, height)], dash.style(color, 2))),
                    )
                    .map_err(plot_err)?;
            }
        }
        Ok(())
    };
    let text = line_panels(
        view,
        &cells,
        |r| &r.progress,
        |r| r.step,
        MEASURES,
        &entries,
        &draw_phases,
    )?;
    Ok(Some(Figure {
        id: "progress",
        title: "Progress measures over training".into(),
        caption: caption(&cells),
        svg: text,
    }))
}

/// A panel's chart: steps across, the measure up.
pub(super) type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// Panels of measures over training steps, one per measure, one line per cell
/// coloured by setting, with `entries` as the legend (in the grid's empty slot when
/// it fits there); `extra(chart, cell, top)` draws on each panel after a cell's line.
pub(super) fn line_panels<R>(
    view: &SweepView,
    cells: &[&CellView],
    rows: fn(&Row) -> &[R],
    step: fn(&R) -> u64,
    measures: &[Measure<R>],
    entries: &[(String, Mark)],
    extra: &dyn Fn(&mut Chart, &CellView, f64) -> Result<()>,
) -> Result<String> {
    let max_step = cells
        .iter()
        .filter_map(|c| rows(c.row).last().map(step))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    // The legend fills the grid's empty slot when there is one, it fits there and
    // the slot costs no row (9 panels: 3 × 3 and a strip, not 5 × 2).
    let (grid_rows, cols) = grid_shape(measures.len() + 1, MAX_COLS);
    let in_slot = LegendStrip::new(entries, PANEL.0);
    let slot = grid_rows * cols > measures.len()
        && grid_rows <= grid_shape(measures.len(), MAX_COLS).0
        && in_slot.height() + 30 <= PANEL.1;
    let (grid_rows, cols) = if slot {
        (grid_rows, cols)
    } else {
        grid_shape(measures.len(), MAX_COLS)
    };
    let strip = LegendStrip::new(entries, PANEL.0 * cols as u32);
    let strip_h = if slot { 0 } else { strip.height() };
    svg(
        (PANEL.0 * cols as u32, PANEL.1 * grid_rows as u32 + strip_h),
        |root| {
            let (top, body) = root.split_vertically(strip_h);
            let areas = body.split_evenly((grid_rows, cols));
            if slot {
                let (_, below) = areas[measures.len()].split_vertically(30);
                in_slot.draw(&below)?;
            } else {
                strip.draw(&top)?;
            }
            for (area, m) in areas.iter().zip(measures) {
                // Log panels plot log10 of the value on a linear axis labelled 10^x.
                let value = |r: &R| {
                    let v = (m.get)(r);
                    if m.log() {
                        (v > 0.0).then(|| v.log10())
                    } else {
                        Some(v)
                    }
                    .filter(|v| v.is_finite())
                };
                let (lo, hi) = super::bounds(
                    cells
                        .iter()
                        .flat_map(|c| rows(c.row).iter().filter_map(value)),
                );
                let (bottom, top) = y_axis(lo, hi, m.least());
                let mut chart = ChartBuilder::on(area)
                    .caption(m.title, font(TITLE))
                    .margin(6)
                    .margin_right(16)
                    .x_label_area_size(40)
                    .y_label_area_size(62)
                    .build_cartesian_2d(0f64..max_step, bottom..top)
                    .map_err(plot_err)?;
                let digits = log_tick_digits(lo, hi);
                let log = m.log();
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
                            tick(*v, 2)
                        }
                    })
                    .label_style(font(TEXT))
                    .light_line_style(WHITE)
                    .draw()
                    .map_err(plot_err)?;
                for c in cells {
                    let color = view.color(&c.setting);
                    chart
                        .draw_series(LineSeries::new(
                            rows(c.row)
                                .iter()
                                .filter_map(|r| value(r).map(|v| (step(r) as f64, v))),
                            color.stroke_width(1),
                        ))
                        .map_err(plot_err)?;
                    extra(&mut chart, c, top)?;
                }
            }
            Ok(())
        },
    )
}

/// What the figure shows, and what its losses are measured against when a cell
/// lost its generalisation.
fn caption(cells: &[&CellView]) -> String {
    let mut text = format!(
        "Every stored snapshot of {} (one line each, colour = setting): excluded loss rising while test loss is still high is the circuit forming on the final key frequencies; the weight norm falling afterwards is cleanup. Vertical lines: the phase boundaries bitgrok computes (phase rule in README, \"Progress measures\"); boundaries at the same snapshot are drawn 3 px apart.",
        crate::text::count(cells.len(), "cell"),
    );
    let lost: Vec<String> = cells
        .iter()
        .filter_map(|c| {
            let o = &c.sig()?.outcome;
            let step = o.step_generalised.filter(|_| !o.generalised)?;
            Some(format!("{} (generalised at step {step})", c.name))
        })
        .collect();
    if !lost.is_empty() {
        text.push_str(&format!(
            " Not generalised at the end though generalised earlier: {}. The excluded and restricted losses are measured against the key frequencies of the final model, so for {} they are the frequencies of the model after it lost its generalisation, and no phase boundaries are drawn (the rule needs a model that ends generalised).",
            lost.join(", "),
            if lost.len() == 1 { "it" } else { "these" },
        ));
    }
    text
}

/// Mantissa digits of a log panel's tick labels (`1.5e3`) spanning `10^lo..10^hi`:
/// enough that its five ticks read differently (a sum of squares that barely moves
/// would otherwise show one number five times), whole powers over a decade or more.
fn log_tick_digits(lo: f64, hi: f64) -> usize {
    if hi - lo >= 1.0 {
        return 0;
    }
    let step = (1.0 - 10f64.powf(lo - hi)) / 5.0;
    ((-step.log10()).ceil() as usize).clamp(1, 4)
}

/// A panel's y axis: the values' range padded by 5 % each way, never below the
/// measure's least value.
fn y_axis(lo: f64, hi: f64, least: Option<f64>) -> (f64, f64) {
    let pad = (hi - lo) * 0.05;
    let bottom = least.map_or(lo - pad, |least| (lo - pad).max(least));
    (bottom, hi + pad)
}

#[cfg(test)]
mod tests {
    use super::super::fixture;
    use super::*;

    #[test]
    fn a_fraction_axis_never_goes_below_zero() {
        // All of a binary sweep's zero fractions are 0: `bounds` gives (−0.5, 0.5).
        let (lo, hi) = super::super::bounds([0.0, 0.0].into_iter());
        assert_eq!(y_axis(lo, hi, Some(0.0)), (0.0, 0.55));
        assert_eq!(y_axis(lo, hi, None), (-0.55, 0.55));
        let (bottom, top) = y_axis(0.2, 0.4, Some(0.0));
        assert!((bottom - 0.19).abs() < 1e-12 && (top - 0.41).abs() < 1e-12);
        let at_zero = MEASURES.iter().find(|m| m.title.contains("at zero"));
        assert_eq!(at_zero.and_then(|m| m.least()), Some(0.0));
    }

    #[test]
    fn log_ticks_of_a_narrow_range_read_differently() {
        // 2.00e5 to 2.06e5 (a ±1 model's sum of squares), 0.5 and 3 decades.
        for (lo, hi, digits) in [(2.0e5, 2.06e5, 3), (1.0, 10f64.sqrt(), 1), (1e-3, 1.0, 0)] {
            let (lo, hi) = (f64::log10(lo), f64::log10(hi));
            let d = log_tick_digits(lo, hi);
            assert_eq!(d, digits, "{lo}..{hi}");
            if d > 0 {
                let labels: Vec<String> = (0..5)
                    .map(|i| format!("{:.*e}", d, 10f64.powf(lo + (hi - lo) * i as f64 / 4.0)))
                    .collect();
                let distinct: std::collections::HashSet<_> = labels.iter().collect();
                assert_eq!(distinct.len(), 5, "{labels:?}");
            }
        }
    }

    #[test]
    fn phase_boundaries_are_drawn_and_a_lost_generalisation_is_named() {
        let mut rows = fixture::rows(2, |i, s| {
            if i == 0 {
                // Circuit formation and cleanup start at the same snapshot.
                s.phases = Some(Phases {
                    step_circuit_start: Some(300),
                    step_cleanup_start: Some(300),
                    step_cleanup_end: Some(800),
                });
            } else {
                s.outcome.generalised = false;
                s.outcome.step_generalised = Some(400);
                s.phases = None;
            }
        });
        for r in &mut rows {
            r.progress = fixture::progress(1000);
        }
        let view = fixture::view(&rows, &["fp32", "int2"]);
        let fig = figure(&view).unwrap().unwrap();
        // Each boundary: one line per panel, one legend line.
        for (_, dash, _) in PHASES {
            let array = dash.marker().unwrap().1;
            let n = fig
                .svg
                .matches(&format!("stroke-dasharray=\"{array}\""))
                .count();
            assert_eq!(n, MEASURES.len() + 1, "{dash:?}");
        }
        assert!(fig.svg.contains(">\ncleanup starts\n</text>"));
        // The two boundaries at step 300 are 3 px apart in every panel.
        let xs = |array: &str| -> Vec<i32> {
            fig.svg
                .split("<polyline")
                .filter(|e| e.contains(&format!("stroke-dasharray=\"{array}\"")))
                .filter_map(|e| {
                    let pts = e.split("points=\"").nth(1)?.split('"').next()?;
                    let first = pts.split_whitespace().next()?;
                    let last = pts.split_whitespace().last()?;
                    // Vertical lines only (the legend's are horizontal).
                    (first.split(',').next() == last.split(',').next())
                        .then(|| first.split(',').next().unwrap().parse().unwrap())
                })
                .collect()
        };
        let (dashed, dotted) = (xs("7 4"), xs("2 3"));
        assert_eq!(dashed.len(), MEASURES.len());
        for (a, b) in dashed.iter().zip(&dotted) {
            assert_eq!(b - a, 3, "dashed at {a}, dotted at {b}");
        }
        assert!(
            fig.caption
                .contains("int2, seed=1 (generalised at step 400)"),
            "{}",
            fig.caption
        );
        assert!(fig.caption.contains("key frequencies of the final model"));

        // Without the lost cell, no such sentence.
        let view = fixture::view(&rows[..1], &["fp32"]);
        let fig = figure(&view).unwrap().unwrap();
        assert!(
            !fig.caption.contains("generalised earlier"),
            "{}",
            fig.caption
        );
    }
}
