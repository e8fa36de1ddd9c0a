//! Figure 6, per cell: activations of the top neurons of each key frequency and the
//! position-2 attention pattern as p × p heatmaps over (a, b).
//!
//! A heatmap's p² values go into the SVG as one palette PNG (`<image>` with a data
//! URI) inside plotters' axes: for p = 113 that is ~15 KB instead of ~1 MB of
//! rectangles, which keeps per-cell pages small and fast to write.

use super::{font, plot_err, svg, text_width, CellView, Figure, TEXT};
use crate::analysis::Signature;
use crate::engine::reference::Depth;
use anyhow::{Context, Result};
use base64::Engine as _;
use plotters::prelude::*;
use plotters::style::colors::colormaps::{ColorMap, ViridisRGB};
use std::path::Path;

/// Neuron heatmaps per key frequency, the highest-FVE neurons first.
pub const NEURONS_PER_FREQUENCY: usize = 3;

/// What the per-cell figures need from the model's forward pass over all p² inputs.
pub struct Activations {
    pub p: usize,
    pub d_mlp: usize,
    /// Post-ReLU MLP activations at position 2, neuron by neuron:
    /// `neurons[n·p² + a·p + b]` (as [`crate::analysis::forward::ForwardPass`]).
    pub neurons: Vec<f32>,
    pub heads: usize,
    /// Position-2 attention weights, row `a·p + b`, per head on positions 0, 1, 2.
    pub attention: Vec<f32>,
}

/// The one place the report runs the model: the cell's final (effective) weights
/// through the analysis forward pass.
pub fn cell_activations(cell_dir: &Path) -> Result<Activations> {
    use crate::analysis::forward;
    let (_, model) = crate::store::read_cell_model(cell_dir)
        .with_context(|| format!("reading the model of {}", cell_dir.display()))?;
    Ok(activations(&forward::forward_all(&model, Depth::Hidden)))
}

/// [`Activations`] from the analysis forward pass.
fn activations(fwd: &crate::analysis::forward::ForwardPass) -> Activations {
    let (p, heads) = (fwd.p, fwd.heads);
    // The forward pass's attention is head-major; the heatmaps read it input-major.
    let pattern = &fwd.attention;
    let mut attention = vec![0f32; p * p * heads * 3];
    for head in 0..heads {
        for i in 0..p * p {
            for j in 0..3 {
                attention[(i * heads + head) * 3 + j] = pattern.get(i, head)[j] as f32;
            }
        }
    }
    Activations {
        p,
        d_mlp: fwd.d_mlp,
        neurons: fwd.neurons.iter().map(|&x| x as f32).collect(),
        heads,
        attention,
    }
}

impl Activations {
    /// Neuron `n`'s activation over the inputs, row `a·p + b`.
    fn neuron_map(&self, n: usize) -> Vec<f32> {
        let pp = self.p * self.p;
        self.neurons[n * pp..(n + 1) * pp].to_vec()
    }
}

/// The neurons shown for a cell: per key frequency (ascending), its clustered
/// neurons with the highest FVE, at most `NEURONS_PER_FREQUENCY`.
pub fn top_neurons(sig: &Signature) -> Vec<(usize, usize, f64)> {
    let mut out = Vec::new();
    for &k in &sig.neurons.key_frequencies {
        let mut mine: Vec<_> = sig
            .neuron_table
            .iter()
            .filter(|r| r.clustered && r.best_frequency == Some(k))
            .collect();
        mine.sort_by(|a, b| b.fve.total_cmp(&a.fve).then(a.neuron.cmp(&b.neuron)));
        out.extend(
            mine.iter()
                .take(NEURONS_PER_FREQUENCY)
                .map(|r| (k, r.neuron, r.fve)),
        );
    }
    out
}

/// The per-cell heatmap figures: top neurons (when the cell has key frequencies)
/// and attention.
pub fn heatmap_figures(cell: &CellView, acts: &Activations) -> Result<Vec<Figure>> {
    let p = acts.p;
    let mut out = Vec::new();
    if let Some(sig) = cell.sig() {
        let maps: Vec<Heatmap> = top_neurons(sig)
            .into_iter()
            .map(|(k, n, fve)| Heatmap {
                title: format!("k={k} neuron {n} (FVE {fve:.2})"),
                values: acts.neuron_map(n),
                range: None,
            })
            .collect();
        if !maps.is_empty() {
            out.push(Figure {
                id: "neurons",
                title: "Top neurons of each key frequency".into(),
                caption: format!(
                    "Activation (after the ReLU) over inputs (a, b), each map from its lowest (dark) to its highest (bright), see the colour bar: a neuron of frequency k shows stripes or a lattice of period p/k (p = {p}); noise means it is not a clean Fourier feature."
                ),
                svg: heatmaps(&maps, p, &["its highest", "", "its lowest"])?,
            });
        }
    }
    let h = acts.heads;
    let mut maps = Vec::new();
    for head in 0..h {
        for (pos, name) in [(0, "a"), (1, "b")] {
            maps.push(Heatmap {
                title: format!("head {head}: weight on {name}"),
                values: (0..p * p)
                    .map(|i| acts.attention[(i * h + head) * 3 + pos])
                    .collect(),
                range: Some((0.0, 1.0)),
            });
        }
    }
    out.push(Figure {
        id: "attention",
        title: "Position-2 attention".into(),
        caption: "Weight the `=` position gives to positions 0 (a) and 1 (b) per head, 0 (dark) to 1 (bright), see the colour bar: flat maps at 1/3 mean uniform attention, in which case gradient symmetricity is 1 by construction.".into(),
        svg: heatmaps(&maps, p, &["1", "0.5", "0"])?,
    });
    Ok(out)
}

/// One p × p map, drawn over (a, b) with b upwards.
pub struct Heatmap {
    pub title: String,
    /// Row `a·p + b`.
    pub values: Vec<f32>,
    /// Colour scale; None = the map's own min to max.
    pub range: Option<(f32, f32)>,
}

const TILE: (u32, u32) = (210, 226);

/// Heatmaps in rows of up to 6 tiles, each with axes a and b, and a colour bar at
/// the right whose top, middle and bottom are labelled `bar` (a label may be empty).
pub fn heatmaps(maps: &[Heatmap], p: usize, bar: &[&str; 3]) -> Result<String> {
    let cols = maps.len().clamp(1, 6);
    let rows = maps.len().div_ceil(cols).max(1);
    let bar_width = 40 + bar.iter().map(|l| text_width(l, TEXT)).max().unwrap_or(0);
    let mut images = Vec::new();
    let size = (TILE.0 * cols as u32 + bar_width, TILE.1 * rows as u32);
    let mut text = svg(size, |root| {
        let (tiles, right) = root.split_horizontally(TILE.0 * cols as u32);
        for (area, map) in tiles.split_evenly((rows, cols)).iter().zip(maps) {
            let chart = ChartBuilder::on(area)
                .caption(&map.title, font(TEXT))
                .margin(5)
                .x_label_area_size(34)
                .y_label_area_size(40)
                .build_cartesian_2d(0f64..p as f64, 0f64..p as f64)
                .map_err(plot_err)?;
            let mut chart = chart;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc("a")
                .y_desc("b")
                .x_labels(3)
                .y_labels(3)
                .x_label_formatter(&|v| format!("{v:.0}"))
                .y_label_formatter(&|v| format!("{v:.0}"))
                .label_style(font(TEXT))
                .draw()
                .map_err(plot_err)?;
            let (xs, ys) = chart.plotting_area().get_pixel_range();
            images.push(image(
                (xs.start, ys.start, xs.end - xs.start, ys.end - ys.start),
                &png_of(map, p)?,
            ));
        }
        // The colour bar: as tall as one tile's plot, beside the first row.
        let (x0, y0, w, h) = (TILE.0 as i32 * cols as i32 + 8, 30, 14, TILE.1 as i32 - 80);
        images.push(image((x0, y0, w, h), &bar_png()?));
        right
            .draw(&Rectangle::new(
                [(8, y0), (8 + w, y0 + h)],
                BLACK.stroke_width(1),
            ))
            .map_err(plot_err)?;
        for (label, y) in bar.iter().zip([y0, y0 + h / 2, y0 + h]) {
            if !label.is_empty() {
                right
                    .draw(&Text::new(
                        *label,
                        (8 + w + 5, y - TEXT as i32 / 2),
                        font(TEXT),
                    ))
                    .map_err(plot_err)?;
            }
        }
        Ok(())
    })?;
    let end = text.rfind("</svg>").context("plotters wrote no </svg>")?;
    text.insert_str(end, &(images.join("\n") + "\n"));
    Ok(text)
}

/// An `<image>` of PNG bytes at `(x, y, width, height)`.
fn image((x, y, w, h): (i32, i32, i32, i32), png: &[u8]) -> String {
    format!(
        r#"<image x="{x}" y="{y}" width="{w}" height="{h}" preserveAspectRatio="none" style="image-rendering:pixelated" href="data:image/png;base64,{}"/>"#,
        base64::engine::general_purpose::STANDARD.encode(png)
    )
}

/// The colour bar: viridis from bright (top) to dark (bottom).
fn bar_png() -> Result<Vec<u8>> {
    let n = 64;
    let map = Heatmap {
        title: String::new(),
        // Row a·n + b; b upwards, so value = b puts the highest at the top.
        values: (0..n * n).map(|i| (i % n) as f32).collect(),
        range: Some((0.0, (n - 1) as f32)),
    };
    png_of(&map, n)
}

/// A p × p palette PNG of a map (viridis), row 0 = b = p − 1.
fn png_of(map: &Heatmap, p: usize) -> Result<Vec<u8>> {
    let (lo, hi) = map.range.unwrap_or_else(|| {
        map.values
            .iter()
            .filter(|v| v.is_finite())
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
                (l.min(v), h.max(v))
            })
    });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let mut pixels = vec![0u8; p * p];
    for a in 0..p {
        for b in 0..p {
            let v = map.values[a * p + b];
            let t = if v.is_finite() { (v - lo) / span } else { 0.0 };
            pixels[(p - 1 - b) * p + a] = (t.clamp(0.0, 1.0) * 255.0).round() as u8;
        }
    }
    let palette: Vec<u8> = (0..256)
        .flat_map(|i| {
            let c = ViridisRGB.get_color(i as f32 / 255.0);
            [c.0, c.1, c.2]
        })
        .collect();
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, p as u32, p as u32);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_palette(palette);
        let mut w = enc.write_header()?;
        w.write_image_data(&pixels)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::forward::{forward_all, tests::random_model};
    use crate::config::Arch;
    use crate::engine::model_file::Model;
    use crate::engine::reference::{self, Params64};

    #[test]
    fn a_neuron_map_is_that_neurons_activation_over_the_inputs() {
        let (p, d_mlp) = (5, 16);
        let w = random_model(Arch::Li2024, p, 8, 2, d_mlp, 3);
        let acts = activations(&forward_all(&Model::plain(w.clone()), Depth::Hidden));
        let w64 = Params64::from_weights(&w);
        for n in [0, 7, d_mlp - 1] {
            let map = acts.neuron_map(n);
            for (i, &v) in map.iter().enumerate() {
                let t = reference::forward(
                    &w64,
                    i / p,
                    i % p,
                    0,
                    1e-5,
                    crate::config::AttentionMix::SOFTMAX,
                );
                assert_eq!(v, t.hidden[2][n].max(0.0) as f32, "neuron {n} input {i}");
            }
        }
    }

    #[test]
    fn heatmap_png_puts_b_upwards_and_scales_to_the_range() {
        let p = 3;
        // value = b: row 0 of the image (top) must be b = 2, the brightest.
        let map = Heatmap {
            title: "t".into(),
            values: (0..9).map(|i| (i % 3) as f32).collect(),
            range: None,
        };
        let bytes = png_of(&map, p).unwrap();
        let dec = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut r = dec.read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size()];
        r.next_frame(&mut buf).unwrap();
        assert_eq!(&buf[..9], &[255, 255, 255, 128, 128, 128, 0, 0, 0]);
    }
}
