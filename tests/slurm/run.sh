#!/usr/bin/env bash
# Cluster integration test: start a single-node Slurm cluster on this machine,
# submit the smoke sweep as a job array, wait for it, and check that every cell is
# done exactly once and that the tables match a local run's. Stops the daemons it
# started. Run from the repository root after `cargo build --release` (make test-slurm).
set -euo pipefail
cd "$(dirname "$0")/../.."
bitgrok=${CARGO_TARGET_DIR:-$PWD/target}/release/bitgrok
work=$(mktemp -d /tmp/bitgrok-slurm.XXXXXX)
cleanup() { tests/slurm/cluster.sh stop "$work/cluster" || true; rm -rf "$work"; }
trap cleanup EXIT

tests/slurm/cluster.sh start "$work/cluster"
export SLURM_CONF=$work/cluster/slurm.conf

"$bitgrok" submit sweeps/smoke.toml --artifacts "$work/cluster-art" --throttle 2 --cpus-per-task 1 --time 00:10:00
deadline=$((SECONDS + 600))
while [ -n "$(squeue -h -o %i)" ]; do
    if [ $SECONDS -gt $deadline ]; then
        echo "FAIL: the job array did not finish within 600 s" >&2
        squeue >&2
        exit 1
    fi
    sleep 2
done

status=$("$bitgrok" status sweeps/smoke.toml --artifacts "$work/cluster-art")
echo "$status"
echo "$status" | grep -q "total: 6 cells, 6 done" || { echo "FAIL: not every cell is done" >&2; cat "$work"/cluster-art/submissions/*/logs/* >&2; exit 1; }

# Each cell was trained exactly once: one "training" line per cell across all task logs.
trained=$(cat "$work"/cluster-art/submissions/*/logs/*.out | grep -c '^training ' || true)
[ "$trained" -eq 6 ] || { echo "FAIL: $trained trainings for 6 cells" >&2; exit 1; }

# A second submit finds nothing left to do.
again=$("$bitgrok" submit sweeps/smoke.toml --artifacts "$work/cluster-art")
echo "$again" | grep -q "nothing to submit" || { echo "FAIL: resubmitted finished cells: $again" >&2; exit 1; }

# The tables equal a local run's.
"$bitgrok" aggregate sweeps/smoke.toml --artifacts "$work/cluster-art"
"$bitgrok" run sweeps/smoke.toml --artifacts "$work/local-art"
"$bitgrok" diff "$work/local-art/sweeps/smoke" "$work/cluster-art/sweeps/smoke" --ignore train_seconds
echo "slurm test: 1 passed, 0 failed"
