#!/usr/bin/env bash
# Durable progress writes against the same server's `GET /health`, in one run, measured two
# ways: with wrk (a light client: one thread, 256 connections, `loadtest/wrk/progress.lua`)
# and with dogear-loadtest (REST, WebSocket, Kobo PUTs, and one hot reader). BENCHMARKS.md
# quotes its output.
#
#   loadtest/scripts/progress.sh [DOGEAR_BINARY]
#
# DURATION (seconds per phase, 10), DURABILITY (full, or normal to see what the fsyncs cost), BACKEND=postgres with DOGEAR_BENCH_POSTGRES (a URL whose
# user may create databases) to measure PostgreSQL instead of the embedded store.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-target/release/dogear}
lt=${LOADTEST:-target/release/dogear-loadtest}
duration=${DURATION:-10}
command -v wrk >/dev/null || { echo "needs wrk (Debian package wrk)" >&2; exit 1; }
. loadtest/scripts/lib.sh # threads, per_request

dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export DOGEAR_STORAGE__DURABILITY=${DURABILITY:-full}
if [ "${BACKEND:-sqlite}" = postgres ]; then
    db="bench_$(date +%s)_$$"
    psql "${DOGEAR_BENCH_POSTGRES:?BACKEND=postgres needs DOGEAR_BENCH_POSTGRES}" -qc "CREATE DATABASE $db" >/dev/null
    export DOGEAR_STORAGE__BACKEND=postgres
    export DOGEAR_STORAGE__POSTGRES_URL="${DOGEAR_BENCH_POSTGRES%/*}/$db"
fi
"$bin" --data "$dir/data" serve --listen "127.0.0.1:$port" >"$dir/out" 2>"$dir/log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 300); do grep -q "listening on" "$dir/out" && break; sleep 0.1; done
url="http://127.0.0.1:$port"
echo "dogear $("$bin" --version 2>/dev/null || echo "$bin"), backend ${BACKEND:-sqlite}, durability $DOGEAR_STORAGE__DURABILITY, pid $pid"

"$lt" --url "$url" --concurrency 256 --duration "$duration" --pid "$pid" \
    --phases health,http,ws,kobo,hot --accounts-out "$dir/accounts.txt"

echo
echo "wrk -t1 -c256 -d${duration}s:"
health=$(wrk -t1 -c256 -d"${duration}s" --latency "$url/health")
# Bytes the disk took per write (the whole device, from /proc/diskstats) and the server's
# CPU, over the 256 readers' writes.
disk() {
    local dev
    dev=$(df --output=source "$dir" | tail -1 | sed 's|/dev/||')
    awk -v d="$dev" '$3==d {printf "%.0f\n", $10*512}' /proc/diskstats
}
cpu() { awk '{print $14 + $15}' /proc/"$pid"/stat; }
t0=$(threads)
d0=$(disk); c0=$(cpu)
writes=$(ACCOUNTS="$dir/accounts.txt" wrk -t1 -c256 -d"${duration}s" --latency -s loadtest/wrk/progress.lua "$url")
d1=$(disk); c1=$(cpu)
t1=$(threads)
n=$(awk '/requests in/ {print $1}' <<<"$writes")
summary() { # name output
    local rps p50 p99 errs
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$2")
    p50=$(awk '$1=="50%" {print $2}' <<<"$2")
    p99=$(awk '$1=="99%" {print $2}' <<<"$2")
    errs=$(awk '/Non-2xx/ {print $NF}' <<<"$2")
    printf '| %-16s | %10s req/s | p50 %8s | p99 %8s | non-2xx %s |\n' "$1" "$rps" "$p50" "$p99" "${errs:-0}"
}
hot=$(ACCOUNTS="$dir/accounts.hot.txt" wrk -t1 -c64 -d"${duration}s" --latency -s loadtest/wrk/progress.lua "$url")
kobo=$(ACCOUNTS="$dir/accounts.txt" wrk -t1 -c256 -d"${duration}s" --latency -s loadtest/wrk/kobo.lua "$url")
summary "GET /health" "$health"
summary "POST progress" "$writes"
summary "hot reader (64)" "$hot"
summary "Kobo PUT state" "$kobo"
echo "hot reader: $(grep 'applied writes' <<<"$hot")"
awk -v w="$(awk '/Requests\/sec/ {print $2}' <<<"$writes")" \
    -v h="$(awk '/Requests\/sec/ {print $2}' <<<"$health")" \
    'BEGIN {printf "wrk: POST progress / GET /health throughput: %.1f%%\n", 100 * w / h}'
awk -v k="$(awk '/Requests\/sec/ {print $2}' <<<"$kobo")" \
    -v w="$(awk '/Requests\/sec/ {print $2}' <<<"$writes")" \
    'BEGIN {printf "wrk: Kobo PUT state / POST progress throughput: %.1f%%\n", 100 * k / w}'
echo "256 readers' writes: $(( (d1 - d0) / n )) bytes written to the disk a write; server CPU $(awk -v c=$((c1 - c0)) -v d="$duration" 'BEGIN {printf "%.2f", c / 100 / d}') cores"
echo "server at the end: VmRSS $(awk '/VmRSS/ {print $2, $3}' /proc/$pid/status)"
echo "256 readers' writes, CPU a write by thread:"
echo "  HTTP+actors | log writer | applier | all (µs): $(per_request "$t0" "$t1" "$n")"
