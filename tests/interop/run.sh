#!/usr/bin/env bash
# `make test-interop`: every kind of exported cell loads in TransformerLens 3.x and
# 4.x and computes the cell's function. Installs the pinned TransformerLens versions
# (tests/interop/venvs.sh, kept in $VENVS so that reruns install nothing), trains
# sweeps/interop.toml into a fresh folder and exports each cell; then, for each
# version:
# - scripts/load_transformer_lens.py loads every export and must match bitgrok's
#   logits, all-pairs loss and accuracy;
# - the same exports with their hooks dropped (usage.json "hooks" emptied) must not
#   match, so the check can fail;
# - README's by-hand recipe for that version, run on two cells that need hooks,
#   must reproduce the loss, and the model it saves must analyse
#   (`bitgrok analyze FILE` with the cell's flags, split and curves) to the cell's
#   own signature;
# - scripts/zhong_symmetricity.py measures every export (one line each).
# Prints the seconds each phase took; work files stay in $OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
BITGROK=${BITGROK:-target/release/bitgrok}
OUT=${OUT:-target/interop-test}
VENVS=${VENVS:-target/interop-venvs}
VERSIONS="3.9.0 4.3.0"
rm -rf "$OUT"
mkdir -p "$OUT/exports" "$OUT/unhooked" "$OUT/recipes"
passed=0
failed=0
pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }
start=$SECONDS
took() { echo "interop: $1: $((SECONDS - start)) s"; start=$SECONDS; }

tests/interop/venvs.sh "$VENVS" $VERSIONS
took "Python environments ($VENVS)"

"$BITGROK" run sweeps/interop.toml --artifacts "$OUT/artifacts" >"$OUT/train.log" 2>&1 ||
    { cat "$OUT/train.log"; exit 1; }
table=$OUT/artifacts/sweeps/interop/cells.csv
for key in $(tail -n +2 "$table" | cut -d, -f7); do
    "$BITGROK" export "$key" --format transformer-lens "$OUT/exports/$key" \
        --artifacts "$OUT/artifacts" >>"$OUT/export.log" 2>&1
done
cells=$(ls "$OUT/exports" | wc -l)
# The same exports with their hooks dropped (only those that have hooks).
python3 - "$OUT" <<'PY'
import json, shutil, sys
from pathlib import Path
out = Path(sys.argv[1])
for d in sorted((out / "exports").iterdir()):
    usage = json.loads((d / "usage.json").read_text())
    if any(usage["hooks"].values()):
        shutil.copytree(d, out / "unhooked" / d.name)
        usage["hooks"] = {major: [] for major in usage["hooks"]}
        (out / "unhooked" / d.name / "usage.json").write_text(json.dumps(usage))
PY
unhooked=$(ls "$OUT/unhooked" | wc -l)
# The recipes' cells: li2024 int4 with 4-bit activations, nanda2023 at rate 0.5 (sum).
# cells.csv columns: model.arch, precision, quant.binary_scale, quant.act_bits,
# model.attention_rate, model.uniform_attention, key, ...
recipe_cells=$(awk -F, '($1 == "li2024" && $4 == 4) || ($1 == "nanda2023" && $6 == "sum") { print $7 }' "$table")
[ "$(echo "$recipe_cells" | wc -w)" -eq 2 ] || { echo "FAIL: the recipes' cells are not in $table" >&2; exit 1; }
took "training and exporting $cells cells"

# README's recipe for TransformerLens major $1: the python block after its marker.
recipe() {
    awk -v m="<!-- recipe: transformer-lens $1 -->" '
        $0 == m { on = 1; next }
        on && /^```python/ { code = 1; next }
        code && /^```/ { exit }
        code { print }' README.md
}

for version in $VERSIONS; do
    major=${version%%.*}
    py=$VENVS/tl-$version/bin/python
    log=$OUT/load-$version.log
    "$py" scripts/load_transformer_lens.py "$OUT"/exports/* >"$log" 2>"$log.err" || true
    cat "$log"
    matched=$(grep -c ': match$' "$log" || true)
    if [ "$matched" -eq "$cells" ]; then pass; else fail "TransformerLens $version: $matched of $cells exports match (see $log, $log.err)"; fi

    ulog=$OUT/unhooked-$version.log
    "$py" scripts/load_transformer_lens.py "$OUT"/unhooked/* >"$ulog" 2>"$ulog.err" && status=0 || status=$?
    mismatched=$(grep -c ': MISMATCH: ' "$ulog" || true)
    if [ "$status" -eq 1 ] && [ "$mismatched" -eq "$unhooked" ]; then
        pass
    else
        fail "TransformerLens $version: without their hooks $mismatched of $unhooked exports mismatch, exit status $status (see $ulog)"
    fi

    # Zhong et al.'s symmetricity protocol runs on every export: one line each.
    zlog=$OUT/zhong-symmetricity-$version.log
    "$py" scripts/zhong_symmetricity.py "$OUT"/exports/* >"$zlog" 2>"$zlog.err" || true
    measured=$(grep -Ec 'their notebook\) -?[01]\.[0-9]{4}, on \[a, b, =\] \(as trained\) -?[01]\.[0-9]{4}$' "$zlog" || true)
    if [ "$measured" -eq "$cells" ]; then pass; else fail "TransformerLens $version: scripts/zhong_symmetricity.py measured $measured of $cells exports (see $zlog, $zlog.err)"; fi

    recipe "$major" >"$OUT/recipes/tl$major.py"
    [ -s "$OUT/recipes/tl$major.py" ] || { fail "README has no recipe for TransformerLens $major"; continue; }
    for key in $recipe_cells; do
        export_dir=$OUT/exports/$key
        if ! "$py" "$OUT/recipes/tl$major.py" "$export_dir" >"$OUT/recipes/tl$major-$key.log" 2>&1; then
            fail "README's TransformerLens $major recipe on $key (see $OUT/recipes/tl$major-$key.log)"
            continue
        fi
        pass
        # Round trip: the model the recipe saved, analysed with the cell's flags,
        # split and curves, is the cell's own signature.
        flags=$(python3 -c "import json, sys; u = json.load(open(sys.argv[1])); print('--arch', u['arch'], \
'--act-bits', u['act_bits'], '--attention-rate', u['attention_rate'], '--uniform-attention', u['uniform_attention'])" \
            "$export_dir/usage.json")
        cell=$OUT/artifacts/cells/$key
        # shellcheck disable=SC2086
        "$BITGROK" analyze "$export_dir/model.tl$major.safetensors" $flags --split "$cell/split.csv" \
            --curves "$cell/curves.csv" --out "$OUT/roundtrip-tl$major-$key" >/dev/null
        # A model file does not carry its seed, so its signature has no
        # initial query path (`query_init` null); every other field must match.
        if python3 - "$OUT/roundtrip-tl$major-$key/signature.json" "$cell"/analysis/*/signature.json <<'PY'
import json, sys
from_file, from_cell = (json.load(open(path)) for path in sys.argv[1:3])
assert from_file["algorithm"]["query_init"] is None
from_cell["algorithm"]["query_init"] = None
sys.exit(0 if from_file == from_cell else 1)
PY
        then
            pass
        else
            fail "TransformerLens $version round trip of $key: the signature differs from the cell's"
        fi
    done
    took "TransformerLens $version"
done
echo "interop test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
