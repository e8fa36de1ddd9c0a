#!/usr/bin/env bash
# Re-analyse the committed models and diff the tables they give against the
# committed ones: for each results/<name>/ (all of them by default), the cells its
# cells.csv names are copied from models/cells/ into a fresh artifacts folder, the
# sweep is run there (every cell is already trained, so this only analyses and
# aggregates; nothing is trained) and `bitgrok diff` compares its tables with
# results/<name>/ (training time ignored). Nothing is ever retrained: a folder named
# on the command line with a cell that is not committed is a failure; without names,
# such folders are listed as not checkable and the others are checked. Exit 0 when
# every checked folder re-derives within the diff's tolerance.
set -euo pipefail
bitgrok=${BITGROK:-target/release/bitgrok}
work=${WORK:-target/check-committed}
names=("$@")
strict=1
if [ ${#names[@]} -eq 0 ]; then
    strict=0
    for d in results/*/; do names+=("$(basename "$d")"); done
fi
checked=()
unchecked=()
failed=()
for name in "${names[@]}"; do
    table="results/$name/cells.csv"
    [ -f "$table" ] || { echo "$name: no $table" >&2; failed+=("$name"); continue; }
    [ -f "sweeps/$name.toml" ] || { echo "$name: no sweeps/$name.toml" >&2; failed+=("$name"); continue; }
    art="$work/$name"
    rm -rf "$art"
    mkdir -p "$art/cells"
    missing=0
    for key in $("$(dirname "$0")/table_keys.sh" "$table"); do
        if [ -f "models/cells/$key/manifest.json" ]; then
            cp -r "models/cells/$key" "$art/cells/$key"
        else
            missing=$((missing + 1))
        fi
    done
    if [ "$missing" -gt 0 ]; then
        echo "$name: $missing of its cells are not in models/cells/ (not retrained; not checked)" >&2
        if [ "$strict" -eq 1 ]; then failed+=("$name"); else unchecked+=("$name"); fi
        continue
    fi
    # Every cell must be done before anything runs, so nothing is ever trained here.
    total=$("$bitgrok" plan "sweeps/$name.toml" --artifacts "$art" | tail -n 1)
    if ! echo "$total" | grep -Eq "^total: ([0-9]+) cells?, \1 done,"; then
        echo "$name: the committed models do not cover the sweep ($total)" >&2
        failed+=("$name")
        continue
    fi
    "$bitgrok" run "sweeps/$name.toml" --artifacts "$art" > "$art.log" 2>&1 || {
        echo "$name: bitgrok run failed (log: $art.log)" >&2
        failed+=("$name")
        continue
    }
    # The aggregator's tables only: legacy_keys.csv is written when publishing.
    mkdir -p "$art/committed"
    for f in results/"$name"/*.csv; do
        [ "$(basename "$f")" = legacy_keys.csv ] || cp "$f" "$art/committed/"
    done
    if "$bitgrok" diff "$art/committed" "$art/sweeps/$name" --ignore train_seconds; then
        echo "$name: re-analysed committed models reproduce results/$name/"
        checked+=("$name")
    else
        failed+=("$name")
    fi
done
echo "reproduced from committed models: ${checked[*]:-none}"
[ ${#unchecked[@]} -eq 0 ] || echo "not checkable (models not all committed): ${unchecked[*]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "not reproduced: ${failed[*]}" >&2
    exit 1
fi
