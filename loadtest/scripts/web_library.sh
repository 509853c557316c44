#!/usr/bin/env bash
# The web app's library on a big library (BENCHMARKS.md, "Issue 15"): builds the release
# binary and the benchmark Calibre library (as opds.sh does), serves it, waits for the sync
# and for the server to go idle, then times the library in Chromium (web_library.py).
#
# usage: loadtest/scripts/web_library.sh [BOOKS] [PAGES]   (defaults 20000 and 50; data under
# target/bench-web). Needs Debian's chromium and PyPI's playwright (scripts/test.sh installs both).
set -euo pipefail
cd "$(dirname "$0")/../.."
books="${1:-20000}"
pages="${2:-50}"
work="$PWD/target/bench-web"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
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
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
for _ in $(seq 1 300); do
    a=$(cpu); sleep 1; b=$(cpu)
    [ $((b - a)) -lt 5 ] && break
done
python3 loadtest/scripts/web_library.py "http://127.0.0.1:$port" bench 'correct horse battery' "$pages"
