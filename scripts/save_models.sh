#!/usr/bin/env bash
# Commit-ready copies of the trained cells behind results/<name>/: every cell its
# cells.csv names, with the files its manifest checksums (weights, curves, split,
# config, log; no checkpoints, locks or analyses), into models/cells/<key>/. With
# them `make restore-models` refills an artifacts folder, and any later analysis
# change re-analyses these weights instead of retraining them.
set -euo pipefail
name=$1
artifacts=$2
table="results/$name/cells.csv"
[ -f "$table" ] || { echo "no $table: publish the sweep first" >&2; exit 1; }
n=0
for key in $("$(dirname "$0")/table_keys.sh" "$table"); do
    src="$artifacts/cells/$key"
    dst="models/cells/$key"
    [ -f "$src/manifest.json" ] || { echo "cell $key has no manifest in $artifacts" >&2; exit 1; }
    mkdir -p "$dst"
    files=$(python3 -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["files"]))' "$src/manifest.json")
    for f in $files manifest.json; do cp "$src/$f" "$dst/$f"; done
    [ -f "$src/adopted_from" ] && cp "$src/adopted_from" "$dst/adopted_from"
    n=$((n + 1))
done
echo "saved $n cells of $name to models/cells/"
