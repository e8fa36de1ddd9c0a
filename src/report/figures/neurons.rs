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
    let settings = view.settings_among(&cells);
    let np = settings.len().max(1);
    // Per cell, its key frequencies' clustered neurons, largest first: seeds use
    // different frequencies, so ranks (not frequencies) line cells up.
    let ranked: Vec<(&String, Vec<f64>)> = cells
        .iter()
        .filter_map(|c| {
            let s = c.sig()?;
            let mut n: Vec<f64> = s
                .neurons
                .neurons_per_key_frequency
                .iter()
                .map(|k| k.neurons as f64)
                .collect();
            n.sort_by(|a, b| b.total_cmp(a));
            Some((&c.setting, n))
        })
        .collect();
    let ranks = ranked
        .iter()
        .map(|(_, n)| n.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let max_neurons = ranked
        .iter()
        .flat_map(|(_, n)| n.first())
        .fold(1.0f64, |a, &b| a.max(b));
    // Setting i sits at an offset within each rank's slot, so settings do not cover
    // each other.
    let offset = |p: &String| {
        let i = settings.iter().position(|x| *x == p).unwrap_or(0);
        0.5 * ((i as f64 + 0.5) / np as f64 - 0.5)
    };
    // The legend goes under both panels: inside the chart it hid the data.
    let entries = setting_entries(view, |_| true);
    let legend = LegendStrip::new(&entries, 1100);
    let text = svg((1100, 380 + legend.height()), |root| {
        let (charts, strip) = root.split_vertically(380);
        legend.draw(&strip)?;
        let (left, right) = charts.split_horizontally(760);
        let mut chart = ChartBuilder::on(&left)
            .caption("neurons per key frequency, ranked", font(HEADING))
            .margin(8)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(0.5f64..ranks as f64 + 0.5, 0f64..max_neurons * 1.1)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("key frequency of the cell, by rank (1 = most neurons)")
            .y_desc("clustered neurons")
            .x_labels(ranks.min(30))
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style(font(TEXT))
            .light_line_style(WHITE)
            .draw()
            .map_err(plot_err)?;
        for (p, n) in &ranked {
            let color = view.color(p);
            let pts: Vec<(f64, f64)> = n
                .iter()
                .enumerate()
                .map(|(r, &y)| (r as f64 + 1.0 + offset(p), y))
                .collect();
            chart
                .draw_series(std::iter::once(PathElement::new(
                    pts.clone(),
                    color.mix(0.6).stroke_width(2),
                )))
                .map_err(plot_err)?;
            chart
                .draw_series(pts.iter().map(|&pt| Circle::new(pt, 4, color.filled())))
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
        let fits = settings
            .iter()
            .all(|n| text_width(n, TEXT) as usize * np < 300);
        let names: Vec<String> = if fits {
            settings.iter().map(|s| s.to_string()).collect()
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
        for (i, p) in settings.iter().enumerate() {
            let color = view.color(p);
            let mut xs: Vec<f64> = cells
                .iter()
                .filter(|c| &c.setting == *p)
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
        caption: "Left: the clustered MLP neurons of each cell's key frequencies, largest first, one line per cell (colour = setting; a setting's cells sit side by side within each rank). Seeds use different frequencies, so cells are lined up by rank; which frequencies a cell uses is in the key-frequency figure. Right: the fraction of neurons clustered, one dot per cell, black bar = the setting's median; settings without an analysed cell are left out.".into(),
        svg: text,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::fixture;
    use crate::analysis::KeyFrequency;

    /// One line per analysed cell, its points its key frequencies' neuron counts
    /// largest first; a setting whose cells are not analysed gets no slot.
    #[test]
    fn cells_are_ranked_lines_and_unanalysed_settings_leave_no_slot() {
        let mut rows = fixture::rows(4, |i, sig| {
            sig.neurons.neurons_per_key_frequency = (0..3)
                .map(|k| KeyFrequency {
                    frequency: k + 1,
                    neurons: 10 * (k + 1) + i,
                })
                .collect();
        });
        // Cell 3 (setting "int2") not analysed.
        rows[3].sig = None;
        rows[3].status = crate::store::CellState::Missing;
        let view = fixture::view(&rows, &["fp32", "ternary", "binary", "int2"]);
        let fig = super::figure(&view).unwrap().unwrap();
        let svg = roxmltree::Document::parse(&fig.svg).unwrap();
        // The ranked lines of the three analysed cells and one median bar per analysed
        // setting (axes and ticks are thinner polylines).
        let lines = svg
            .descendants()
            .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke-width") == Some("2"))
            .count();
        assert_eq!(lines, 3 + 3, "{}", fig.svg);
        let texts: Vec<&str> = svg
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .map(str::trim)
            .collect();
        // Setting names: in the legend (all four) and under the dots (the three
        // analysed ones).
        let count = |name: &str| texts.iter().filter(|t| **t == name).count();
        assert_eq!(count("ternary"), 2, "{texts:?}");
        assert_eq!(
            count("int2"),
            1,
            "no slot for a setting without cells: {texts:?}"
        );
    }
}
