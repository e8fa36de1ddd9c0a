//! Figure 2: the embedding's Fourier spectrum per cell, and every cell's key
//! frequencies in one cells × frequencies matrix.

use super::{
    font, grid_shape, panel_layout, plot_err, setting_entries, svg, text_width, tick, CellView,
    Figure, LegendStrip, Mark, SweepView, HEADING, MAX_PANELS, TEXT, TITLE,
};
use crate::analysis::Signature;
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

/// Past this many analysed cells the spectra are drawn as one compact row each.
const MAX_SPECTRUM_PANELS: usize = MAX_PANELS;

/// The embedding spectra of the analysed cells on one shared scale: one bar chart
/// per cell up to `MAX_SPECTRUM_PANELS` cells, one compact row per cell past it.
pub fn spectra(view: &SweepView) -> Result<Option<Figure>> {
    let cells: Vec<&CellView> = view.analysed().collect();
    if cells.is_empty() {
        return Ok(None);
    }
    let top = shared_top(&cells);
    let (text, how) = if cells.len() <= MAX_SPECTRUM_PANELS {
        (
            panels(view, &cells, top)?,
            "one panel per cell, all on one y scale",
        )
    } else {
        (
            rows(view, &cells, top)?,
            "one row per cell, bar height on one scale over all cells (a full row = the tallest bar of the sweep)",
        )
    };
    Ok(Some(Figure {
        id: "spectrum",
        title: "Embedding Fourier spectrum".into(),
        caption: format!("Norm of W_E per frequency k, {how}; colour = setting, key frequencies (those owning clustered neurons) in full colour, the others pale: a sparse spectrum with a few tall bars at the key frequencies is the Fourier algorithm; a flat one is not."),
        svg: text,
    }))
}

/// The tallest bar over the cells (frequency 0 is not drawn), with headroom.
fn shared_top(cells: &[&CellView]) -> f64 {
    cells
        .iter()
        .filter_map(|c| c.sig())
        .flat_map(|s| s.embedding.norm_by_frequency.iter().skip(1).cloned())
        .fold(0.0, f64::max)
        .max(1e-12)
        * 1.1
}

fn panels(view: &SweepView, cells: &[&CellView], top: f64) -> Result<String> {
    let (width, cols) = panel_layout(300, cells.iter().map(|c| c.name.as_str()), TITLE, 4);
    let (rows, cols) = grid_shape(cells.len(), cols);
    let entries = setting_entries(view, |s| cells.iter().any(|c| c.setting == s));
    let legend = LegendStrip::new(&entries, width * cols as u32);
    svg(
        (width * cols as u32, 240 * rows as u32 + legend.height()),
        |root| {
            let (strip, body) = root.split_vertically(legend.height());
            legend.draw(&strip)?;
            for (area, cell) in body.split_evenly((rows, cols)).iter().zip(cells) {
                let sig = cell.sig().expect("analysed cells have a signature");
                draw_spectrum(area, &cell.name, sig, view.color(&cell.setting), Some(top))?;
            }
            Ok(())
        },
    )
}

/// Height of one cell's row in the compact view.
const ROW: u32 = 18;

fn rows(view: &SweepView, cells: &[&CellView], top: f64) -> Result<String> {
    let kmax = cells
        .iter()
        .map(|c| {
            c.sig()
                .map_or(0, |s| s.embedding.norm_by_frequency.len().saturating_sub(1))
        })
        .max()
        .unwrap_or(1)
        .max(1);
    let n = cells.len();
    let label_width = cells
        .iter()
        .map(|c| text_width(&c.name, TEXT))
        .max()
        .unwrap_or(30)
        + 20;
    let col_w = (760 / kmax as u32).clamp(6, 24);
    let width = label_width + 40 + col_w * kmax as u32;
    let entries = setting_entries(view, |s| cells.iter().any(|c| c.setting == s));
    let legend = LegendStrip::new(&entries, width);
    let height = legend.height() + 70 + ROW * n as u32;
    svg((width, height), |root| {
        let (strip, body) = root.split_vertically(legend.height());
        legend.draw(&strip)?;
        let mut chart = ChartBuilder::on(&body)
            .margin(8)
            .margin_right(24)
            .x_label_area_size(44)
            .y_label_area_size(label_width)
            .build_cartesian_2d(0.5f64..kmax as f64 + 0.5, 0f64..n as f64)
            .map_err(plot_err)?;
        let names: Vec<String> = cells.iter().map(|c| c.name.clone()).collect();
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("frequency k")
            .x_labels(kmax.min(20))
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_labels(n * 2 + 1)
            .y_label_formatter(&|v| row_name(&names, *v))
            .label_style(font(TEXT))
            .draw()
            .map_err(plot_err)?;
        for (i, cell) in cells.iter().enumerate() {
            let sig = cell.sig().expect("analysed");
            let base = (n - 1 - i) as f64 + 0.08;
            let color = view.color(&cell.setting);
            let keys = &sig.neurons.key_frequencies;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(0.5, base), (kmax as f64 + 0.5, base)],
                    RGBColor(200, 200, 200).stroke_width(1),
                )))
                .map_err(plot_err)?;
            chart
                .draw_series(
                    sig.embedding
                        .norm_by_frequency
                        .iter()
                        .enumerate()
                        .skip(1)
                        .map(|(k, &v)| {
                            let style = if keys.contains(&k) {
                                color.filled()
                            } else {
                                color.mix(0.3).filled()
                            };
                            let h = 0.86 * (v / top).clamp(0.0, 1.0);
                            Rectangle::new(
                                [(k as f64 - 0.42, base), (k as f64 + 0.42, base + h)],
                                style,
                            )
                        }),
                )
                .map_err(plot_err)?;
        }
        Ok(())
    })
}

/// The name of the row whose centre is at `v` (row i of n centred at n − i − 0.5);
/// blank elsewhere, so a label sits at each row's centre only.
fn row_name(names: &[String], v: f64) -> String {
    let n = names.len();
    let i = n as f64 - v - 0.5;
    if (i - i.round()).abs() < 1e-6 && i >= -1e-6 && (i.round() as usize) < n {
        names[i.round() as usize].clone()
    } else {
        String::new()
    }
}

/// The norm of `W_E` per frequency 1..=⌊p/2⌋, key frequencies in full colour; the
/// y axis up to `top` when given (panels compared), else the cell's own tallest.
pub fn draw_spectrum(
    area: &DrawingArea<SVGBackend, Shift>,
    title: &str,
    sig: &Signature,
    color: RGBColor,
    top: Option<f64>,
) -> Result<()> {
    let norms = &sig.embedding.norm_by_frequency;
    let kmax = norms.len().saturating_sub(1).max(1);
    let top =
        top.unwrap_or_else(|| norms.iter().skip(1).cloned().fold(0.0, f64::max).max(1e-12) * 1.1);
    let mut builder = ChartBuilder::on(area);
    if !title.is_empty() {
        builder.caption(title, font(TITLE));
    }
    let mut chart = builder
        .margin(6)
        .margin_right(14)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.5f64..kmax as f64 + 0.5, 0f64..top)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("frequency k")
        .y_desc("‖W_E‖ at k")
        .x_labels(kmax.min(8))
        .y_labels(5)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .label_style(font(TEXT))
        .y_label_formatter(&|v| tick(*v, 2))
        .light_line_style(WHITE)
        .draw()
        .map_err(plot_err)?;
    let keys = &sig.neurons.key_frequencies;
    chart
        .draw_series(norms.iter().enumerate().skip(1).map(|(k, &n)| {
            let style = if keys.contains(&k) {
                color.filled()
            } else {
                color.mix(0.3).filled()
            };
            Rectangle::new([(k as f64 - 0.4, 0.0), (k as f64 + 0.4, n)], style)
        }))
        .map_err(plot_err)?;
    Ok(())
}

/// Rows = analysed cells, columns = frequencies; shade = the frequency's share of
/// the embedding energy relative to the cell's largest, a dot = key frequency.
pub fn matrix(view: &SweepView) -> Result<Option<Figure>> {
    let cells: Vec<&CellView> = view.analysed().collect();
    if cells.is_empty() {
        return Ok(None);
    }
    let kmax = cells
        .iter()
        .map(|c| {
            c.sig()
                .map_or(0, |s| s.frequency_table.len().saturating_sub(1))
        })
        .max()
        .unwrap_or(1)
        .max(1);
    let n = cells.len();
    let label_width = cells
        .iter()
        .map(|c| text_width(&c.name, TEXT))
        .max()
        .unwrap_or(30)
        + 20;
    let row_h = if n <= MAX_PANELS { 22u32 } else { ROW };
    let col_w = (760 / kmax as u32).clamp(12, 40);
    let width = (label_width + 60 + col_w * kmax as u32).max(SHADE_BAR_WIDTH);
    let mut entries = setting_entries(view, |s| cells.iter().any(|c| c.setting == s));
    entries.push(("key frequency".into(), Mark::Dot(BLACK)));
    let legend = LegendStrip::new(&entries, width);
    let height = SHADE_BAR_HEIGHT + legend.height() + 90 + row_h * n as u32;
    let text = svg((width, height), |root| {
        let (body, foot) = root.split_vertically(height - SHADE_BAR_HEIGHT - legend.height());
        let (strip, bar) = foot.split_vertically(legend.height());
        legend.draw(&strip)?;
        shade_bar(&bar)?;
        let mut chart = ChartBuilder::on(&body)
            .caption("key frequencies of every cell", font(HEADING))
            .margin(8)
            .margin_right(24)
            .x_label_area_size(44)
            .y_label_area_size(label_width)
            .build_cartesian_2d(0.5f64..kmax as f64 + 0.5, 0f64..n as f64)
            .map_err(plot_err)?;
        let names: Vec<String> = cells.iter().map(|c| c.name.clone()).collect();
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("frequency k")
            .x_labels(kmax.min(20))
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_labels(n * 2 + 1)
            .y_label_formatter(&|v| row_name(&names, *v))
            .label_style(font(TEXT))
            .draw()
            .map_err(plot_err)?;
        for (i, cell) in cells.iter().enumerate() {
            let sig = cell.sig().expect("analysed");
            let y = (n - 1 - i) as f64;
            let color = view.color(&cell.setting);
            let max_frac = sig
                .frequency_table
                .iter()
                .map(|f| f.embedding_energy_fraction)
                .fold(0.0, f64::max)
                .max(1e-12);
            chart
                .draw_series(sig.frequency_table.iter().skip(1).map(|f| {
                    let x = f.frequency as f64;
                    let shade = (f.embedding_energy_fraction / max_frac).clamp(0.0, 1.0);
                    Rectangle::new(
                        [(x - 0.5, y), (x + 0.5, y + 1.0)],
                        shade_style(color, shade),
                    )
                }))
                .map_err(plot_err)?;
            chart
                .draw_series(
                    sig.neurons
                        .key_frequencies
                        .iter()
                        .map(|&k| Circle::new((k as f64, y + 0.5), 3, BLACK.filled())),
                )
                .map_err(plot_err)?;
        }
        Ok(())
    })?;
    Ok(Some(Figure {
        id: "key_frequencies",
        title: "Key frequencies across cells".into(),
        caption: "One row per cell, colour = setting, shade = the frequency's share of the cell's embedding energy relative to its largest (scale at the bottom), ● = key frequency: compare the columns of the dots across settings and seeds.".into(),
        svg: text,
    }))
}

/// A matrix cell of `color` at `shade` (0 = the cell's smallest share, 1 = its largest).
fn shade_style(color: RGBColor, shade: f64) -> ShapeStyle {
    color.mix(0.05 + 0.85 * shade).filled()
}

const SHADE_BAR_HEIGHT: u32 = 58;
const SHADE_BAR_WIDTH: u32 = 440;

/// The matrix's colour bar: the shade ramp in grey (each setting's colour follows
/// the same ramp) from 0 to the cell's largest share.
fn shade_bar(area: &DrawingArea<SVGBackend, Shift>) -> Result<()> {
    let grey = RGBColor(60, 60, 60);
    let (x0, y0, w, h) = (20, 22, 200, 12);
    area.draw(&Text::new(
        "shade: share of the cell's largest frequency",
        (x0, 4),
        font(TEXT),
    ))
    .map_err(plot_err)?;
    const STEPS: i32 = 20;
    for i in 0..STEPS {
        let shade = (i as f64 + 0.5) / STEPS as f64;
        let (a, b) = (x0 + w * i / STEPS, x0 + w * (i + 1) / STEPS);
        area.draw(&Rectangle::new(
            [(a, y0), (b, y0 + h)],
            shade_style(grey, shade),
        ))
        .map_err(plot_err)?;
    }
    for (t, label) in [(0, "0"), (w / 2, "0.5"), (w, "1")] {
        let x = x0 + t - text_width(label, TEXT) as i32 / 2;
        area.draw(&Text::new(label, (x, y0 + h + 3), font(TEXT)))
            .map_err(plot_err)?;
    }
    area.draw(&Rectangle::new(
        [(x0, y0), (x0 + w, y0 + h)],
        grey.stroke_width(1),
    ))
    .map_err(plot_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::fixture;
    use super::*;

    #[test]
    fn spectra_of_many_cells_are_one_compact_row_each_on_one_scale() {
        for n in [3, MAX_SPECTRUM_PANELS + 1, 100] {
            let rows = fixture::rows(n, |_, _| {});
            let view = fixture::view(&rows, &["fp32", "binary"]);
            let fig = spectra(&view).unwrap().expect("a spectrum figure");
            let kmax = rows[0]
                .sig
                .as_ref()
                .unwrap()
                .embedding
                .norm_by_frequency
                .len()
                - 1;
            // Every cell named once, and one bar per (cell, frequency ≥ 1).
            for c in &view.cells {
                let label = format!(">\n{}\n</text>", c.name);
                assert_eq!(fig.svg.matches(&label).count(), 1, "{n} cells: {}", c.name);
            }
            assert!(fig.svg.matches("<rect").count() >= n * kmax, "{n} cells");
            let compact = n > MAX_SPECTRUM_PANELS;
            assert_eq!(
                fig.caption.contains("one row per cell"),
                compact,
                "{n} cells"
            );
            // Compact: rows of 18 px, so 100 cells stay under 2,000 px.
            let height: u32 = fig
                .svg
                .split("height=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            if compact {
                assert!(height < ROW * n as u32 + 200, "{n} cells: {height} px");
            }
        }
    }
}
