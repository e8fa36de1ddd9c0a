//! Figure 3: neurons per key frequency and the fraction of neurons clustered, per
//! setting (precision and what else tells cells of a precision apart).

use super::{font, plot_err, setting_entries, svg, text_width, Figure, LegendStrip, SweepView};
use super::{HEADING, TEXT};
use crate::report::aggregate::median;
use anyhow::Result;
use plotters::prelude::*;

pub fn figure(view: &SweepView) -> Result<Option<Figure>> {
    let cells: Vec<_> = view.analysed().collect();
    if cells.is_empty() {
        return Ok(None);
    }
    let kmax = cells
        .iter()
        .map(|c| {
            c.sig()
                .map_or(0, |s| s.embedding.norm_by_frequency.len().saturating_sub(1))
        })
        .max()
        .unwrap_or(1)
        .max(1);
    let np = view.settings.len().max(1);
    let max_neurons = cells
        .iter()
        .flat_map(|c| {
            c.sig()
                .into_iter()
                .flat_map(|s| s.neurons.neurons_per_key_frequency.iter())
        })
        .map(|k| k.neurons)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    // Precision i sits at an offset within each frequency's slot.
    let offset = |p: &str| {
        let i = view.settings.iter().position(|x| x == p).unwrap_or(0);
        (i as f64 + 0.5) / np as f64 - 0.5
    };
    // The legend goes under both panels: inside the bar chart it hid the tallest bars.
    let entries = setting_entries(view, |_| true);
    let legend = LegendStrip::new(&entries, 1100);
    let text = svg((1100, 380 + legend.height()), |root| {
        let (charts, strip) = root.split_vertically(380);
        legend.draw(&strip)?;
        let (left, right) = charts.split_horizontally(760);
        let mut chart = ChartBuilder::on(&left)
            .caption("neurons per key frequency", font(HEADING))
            .margin(8)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(0.5f64..kmax as f64 + 0.5, 0f64..max_neurons * 1.1)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("frequency k")
            .y_desc("clustered neurons")
            .x_labels(kmax.min(30))
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style(font(TEXT))
            .light_line_style(WHITE)
            .draw()
            .map_err(plot_err)?;
        for p in &view.settings {
            let color = view.color(p);
            let pts: Vec<(f64, f64)> = cells
                .iter()
                .filter(|c| &c.setting == p)
                .flat_map(|c| {
                    c.sig()
                        .into_iter()
                        .flat_map(|s| s.neurons.neurons_per_key_frequency.iter())
                })
                .map(|k| (k.frequency as f64 + 0.8 * offset(p), k.neurons as f64))
                .collect();
            chart
                .draw_series(pts.iter().map(|&(x, y)| {
                    Rectangle::new(
                        [(x - 0.35 / np as f64, 0.0), (x + 0.35 / np as f64, y)],
                        color.mix(0.45).filled(),
                    )
                }))
                .map_err(plot_err)?;
        }

        let mut frac = ChartBuilder::on(&right)
            .caption("fraction of neurons clustered", font(HEADING))
            .margin(8)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..np as f64 - 0.5, 0f64..1.05)
            .map_err(plot_err)?;
        // Setting names under the dots when they fit in the panel's 300 px, else the
        // legend's colours say which is which.
        let fits = view
            .settings
            .iter()
            .all(|n| text_width(n, TEXT) as usize * np < 300);
        let names = if fits {
            view.settings.clone()
        } else {
            Vec::new()
        };
        frac.configure_mesh()
            .x_desc(if fits {
                "setting"
            } else {
                "setting (colours as in the legend below)"
            })
            .y_desc("clustered / all neurons")
            .x_labels(np * 2 + 1)
            .x_label_formatter(&|v| {
                let i = v.round();
                if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
                    names[i as usize].clone()
                } else {
                    String::new()
                }
            })
            .label_style(font(TEXT))
            .light_line_style(WHITE)
            .draw()
            .map_err(plot_err)?;
        for (i, p) in view.settings.iter().enumerate() {
            let color = view.color(p);
            let mut xs: Vec<f64> = cells
                .iter()
                .filter(|c| &c.setting == p)
                .filter_map(|c| c.sig().map(|s| s.neurons.fraction_clustered))
                .collect();
            let n = xs.len().max(1) as f64;
            frac.draw_series(xs.iter().enumerate().map(|(j, &y)| {
                let x = i as f64 + 0.5 * ((j as f64 + 0.5) / n - 0.5);
                Circle::new((x, y), 4, color.filled())
            }))
            .map_err(plot_err)?;
            if let Some(m) = median(&mut xs) {
                frac.draw_series(std::iter::once(PathElement::new(
                    vec![(i as f64 - 0.35, m), (i as f64 + 0.35, m)],
                    BLACK.stroke_width(2),
                )))
                .map_err(plot_err)?;
            }
        }
        Ok(())
    })?;
    Ok(Some(Figure {
        id: "neurons",
        title: "Neuron clusters".into(),
        caption: "Left: clustered MLP neurons of each key frequency, one translucent bar per cell and key frequency (colour = setting; bars of a setting's seeds overlap). Right: the fraction of neurons clustered, one dot per cell, black bar = the setting's median.".into(),
        svg: text,
    }))
}
