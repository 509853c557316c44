#!/usr/bin/env bash
# OPDS feed pages on a 20,000-book library (BENCHMARKS.md, "OPDS catalogs"): builds the
# release binary and the benchmark Calibre library, serves it, waits for the sync, then
# times every page of the catalog's lists as an app reads them (loadtest/scripts/opds_pages.py).
#
# usage: loadtest/scripts/opds.sh [BOOKS]   (default 20000; data under target/bench-opds)
set -euo pipefail
cd "$(dirname "$0")/../.."
books="${1:-20000}"
work="$PWD/target/bench-opds"
port=8098
cargo build --release -p dogear >&2
rm -rf "$work" && mkdir -p "$work"
python3 loadtest/scripts/make_calibre.py "$work/calibre" "$books"
printf '[[import.calibre]]\npath = "%s"\nlibrary = "bench"\n' "$work/calibre" > "$work/cal.toml"
echo 'correct horse battery' | ./target/release/dogear --data "$work/d" user add bench --admin --password-stdin
./target/release/dogear --config "$work/cal.toml" --data "$work/d" serve --listen "127.0.0.1:$port" > "$work/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
    grep -q "Calibre library synced" "$work/log" && break
    sleep 0.5
done
grep "Calibre library synced" "$work/log" >&2
# What follows the sync (thumbnails, the full-text index's merges, checkpoints) is not a
# feed page's cost: wait until the server has used under 5 % of a core for a second.
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
for _ in $(seq 1 120); do
    a=$(cpu); sleep 1; b=$(cpu)
    [ $((b - a)) -lt 5 ] && break
done
python3 loadtest/scripts/opds_pages.py "http://127.0.0.1:$port" bench 'correct horse battery'
