#!/usr/bin/env bash
# `make test-report`: a real browser renders the smoke sweep's report. Trains the
# smoke sweep into a fresh folder, installs Debian's chromium when missing, takes
# headless screenshots of report.html and of one cell page, and fails when either
# is blank. Screenshots: $OUT/report.png and $OUT/cell.png.
set -euo pipefail
cd "$(dirname "$0")/../.."
BITGROK=${BITGROK:-target/release/bitgrok}
OUT=${OUT:-target/report-test}
rm -rf "$OUT"
mkdir -p "$OUT"
"$BITGROK" run sweeps/smoke.toml --artifacts "$OUT/artifacts"
if ! command -v chromium >/dev/null; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi
dir=$(realpath "$OUT/artifacts/sweeps/smoke")
cell=$(ls "$dir"/cells/*.html | head -n 1)
shot() {
    timeout 120 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
        --screenshot="$1" --window-size=1400,3000 "file://$2" 2>"$OUT/chromium.log" ||
        { cat "$OUT/chromium.log"; exit 1; }
}
shot "$(realpath "$OUT")/report.png" "$dir/report.html"
shot "$(realpath "$OUT")/cell.png" "$cell"
python3 tests/report/not_blank.py "$OUT/report.png" "$OUT/cell.png"
