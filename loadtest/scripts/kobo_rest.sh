#!/usr/bin/env bash
# Kobo reading-state PUTs against REST progress writes, through wrk on one fresh server
# (issue 11 asks for Kobo at 90 % of REST): 256 readers, each with a Kobo; ROUNDS times a
# fresh server, a REST run then a Kobo run, one line each with requests/s, the ratio to the
# REST run before it, the writes that moved a book, and the CPU a request costs in the
# server's threads.
#
#   loadtest/scripts/kobo_rest.sh [BINARY] [ROUNDS]
#
# DURATION (seconds of each wrk run, 8). Needs wrk and target/release/dogear-loadtest.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-target/release/dogear} rounds=${2:-2}
duration=${DURATION:-8}
command -v wrk >/dev/null || { echo "needs wrk (Debian package wrk)" >&2; exit 1; }
. loadtest/scripts/lib.sh

rest=0
run() { # name script
    local t0 t1 out n rps p99 per ratio moved
    t0=$(threads)
    out=$(ACCOUNTS="$dir/accounts.txt" wrk -t1 -c256 -d"${duration}s" --latency -s "$2" "$url")
    t1=$(threads)
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    moved=$(awk '/applied writes:|bookmarks taken:/ {print $3}' <<<"$out")
    if [ "$1" = REST ]; then rest=$rps; fi
    ratio=$(awk -v a="$rps" -v b="$rest" 'BEGIN {printf "%.1f %%", 100 * a / b}')
    per=$(per_request "$t0" "$t1" "$n")
    printf '| %-4s | %9s | %7s | %8s | %5.1f %% | %s |\n' "$1" "$rps" "$ratio" "$p99" \
        "$(awk -v m="$moved" -v n="$n" 'BEGIN {print 100 * m / n}')" "$per"
    grep -E "status [0-9]+:" <<<"$out" | head -3 || true
}
one() { # a fresh server, a REST run, a Kobo run
    start_server "$bin"
    run REST loadtest/wrk/progress.lua
    run Kobo loadtest/wrk/kobo.lua
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
}
echo "| writes | req/s | of REST | p99 | moved a book | µs a request: HTTP+actors | writer | applier | all |"
echo "|---|---|---|---|---|---|---|---|---|"
for _ in $(seq 1 "$rounds"); do
    one
done
