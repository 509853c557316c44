#!/usr/bin/env bash
# Two builds of dogear, alternated, on the light-client measurement of issue 11: a fresh
# server each run, 256 readers, wrk on `GET /health`, then wrk on the readers' durable
# progress writes. One line per run, with the CPU a write costs in each of the server's
# threads, which varies far less from run to run than requests per second on a shared
# machine (this one's speed drifts by a quarter between runs), the bytes the device took a
# write, and what a write left in the database files once the server stopped.
#
#   loadtest/scripts/progress_ab.sh BINARY_A BINARY_B [ROUNDS]
#
# DURATION (seconds of each wrk run, 8). Needs wrk and target/release/dogear-loadtest.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 2 ] || { echo "usage: $0 BINARY_A BINARY_B [ROUNDS]" >&2; exit 2; }
a=$1 b=$2 rounds=${3:-2}
duration=${DURATION:-8}
command -v wrk >/dev/null || { echo "needs wrk (Debian package wrk)" >&2; exit 1; }
. loadtest/scripts/lib.sh

one() { # binary
    local bin=$1
    start_server "$bin"
    local dev health writes n
    dev=$(df --output=source "$dir" | tail -1 | sed 's|/dev/||')
    disk() { awk -v d="$dev" '$3==d {printf "%.0f\n", $10*512}' /proc/diskstats; }
    health=$(wrk -t1 -c256 -d"${duration}s" "$url/health" | awk '/Requests\/sec/ {print $2}')
    local t0 t1 d0 d1 f0 f1
    files() { stat -c %s "$dir/data/dogear.db"; } # the WAL is checkpointed at a clean stop
    t0=$(threads); d0=$(disk); f0=$(files)
    writes=$(ACCOUNTS="$dir/accounts.txt" wrk -t1 -c256 -d"${duration}s" --latency \
        -s loadtest/wrk/progress.lua "$url")
    t1=$(threads); d1=$(disk)
    kill "$pid"; wait "$pid" 2>/dev/null || true
    f1=$(files)
    rm -rf "$dir"
    n=$(awk '/requests in/ {print $1}' <<<"$writes")
    local rps p99 per
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$writes")
    p99=$(awk '$1=="99%" {print $2}' <<<"$writes")
    per=$(per_request "$t0" "$t1" "$n")
    printf '| %-24s | %9s | %9s | %5.1f %% | %8s | %5d | %5d | %s |\n' "$(basename "$bin")" \
        "$health" "$rps" "$(awk -v w="$rps" -v h="$health" 'BEGIN {print 100 * w / h}')" \
        "$p99" "$(( (d1 - d0) / n ))" "$(( (f1 - f0) / n ))" "$per"
}

echo "| build | /health req/s | writes/s | ratio | p99 | disk bytes a write | file bytes a write | µs a write: HTTP+actors | writer | applier | all |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for _ in $(seq 1 "$rounds"); do
    one "$a"
    one "$b"
done
