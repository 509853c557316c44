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
lt=${LOADTEST:-target/release/dogear-loadtest}
duration=${DURATION:-8}
command -v wrk >/dev/null || { echo "needs wrk (Debian package wrk)" >&2; exit 1; }

threads() {
    for t in /proc/"$pid"/task/*; do
        echo "$(cat "$t/comm") $(awk '{print $14 + $15}' "$t/stat")"
    done | awk '{a[$1] += $2} END {for (k in a) print k, a[k]}' | sort
}
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
    per=$(join <(echo "$t0") <(echo "$t1") | awk -v n="$n" '
        $1 == "tokio-rt-worker" {h = ($3 - $2) * 10000 / n}
        $1 == "dogear-sqlite-w" {w = ($3 - $2) * 10000 / n}
        $1 == "dogear-sqlite-a" {p = ($3 - $2) * 10000 / n}
        {all += ($3 - $2) * 10000 / n}
        END {printf "%.1f | %.1f | %.1f | %.1f", h, w, p, all}')
    printf '| %-4s | %9s | %7s | %8s | %5.1f %% | %s |\n' "$1" "$rps" "$ratio" "$p99" \
        "$(awk -v m="$moved" -v n="$n" 'BEGIN {print 100 * m / n}')" "$per"
    grep -E "status [0-9]+:" <<<"$out" | head -3 || true
}
one() { # a fresh server, a REST run, a Kobo run
    dir=$(mktemp -d)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    DOGEAR_STORAGE__DURABILITY=full "$bin" --data "$dir/data" serve --listen "127.0.0.1:$port" \
        >"$dir/out" 2>"$dir/log" &
    pid=$!
    for _ in $(seq 1 300); do grep -q "listening on" "$dir/out" && break; sleep 0.1; done
    url="http://127.0.0.1:$port"
    "$lt" --url "$url" --concurrency 256 --duration 1 --pid "$pid" --phases health \
        --accounts-out "$dir/accounts.txt" >/dev/null
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
