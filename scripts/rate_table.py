#!/usr/bin/env python3
"""The README's per-rate tables of a sweep: for each attention rate (or each group of
the `--by` columns), the cells, their labels and routing, and median (min-max) of
the measures, beside Zhong et al.'s released one-layer runs when their table is
given; `--mechanism` adds the query-path and neuron-form measures.

    python3 scripts/rate_table.py results/zhong2023 [--released PATH/1l_fixedwidth.csv --encoding eq]
    python3 scripts/rate_table.py results/calibration --by model.arch,model.attention_rate --mechanism

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
MECHANISM = [
    ("eq_norm_ratio",),
    ("score_spread",),
    ("degree1_share", "degree2_share"),
]


def spread(values):
    xs = [float(v) for v in values if v != ""]
    if not xs:
        return ""
    med = statistics.median(xs)
    # Values that 3 decimals would show as 0.000 (a query that vanished, an ablation
    # that changes the loss by 1e-7 nats) in scientific notation.
    small = max(abs(x) for x in xs) < 0.005 and any(xs)
    f = (lambda x: f"{x:.1e}") if small else (lambda x: f"{x + 0.0:.3f}")
    return f"{f(med)} ({f(min(xs))}–{f(max(xs))})"


def counts(values):
    c = collections.Counter(values)
    return ", ".join(f"{k} {n}" for k, n in c.most_common())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder")
    ap.add_argument("--released")
    ap.add_argument("--encoding", default="eq", choices=["all", "eq", "plain"])
    ap.add_argument("--by", default="model.attention_rate",
                    help="comma-separated columns to group by (default: the rate)")
    ap.add_argument("--mechanism", action="store_true",
                    help="add ||E_=|| ratio, score spread and degree-1 / degree-2 share")
    args = ap.parse_args()
    by = args.by.split(",")
    rows = list(csv.DictReader(open(Path(args.folder) / "cells.csv", newline="")))
    groups = collections.defaultdict(list)
    for r in rows:
        groups[tuple(r[c] for c in by)].append(r)
    rate_of = {g: float(g[by.index("model.attention_rate")]) for g in groups} \
        if "model.attention_rate" in by else {}
    released = {}
    if args.released:
        runs = zhong_released.load(args.released, args.encoding)
        released = {rate: zhong_released.summary(runs, rate) for rate in set(rate_of.values())}
    measures = MEASURES + (MECHANISM if args.mechanism else [])
    names = {"model.attention_rate": "rate", "model.arch": "arch"}
    head = [", ".join(names.get(c, c) for c in by), "cells", "labels", "routing",
            "clock / pizza score", "symmetricity", "DI (correct logit)",
            "DI (largest wrong logit)", "ablation loss increase (nats)"]
    if args.mechanism:
        head += ["‖E_=‖ ratio", "score spread (nats)", "degree-1 / degree-2 share"]
    if released:
        head += ["Zhong et al.: symmetricity", "Zhong et al.: DI (runs)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    # Groups in order of first appearance, except that rates run in ascending order.
    order = sorted(groups, key=lambda g: float(g[0])) if by == ["model.attention_rate"] \
        else list(groups)
    for g in order:
        cells = groups[g]
        out = [", ".join(g), str(len(cells)), counts(r["label"] for r in cells),
               counts(r["routing"] for r in cells)]
        for m in measures:
            out.append(" / ".join(spread(r[c] for r in cells) for c in m))
        if released:
            s = released[rate_of[g]]
            out += [s["symmetricity"], f'{s["di"]} ({s["runs"]})'] if s else ["", "(0)"]
        print("| " + " | ".join(out) + " |")


if __name__ == "__main__":
    main()
