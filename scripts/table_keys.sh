#!/usr/bin/env bash
# The distinct cell keys of a bitgrok table (its `key` column), one per line, sorted:
# scripts/table_keys.sh results/<name>/cells.csv
set -euo pipefail
table=$1
col=$(head -1 "$table" | tr ',' '\n' | grep -nx key | cut -d: -f1)
[ -n "$col" ] || { echo "$table has no key column" >&2; exit 1; }
tail -n +2 "$table" | cut -d, -f"$col" | sort -u
