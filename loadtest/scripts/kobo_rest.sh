#!/usr/bin/env bash
# Kobo reading-state PUTs against REST progress writes, through wrk (issue 11 asks for Kobo
# at 90 % of REST): 256 readers, each with a Kobo. ROUNDS times a fresh server, on which
# REST and Kobo runs alternate, REST first and last (R K R K R with PAIRS=2). Each Kobo run
# is compared with the mean of the REST runs either side of it, which cancels most of this
# machine's drift in speed (a quarter between minutes) and the order of the runs. One line a
# run with requests/s, the ratio, the writes that moved a book, and the CPU a request costs
# in the server's threads.
#
#   loadtest/scripts/kobo_rest.sh [BINARY] [ROUNDS]
#
# DURATION (seconds of each wrk run, 4), PAIRS (Kobo runs a server, 2). Needs wrk and
# target/release/dogear-loadtest.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-target/release/dogear} rounds=${2:-2}
duration=${DURATION:-4} pairs=${PAIRS:-2}
command -v wrk >/dev/null || { echo "needs wrk (Debian package wrk)" >&2; exit 1; }
. loadtest/scripts/lib.sh

from=0
run() { # name script; sets rps and line
    local t0 t1 out n p99 per moved
    # Each run starts its positions ahead of where the last one left them.
    from=$((from + 5))
    t0=$(threads)
    out=$(FROM=$from ACCOUNTS="$dir/accounts.txt" wrk -t1 -c256 -d"${duration}s" --latency -s "$2" "$url")
    t1=$(threads)
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    moved=$(awk '/applied writes:|bookmarks taken:/ {print $3}' <<<"$out")
    per=$(per_request "$t0" "$t1" "$n")
    line=$(printf '%9s | %8s | %5.1f %% | %s' "$rps" "$p99" \
        "$(awk -v m="$moved" -v n="$n" 'BEGIN {print 100 * m / n}')" "$per")
    grep -E "status [0-9]+:" <<<"$out" | head -3 >&2 || true
}
ratios=()
one() { # a fresh server; REST and Kobo alternate, REST first and last
    start_server "$bin"
    from=0
    local before kobo kline
    run REST loadtest/wrk/progress.lua
    printf '| REST | %s | |\n' "$line"
    before=$rps
    for _ in $(seq 1 "$pairs"); do
        run Kobo loadtest/wrk/kobo.lua
        kobo=$rps kline=$line
        run REST loadtest/wrk/progress.lua
        local r
        r=$(awk -v k="$kobo" -v a="$before" -v b="$rps" 'BEGIN {printf "%.1f", 200 * k / (a + b)}')
        ratios+=("$r")
        printf '| Kobo | %s | %s %% |\n' "$kline" "$r"
        printf '| REST | %s | |\n' "$line"
        before=$rps
    done
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
}
echo "| writes | req/s | p99 | moved a book | µs a request: HTTP+actors | writer | applier | all | Kobo / REST either side |"
echo "|---|---|---|---|---|---|---|---|---|"
for _ in $(seq 1 "$rounds"); do
    one
done
printf 'Kobo / REST: median %s %% of %d (%s)\n' \
    "$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}')" \
    "${#ratios[@]}" "${ratios[*]}"
