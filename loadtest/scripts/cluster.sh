#!/usr/bin/env bash
# Starts N release `dogear` nodes on loopback as one cluster, for the benchmarks in
# BENCHMARKS.md, and prints what dogear-loadtest needs:
#
#   eval "$(loadtest/scripts/cluster.sh start 3)"     # sets URLS, IDS, PIDS, DIR
#   target/release/dogear-loadtest --url "$URLS" --node-ids "$IDS" ...
#   loadtest/scripts/cluster.sh restart "$DIR" 1      # restarts node 1 (after a failover run)
#   loadtest/scripts/cluster.sh stop "$DIR"
#
# Needs DOGEAR_BENCH_POSTGRES (a postgres:// URL whose user may create databases) and
# DOGEAR_BENCH_S3 (an S3 endpoint with a bucket `dogear-test`, such as `moto_server`);
# DOGEAR_BENCH_REDIS (redis://...) is used when set. N=1 with BACKEND=sqlite starts one node
# on SQLite instead, outside any cluster.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=target/release/dogear

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_node() { # dir i
    local dir=$1 i=$2
    (
        set -a
        # shellcheck disable=SC1090,SC1091
        . "$dir/env.common"
        . "$dir/env.$i"
        set +a
        "$bin" --data "$dir/node$i" serve --listen "127.0.0.1:$(cat "$dir/http.$i")" \
            >"$dir/node$i.out" 2>"$dir/node$i.log" &
        echo $! >"$dir/pid.$i"
    )
}

wait_up() { # dir i
    local dir=$1 i=$2
    for _ in $(seq 1 300); do
        if grep -q "listening on" "$dir/node$i.out" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "node $i did not start; see $dir/node$i.log" >&2
    exit 1
}

case "${1:-}" in
start)
    n=${2:-3}
    dir=$(mktemp -d)
    if [ "${BACKEND:-postgres}" = sqlite ]; then
        : >"$dir/env.common"
        : >"$dir/env.0"
        free_port >"$dir/http.0"
        start_node "$dir" 0
        wait_up "$dir" 0
        echo "URLS=http://127.0.0.1:$(cat "$dir/http.0"); IDS=local; PIDS=$(cat "$dir/pid.0"); DIR=$dir"
        exit 0
    fi
    db="bench_$(date +%s)_$$"
    psql "$DOGEAR_BENCH_POSTGRES" -q -c "CREATE DATABASE $db" >/dev/null
    pg="${DOGEAR_BENCH_POSTGRES%/*}/$db"
    {
        echo "DOGEAR_STORAGE__BACKEND=postgres"
        echo "DOGEAR_STORAGE__POSTGRES_URL=$pg"
        echo "DOGEAR_STORAGE__OBJECTS=s3://dogear-test/bench-$db"
        echo "AWS_ENDPOINT_URL=$DOGEAR_BENCH_S3"
        echo "AWS_ALLOW_HTTP=true"
        echo "AWS_ACCESS_KEY_ID=test"
        echo "AWS_SECRET_ACCESS_KEY=test"
        echo "AWS_REGION=us-east-1"
        echo "DOGEAR_AUTH__JWT_SECRET=benchmark-secret-0123456789abcdefgh"
        echo "DOGEAR_CLUSTER__COOKIE=bench"
        echo "DOGEAR_LOG=warn"
        echo "RUST_LOG=warn"
        if [ -n "${DOGEAR_BENCH_REDIS:-}" ]; then echo "DOGEAR_REDIS__URL=$DOGEAR_BENCH_REDIS"; fi
    } >"$dir/env.common"
    ports=()
    for i in $(seq 0 $((n - 1))); do ports+=("127.0.0.1:$(free_port)"); free_port >"$dir/http.$i"; done
    urls=""; ids=""
    for i in $(seq 0 $((n - 1))); do
        seeds=""
        for j in $(seq 0 $((n - 1))); do
            if [ "$j" != "$i" ]; then seeds="${seeds:+$seeds,}${ports[$j]}"; fi
        done
        {
            if [ "$n" -gt 1 ] || [ "${CLUSTER:-1}" = 1 ]; then
                echo "DOGEAR_CLUSTER__NODE_ID=n$i"
                echo "DOGEAR_CLUSTER__LISTEN=${ports[$i]}"
                echo "DOGEAR_CLUSTER__SEEDS=$seeds"
            fi
        } >"$dir/env.$i"
        start_node "$dir" "$i"
        urls="${urls:+$urls,}http://127.0.0.1:$(cat "$dir/http.$i")"
        ids="${ids:+$ids,}n$i"
    done
    for i in $(seq 0 $((n - 1))); do wait_up "$dir" "$i"; done
    pids=$(for i in $(seq 0 $((n - 1))); do cat "$dir/pid.$i"; done | paste -sd,)
    echo "URLS=$urls; IDS=$ids; PIDS=$pids; DIR=$dir"
    ;;
restart)
    dir=$2 i=$3
    kill -9 "$(cat "$dir/pid.$i")" 2>/dev/null || true
    : >"$dir/node$i.out"
    start_node "$dir" "$i"
    wait_up "$dir" "$i"
    n=$(ls "$dir"/pid.* | wc -l)
    pids=$(for j in $(seq 0 $((n - 1))); do cat "$dir/pid.$j"; done | paste -sd,)
    echo "PIDS=$pids"
    ;;
stop)
    dir=$2
    for p in "$dir"/pid.*; do kill "$(cat "$p")" 2>/dev/null || true; done
    sleep 1
    rm -rf "$dir"
    ;;
*)
    echo "usage: $0 start N | restart DIR I | stop DIR" >&2
    exit 2
    ;;
esac
