#!/usr/bin/env bash
# Ten million durable progress writes into one embedded-store server (issue 11): what the
# disk holds per write afterwards, how much memory the process gives back once the readers
# are idle, how long a start takes after SIGKILL in the middle of writes, and that the
# changes feed still resumes by cursor. BENCHMARKS.md quotes its output.
#
#   loadtest/scripts/ten_million.sh [DOGEAR_BINARY]
#
# WRITES (10000000), READERS (256), IDLE (actors' idle timeout in seconds, 30, so that the
# memory after the readers stop is seen within a minute), DATA (a directory to keep the data
# in; by default a fresh one under target/, on the disk being measured, removed at the end),
# IDS (`random` for random event ids instead of ids that count up; see progress.lua).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-target/release/dogear}
lt=${LOADTEST:-target/release/dogear-loadtest}
writes=${WRITES:-10000000}
readers=${READERS:-256}
command -v wrk >/dev/null || { echo "needs wrk (Debian package wrk)" >&2; exit 1; }

keep=${DATA:-}
mkdir -p target
dir=${DATA:-$(mktemp -d -p "$PWD/target")}
mkdir -p "$dir"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
# Access tokens live 15 minutes by default; the run takes longer and wrk does not refresh.
export DOGEAR_STORAGE__DURABILITY=full DOGEAR_ACTORS__IDLE_TIMEOUT_SECS=${IDLE:-30} \
    DOGEAR_AUTH__ACCESS_TTL_SECS=21600
pid=
start() { # log file; sets pid, and took (seconds until the server listens)
    local t0
    t0=$(date +%s.%N)
    "$bin" --data "$dir/data" serve --listen "127.0.0.1:$port" >"$dir/out" 2>"$1" &
    pid=$!
    for _ in $(seq 1 6000); do grep -q "listening on" "$dir/out" && break; sleep 0.05; done
    grep -q "listening on" "$dir/out" || { echo "server did not start:" >&2; tail "$1" >&2; exit 1; }
    took=$(python3 -c "import time; print(f'{time.time() - $t0:.2f}')")
    : >"$dir/out"
}
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    [ -z "$keep" ] && rm -rf "$dir"
    return 0
}
trap cleanup EXIT
mem() { grep -E 'VmRSS|RssAnon|RssFile' /proc/"$pid"/status | tr -s ' \t' ' ' | tr '\n' ' '; }
disk() { # bytes written to the device holding the data directory, from /proc/diskstats
    local dev
    dev=$(df --output=source "$dir" | tail -1 | sed 's|/dev/||')
    awk -v d="$dev" '$3==d {printf "%.0f\n", $10*512}' /proc/diskstats
}
sizes() { du -b "$dir"/data/dogear.db* "$dir"/data/dogear.progress-log* | awk '{n=$2; sub(".*/","",n); printf "%s %.1f MB; ", n, $1/1e6}'; }

start "$dir/log"
echo "dogear $("$bin" --version 2>/dev/null), $writes writes from $readers readers, pid $pid"
echo "idle: $(mem)"
"$lt" --url "$url" --concurrency "$readers" --duration 1 --pid "$pid" --phases health \
    --accounts-out "$dir/accounts.txt" >/dev/null
echo "after registering $readers readers: $(mem)"

d0=$(disk)
t0=$(date +%s)
# wrk runs until the server has answered $writes progress writes, then gets SIGINT (on
# which it prints its summary).
ACCOUNTS="$dir/accounts.txt" wrk -t1 -c"$readers" -d36000s \
    -s loadtest/wrk/progress.lua "$url" >"$dir/wrk" 2>&1 &
w=$!
written() {
    curl -sf "$url/metrics" | awk '/^dogear_progress_writes_total/ {n += $NF} END {printf "%.0f\n", n}'
}
while [ "$(written)" -lt "$writes" ]; do
    sleep 2
    kill -0 "$w" 2>/dev/null || { echo "wrk stopped early" >&2; exit 1; }
    grep -q '^status ' "$dir/wrk" 2>/dev/null && { echo "errors:" >&2; head -3 "$dir/wrk" >&2; exit 1; }
done
kill -INT "$w"; wait "$w" || true
t1=$(date +%s)
d1=$(disk)
n=$(written)
echo "wrote $n in $((t1 - t0)) s ($(( n / (t1 - t0) ))/s; wrk: $(awk '/requests in/ {print $1}' "$dir/wrk") answers, $(awk '/Non-2xx/ {print $NF}' "$dir/wrk") non-2xx)"
echo "right after: $(mem)"
echo "disk written: $(( (d1 - d0) / n )) bytes a write ($(( (d1 - d0) / 1000000 )) MB)"
echo "files: $(sizes)"
sleep $(( ${IDLE:-30} + 30 ))
echo "after the readers went idle: $(mem)"
echo "files: $(sizes)"

# The changes feed still resumes by cursor: the first page, then the page after it.
read -r _ token _ _ < "$dir/accounts.txt"
page=$(curl -sf -H "Authorization: Bearer $token" "$url/v1/progress/changes?limit=500")
cursor=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["next_cursor"])' "$page")
next=$(curl -sf -H "Authorization: Bearer $token" "$url/v1/progress/changes?limit=500&cursor=$cursor")
echo "feed: first page $(python3 -c 'import json,sys; print(len(json.loads(sys.argv[1])["items"]))' "$page") items, next page $(python3 -c 'import json,sys; print(len(json.loads(sys.argv[1])["items"]))' "$next") items"

# A clean restart, then SIGKILL in the middle of writes and a start that replays the log.
kill "$pid"; wait "$pid" 2>/dev/null || true
start "$dir/log2"
echo "start after a clean stop: $took s"
ACCOUNTS="$dir/accounts.txt" wrk -t1 -c"$readers" -d4s -s loadtest/wrk/progress.lua "$url" >/dev/null &
w=$!
sleep 2.5
kill -9 "$pid"; wait "$pid" 2>/dev/null || true
wait "$w" 2>/dev/null || true
start "$dir/log3"
echo "start after SIGKILL during writes: $took s; $(grep -o 'writes=[0-9]*' "$dir/log3" | head -1) replayed from the log"
echo "files: $(sizes)"
