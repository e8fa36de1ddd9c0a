#!/usr/bin/env python3
"""The README's per-rate table of a sweep over `model.attention_rate`: for each rate,
the cells, their labels and routing, and median (min-max) of the measures, beside
Zhong et al.'s released one-layer runs when their table is given.

    python3 scripts/rate_table.py results/zhong2023 [--released PATH/1l_fixedwidth.csv --encoding eq]

Reads `cells.csv` of the published sweep folder; the released runs are summarised
by `scripts/zhong_released.py` (same filters).
"""
import argparse
import collections
import csv
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import zhong_released  # noqa: E402

MEASURES = [
    ("clock_score", "pizza_score"),
    ("gradient_symmetricity",),
    ("distance_irrelevance",),
    ("distance_irrelevance_max_wrong",),
    ("ablation_loss_increase",),
]


def spread(values):
    xs = [float(v) for v in values if v != ""]
    if not xs:
        return ""
    return f"{statistics.median(xs):.3f} ({min(xs):.3f}–{max(xs):.3f})"


def counts(values):
    c = collections.Counter(values)
    return ", ".join(f"{k} {n}" for k, n in c.most_common())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder")
    ap.add_argument("--released")
    ap.add_argument("--encoding", default="eq", choices=["all", "eq", "plain"])
    args = ap.parse_args()
    rows = list(csv.DictReader(open(Path(args.folder) / "cells.csv", newline="")))
    by_rate = collections.defaultdict(list)
    for r in rows:
        by_rate[float(r["model.attention_rate"])].append(r)
    released = {}
    if args.released:
        runs = zhong_released.load(args.released, args.encoding)
        released = {rate: zhong_released.summary(runs, rate) for rate in by_rate}
    head = ["rate", "cells", "labels", "routing", "clock / pizza score", "symmetricity",
            "DI (correct logit)", "DI (largest wrong logit)", "ablation loss increase (nats)"]
    if released:
        head += ["Zhong et al.: symmetricity", "Zhong et al.: DI (runs)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for rate in sorted(by_rate):
        cells = by_rate[rate]
        out = [str(rate), str(len(cells)), counts(r["label"] for r in cells),
               counts(r["routing"] for r in cells)]
        for m in MEASURES:
            out.append(" / ".join(spread(r[c] for r in cells) for c in m))
        if released:
            s = released[rate]
            out += [s["symmetricity"], f'{s["di"]} ({s["runs"]})'] if s else ["", "(0)"]
        print("| " + " | ".join(out) + " |")


if __name__ == "__main__":
    main()
