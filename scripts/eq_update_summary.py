#!/usr/bin/env python3
"""Per cell of a published sweep with `eq_update.csv`: how AdamW moved the `=`
embedding, before and after the cell generalised (its `step_generalised` in
`cells.csv`; a cell that never generalised has one phase, `all`).

For each phase: the windows, ‖E_=‖ at its start and end, the sums of the radial
change and of its two parts (Adam's loss step, weight decay), and in how many
windows the gradient, Adam's first moment and Adam's normalised step pointed
outward on average (cosine above 0), with the median of each cosine.

    python3 scripts/eq_update_summary.py results/eq-update
"""
import csv
import statistics
import sys
from pathlib import Path


def main(folder):
    folder = Path(folder)
    cells = {r["key"]: r for r in csv.DictReader(open(folder / "cells.csv"))}
    windows = {}
    for r in csv.DictReader(open(folder / "eq_update.csv")):
        windows.setdefault(r["key"], []).append(r)
    header = (
        "precision seed phase windows eq_norm_start eq_norm_end radial_change "
        "loss_part decay_part gradient_out momentum_out adam_out "
        "gradient_cos_median momentum_cos_median adam_cos_median"
    ).split()
    print(",".join(header))
    for key, rows in windows.items():
        cell = cells[key]
        generalised = cell["step_generalised"]
        phases = (
            [("before", lambda s: s <= int(generalised)), ("after", lambda s: s > int(generalised))]
            if generalised
            else [("all", lambda s: True)]
        )
        for name, inside in phases:
            part = [r for r in rows if inside(int(r["step"]))]
            if not part:
                continue
            total = lambda c: sum(float(r[c]) for r in part)
            out = lambda c: sum(float(r[c]) > 0 for r in part)
            med = lambda c: statistics.median(float(r[c]) for r in part)
            # ‖E_=‖ before the phase's first window: the previous window's end.
            index = rows.index(part[0])
            start = rows[index - 1]["eq_norm"] if index > 0 else ""
            print(
                ",".join(
                    str(v)
                    for v in [
                        cell.get("precision", ""),
                        cell["seed"],
                        name,
                        len(part),
                        start,
                        part[-1]["eq_norm"],
                        f"{total('radial_change'):.4g}",
                        f"{total('loss_part'):.4g}",
                        f"{total('decay_part'):.4g}",
                        out("gradient_cos"),
                        out("momentum_cos"),
                        out("adam_cos"),
                        f"{med('gradient_cos'):.4f}",
                        f"{med('momentum_cos'):.4f}",
                        f"{med('adam_cos'):.4f}",
                    ]
                )
            )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results/eq-update")
