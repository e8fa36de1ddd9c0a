//! Figure 2: the embedding's Fourier spectrum per cell, and every cell's key
//! frequencies in one cells × frequencies matrix.

use super::{
    font, grid_shape, panel_layout, plot_err, svg, text_width, CellView, Figure, SweepView,
    MAX_PANELS,
};
use crate::analysis::Signature;
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

/// One bar chart per analysed cell (up to `MAX_PANELS`; past it the matrix and the
/// per-cell pages carry the spectra).
pub fn spectra(view: &SweepView) -> Result<Option<Figure>> {
    let cells: Vec<&CellView> = view.analysed().collect();
    if cells.is_empty() || cells.len() > MAX_PANELS {
        return Ok(None);
    }
    let (width, cols) = panel_layout(300, cells.iter().map(|c| c.name.as_str()), 13, 4);
    let (rows, cols) = grid_shape(cells.len(), cols);
    let text = svg((width * cols as u32, 220 * rows as u32), |root| {
        for (area, cell) in root.split_evenly((rows, cols)).iter().zip(&cells) {
            let sig = cell.sig().expect("analysed cells have a signature");
            draw_spectrum(area, &cell.name, sig, view.color(&cell.setting))?;
        }
        Ok(())
    })?;
    Ok(Some(Figure {
        id: "spectrum",
        title: "Embedding Fourier spectrum".into(),
        caption: "Norm of W_E per frequency, key frequencies (those owning clustered neurons) dark: a sparse spectrum with a few tall bars at the key frequencies is the Fourier algorithm; a flat one is not.".into(),
        svg: text,
    }))
}

/// The norm of `W_E` per frequency 1..=⌊p/2⌋, key frequencies in full colour.
pub fn draw_spectrum(
    area: &DrawingArea<SVGBackend, Shift>,
    title: &str,
    sig: &Signature,
    color: RGBColor,
) -> Result<()> {
    let norms = &sig.embedding.norm_by_frequency;
    let kmax = norms.len().saturating_sub(1).max(1);
    let top = norms.iter().skip(1).cloned().fold(0.0, f64::max).max(1e-12) * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(title, font(13))
        .margin(6)
        .x_label_area_size(30)
        .y_label_area_size(44)
        .build_cartesian_2d(0.5f64..kmax as f64 + 0.5, 0f64..top)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("frequency k")
        .y_desc("‖W_E‖ at k")
        .x_labels(kmax.min(12))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .label_style(font(10))
        .y_label_formatter(&|v| format!("{v:.2}"))
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
/// the embedding energy, a dot = key frequency.
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
    // Room for the longest cell name in the labels' font(12).
    let label_width = cells
        .iter()
        .map(|c| text_width(&c.name, 12))
        .max()
        .unwrap_or(30)
        + 20;
    let row_h = if n <= 24 { 22u32 } else { 14 };
    let col_w = (700 / kmax as u32).clamp(12, 40);
    let width = label_width + 60 + col_w * kmax as u32;
    let height = 90 + row_h * n as u32;
    let text = svg((width, height), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("key frequencies of every cell", font(14))
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(label_width)
            .build_cartesian_2d(0.5f64..kmax as f64 + 0.5, 0f64..n as f64)
            .map_err(plot_err)?;
        let names: Vec<String> = cells.iter().map(|c| c.name.clone()).collect();
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("frequency k")
            .x_labels(kmax.min(30))
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_labels(n * 2 + 1)
            .y_label_formatter(&|v| {
                // Labels sit at row centres (n − i − 0.5); others are blank.
                let i = n as f64 - v - 0.5;
                if (i - i.round()).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
                    names[i.round() as usize].clone()
                } else {
                    String::new()
                }
            })
            .label_style(font(12))
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
                        color.mix(0.05 + 0.85 * shade).filled(),
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
        caption: "One row per cell (colour = setting), shade = the frequency's share of the embedding energy (darkest = the cell's largest), ● = key frequency: compare the columns of the dots across settings and seeds.".into(),
        svg: text,
    }))
}
