#!/usr/bin/env bash
# Copy a finished sweep's tables, report and figures from an artifacts folder to
# results/<name>/, with a PROVENANCE.md saying what produced them. Used by
# `make results NAME=...`, with the cell pages the report links to; the weights stay
# in the artifacts folder (`make save-models` copies them to models/).
set -euo pipefail
name=$1
artifacts=$2
bitgrok=${BITGROK:-target/release/bitgrok}
src="$artifacts/sweeps/$name"
dst="results/$name"
[ -f "$src/cells.csv" ] || { echo "no tables in $src: run the sweep first" >&2; exit 1; }
# Only complete sweeps are published: committed evidence must be re-runnable as is.
total=$("$bitgrok" plan "sweeps/$name.toml" --artifacts "$artifacts" | tail -1)
case "$total" in
    *" 0 partial, 0 failed, 0 missing") ;;
    *) echo "$total" >&2
       echo "sweep $name is not complete in $artifacts: not publishing" >&2
       exit 1 ;;
esac
mkdir -p "$dst/figures" "$dst/cells"
rm -f "$dst"/*.csv "$dst"/figures/*.svg "$dst"/cells/*.html
cp "$src"/*.csv "$src/report.html" "$dst/"
cp "$src"/figures/*.svg "$dst/figures/"
# The cell pages hold the per-cell figures (neuron heatmaps, attention maps): the
# ones the report links, not pages of cells no longer in the sweep (or under an
# older key); every link must resolve inside results/.
for link in $(grep -o 'href="cells/[^"]*"' "$dst/report.html" | cut -d'"' -f2 | sort -u); do
    [ -f "$src/$link" ] || { echo "report links $link, which the report did not write" >&2; exit 1; }
    cp "$src/$link" "$dst/$link"
done
# Cells moved from a legacy key (see README, "Cell keys"): the mapping, so tables
# and pages published under the legacy keys can be matched.
rm -f "$dst/legacy_keys.csv"
for key in $("$(dirname "$0")/table_keys.sh" "$dst/cells.csv"); do
    from="$artifacts/cells/$key/adopted_from"
    if [ -f "$from" ]; then
        [ -f "$dst/legacy_keys.csv" ] || echo "key,legacy_key" > "$dst/legacy_keys.csv"
        echo "$key,$(cat "$from")" >> "$dst/legacy_keys.csv"
    fi
done
commit=$(git rev-parse HEAD)
git diff --quiet HEAD -- src Cargo.toml Cargo.lock "sweeps/$name.toml" || commit="$commit (with uncommitted changes)"
cat > "$dst/PROVENANCE.md" <<MD
# $name: provenance

- sweep file: \`sweeps/$name.toml\`
- produced by: \`make results NAME=$name\` (\`bitgrok run sweeps/$name.toml --artifacts ARTIFACTS\`, then \`scripts/publish_results.sh\`)
- bitgrok: $("$bitgrok" --version), commit $commit
- published: $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))
- cells: ${total#total: }

Check a re-run against these tables (exit 0 when nothing changed beyond tolerance):

    make results-check NAME=$name

Training time (\`train_seconds\`) is the only column expected to differ. Cells are
found by content key, so a cell trained earlier, by any bitgrok with the same key
rules, is reused rather than retrained; each cell's \`manifest.json\` records the
version that trained it.
MD
echo "published $src to $dst"
