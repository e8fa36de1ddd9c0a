#!/usr/bin/env python3
"""Per-rate summaries of Zhong et al.'s released one-layer runs, for the README's
comparison tables.

Reads their `result/1l_fixedwidth.csv` (repository fjzzq2002/pizza) and prints, for
each attention rate asked, the runs within +-0.025 of it that are one layer, width
128, ReLU and end with test accuracy >= 0.99: median [10th-90th percentile] of
their gradient symmetricity (`gradient_sim`) and distance irrelevance
(`distance_irrelevance`, computed on the largest wrong logit), and the number of runs.

    python3 scripts/zhong_released.py PATH/1l_fixedwidth.csv [--encoding all|eq|plain]

`--encoding eq` keeps the runs with the `=` token (`eqn_sign = 1`, `diff_vocab = 0`),
the encoding `sweeps/zhong2023.toml` reproduces; `plain` the `[a, b]` runs
(`eqn_sign = 0`, `diff_vocab = 0`); `all` every encoding.
"""
import argparse
import csv
import statistics


def quantile(xs, q):
    """Linear-interpolated quantile, as numpy's default."""
    xs = sorted(xs)
    pos = (len(xs) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def load(path, encoding="all"):
    """(attn_coeff, gradient_sim, distance_irrelevance) of the runs kept."""
    want = {"eq": ("0", "1"), "plain": ("0", "0")}.get(encoding)
    runs = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            try:
                ok = (
                    r["n_layers"] == "1"
                    and r["d_model"] == "128"
                    and r["act_fn"] == "ReLU"
                    and float(r["validation_accuracy"]) >= 0.99
                    and r["gradient_sim"] != ""
                    and r["distance_irrelevance"] != ""
                )
            except ValueError:
                ok = False
            if ok and (want is None or (r["diff_vocab"], r["eqn_sign"]) == want):
                runs.append(
                    (
                        float(r["attn_coeff"]),
                        float(r["gradient_sim"]),
                        float(r["distance_irrelevance"]),
                    )
                )
    return runs


def summary(runs, rate):
    """Median [10th-90th percentile] of both measures over the runs within +-0.025
    of `rate`, and their number; None when there are none."""
    near = [(g, d) for a, g, d in runs if abs(a - rate) <= 0.025]
    if not near:
        return None
    cells = []
    for xs in ([g for g, _ in near], [d for _, d in near]):
        cells.append(
            f"{statistics.median(xs):.3f} [{quantile(xs, 0.1):.3f}–{quantile(xs, 0.9):.3f}]"
        )
    return {"runs": len(near), "symmetricity": cells[0], "di": cells[1]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("csv")
    ap.add_argument("--encoding", choices=["all", "eq", "plain"], default="all")
    ap.add_argument("--rates", default="0,0.25,0.5,0.75,1")
    args = ap.parse_args()
    runs = load(args.csv, args.encoding)
    print("| rate | runs | symmetricity | DI (largest wrong logit) |")
    print("|---|---|---|---|")
    for rate in map(float, args.rates.split(",")):
        s = summary(runs, rate)
        if s is None:
            print(f"| {rate} | 0 | | |")
        else:
            print(f"| {rate} | {s['runs']} | {s['symmetricity']} | {s['di']} |")


if __name__ == "__main__":
    main()
