#!/usr/bin/env python3
"""Share of a cell's test pairs (a, b) whose swapped pair (b, a) is a training pair,
beside the cell's test accuracy at the given steps: a model that memorised its
training pairs and answers (a, b) as it answers (b, a) scores exactly that share.

Usage: python3 scripts/swapped_share.py CELL_DIR... [--steps 1000,2000]
where CELL_DIR is a trained cell folder (models/cells/<key>/ or artifacts/cells/<key>/)
with split.csv and curves.csv.
"""
import csv
import sys
from pathlib import Path


def main(argv):
    steps = [1000, 2000]
    dirs = []
    it = iter(argv)
    for arg in it:
        if arg == "--steps":
            steps = [int(s) for s in next(it).split(",")]
        else:
            dirs.append(Path(arg))
    if not dirs:
        sys.exit(__doc__)
    for d in dirs:
        pairs = list(csv.DictReader(open(d / "split.csv")))
        train = {(int(r["a"]), int(r["b"])) for r in pairs if r["set"] == "train"}
        test = [(int(r["a"]), int(r["b"])) for r in pairs if r["set"] == "test"]
        share = sum((b, a) in train for a, b in test) / len(test)
        acc = {int(r["step"]): float(r["test_acc"]) for r in csv.DictReader(open(d / "curves.csv"))}
        at = ", ".join(f"step {s}: {acc[s]:.4f}" for s in steps if s in acc)
        print(f"{d.name[:12]}: swapped pair in training {share:.4f}; test accuracy {at}")


if __name__ == "__main__":
    main(sys.argv[1:])
