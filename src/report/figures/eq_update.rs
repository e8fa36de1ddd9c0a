//! How AdamW moved the `=` embedding over training (README, "The `=` embedding's
//! updates"), for cells trained with `train.eq_update_every`: one panel per measure
//! of the record, one line per cell, coloured by setting.

use super::progress::{line_panels, measure, Axis, Measure};
use super::{setting_entries, CellView, Figure, SweepView};
use crate::engine::eq_update::{
    EqUpdateWindow, ADAM_COS, DECAY_PART, EQ_NORM, GRADIENT_COS, LOSS_PART, MOMENTUM_COS,
    RADIAL_CHANGE,
};
use anyhow::Result;

const MEASURES: &[Measure<EqUpdateWindow>] = &[
    measure("‖E_=‖", Axis::Log, |w| w.values[EQ_NORM]),
    measure("radial change of E_= (window sum)", Axis::Signed, |w| {
        w.values[RADIAL_CHANGE]
    }),
    measure("its part from Adam’s loss step", Axis::Signed, |w| {
        w.values[LOSS_PART]
    }),
    measure("its part from weight decay", Axis::Signed, |w| {
        w.values[DECAY_PART]
    }),
    measure("cos(−gradient, E_=)", Axis::Signed, |w| {
        w.values[GRADIENT_COS]
    }),
    measure("cos(−Adam’s first moment, E_=)", Axis::Signed, |w| {
        w.values[MOMENTUM_COS]
    }),
    measure("cos(−Adam’s step, E_=)", Axis::Signed, |w| {
        w.values[ADAM_COS]
    }),
];

pub fn figure(view: &SweepView) -> Result<Option<Figure>> {
    let cells: Vec<&CellView> = view
        .cells
        .iter()
        .filter(|c| !c.row.eq_update.is_empty())
        .collect();
    if cells.is_empty() {
        return Ok(None);
    }
    let entries = setting_entries(view, |s| cells.iter().any(|c| c.setting == s));
    let text = line_panels(
        view,
        &cells,
        |r| &r.eq_update,
        |w| w.step,
        MEASURES,
        &entries,
        &|_, _, _| Ok(()),
    )?;
    let every = cells
        .iter()
        .filter_map(|c| c.row.eq_update.first().map(|w| w.updates))
        .max()
        .unwrap_or(0);
    Ok(Some(Figure {
        id: "eq_update",
        title: "How AdamW moved the = embedding".into(),
        caption: format!(
            "For {} (one line each, colour = setting), per window of {} updates: the norm of the `=` embedding E_= (the read-out query's source in li2024), how far the updates moved it along its own direction (above 0: outward), and that change's two parts, Adam's loss step m̂/(√v̂+ε) and weight decay (the parts add up to the change). The cosines say which way the gradient AdamW receives, Adam's first moment and its normalised step point relative to E_= (above 0: outward); where the gradient points inward and Adam's step outward, the per-coordinate normalisation or the momentum sets the direction, not the gradient.",
            crate::text::count(cells.len(), "cell"),
            every,
        ),
        svg: text,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::fixture;
    use super::*;

    #[test]
    fn drawn_only_for_cells_with_a_record_one_panel_per_measure() {
        let mut rows = fixture::rows(2, |_, _| {});
        let view = fixture::view(&rows, &["fp32", "binary"]);
        assert!(figure(&view).unwrap().is_none());
        rows[1].eq_update = (1..=4)
            .map(|i| EqUpdateWindow {
                step: 50 * i,
                updates: 50,
                values: [1.0 / i as f64, -1e-3, 1e-3, -2e-3, -0.2, -0.1, 0.3],
            })
            .collect();
        let view = fixture::view(&rows, &["fp32", "binary"]);
        let fig = figure(&view).unwrap().unwrap();
        for m in MEASURES {
            assert!(fig.svg.contains(m.title), "{}", m.title);
        }
        assert!(fig.caption.starts_with("For 1 cell"), "{}", fig.caption);
        assert!(fig.caption.contains("per window of 50 updates"));
        // The legend names only the setting that has a record.
        assert!(fig.svg.contains(">\nbinary\n</text>") && !fig.svg.contains(">\nfp32\n</text>"));
    }
}
