# Shared by the wrk measurement scripts (sourced, not run): a fresh server with 256 readers
# registered, and the CPU its threads spent.

# start_server BINARY: a fresh data directory and server with durable progress writes and
# 256 readers (their lines in $dir/accounts.txt); sets dir, pid and url.
start_server() {
    local port
    dir=$(mktemp -d)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    DOGEAR_STORAGE__DURABILITY=full "$1" --data "$dir/data" serve --listen "127.0.0.1:$port" \
        >"$dir/out" 2>"$dir/log" &
    pid=$!
    for _ in $(seq 1 300); do grep -q "listening on" "$dir/out" && break; sleep 0.1; done
    url="http://127.0.0.1:$port"
    "${LOADTEST:-target/release/dogear-loadtest}" --url "$url" --concurrency 256 --duration 1 \
        --pid "$pid" --phases health --accounts-out "$dir/accounts.txt" >/dev/null
}

# threads: CPU ticks so far of the server's threads, summed by thread name.
threads() {
    for t in /proc/"$pid"/task/*; do
        echo "$(cat "$t/comm") $(awk '{print $14 + $15}' "$t/stat")"
    done | awk '{a[$1] += $2} END {for (k in a) print k, a[k]}' | sort
}

# per_request BEFORE AFTER N: microseconds of CPU a request between two `threads`, as
# "HTTP+actors | log writer | applier | all".
per_request() {
    join <(echo "$1") <(echo "$2") | awk -v n="$3" '
        $1 == "tokio-rt-worker" {h = ($3 - $2) * 10000 / n}
        $1 == "dogear-sqlite-w" {w = ($3 - $2) * 10000 / n}
        $1 == "dogear-sqlite-a" {p = ($3 - $2) * 10000 / n}
        {all += ($3 - $2) * 10000 / n}
        END {printf "%.1f | %.1f | %.1f | %.1f", h, w, p, all}'
}
