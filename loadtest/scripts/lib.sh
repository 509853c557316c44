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

# threads: CPU ticks so far of each of the server's threads, as "tid name ticks" lines.
# Threads are told apart by id: tokio's blocking threads (argon2 of the registrations) share
# the workers' name and exit after ten idle seconds, which must not look like negative CPU.
threads() {
    for t in /proc/"$pid"/task/*; do
        echo "${t##*/} $(cat "$t/comm" 2>/dev/null) $(awk '{print $14 + $15}' "$t/stat" 2>/dev/null)"
    done | awk 'NF == 3'
}

# per_request BEFORE AFTER N: microseconds of CPU a request between two `threads`, as
# "HTTP+actors | log writer | applier | all". A thread started in between counts from zero;
# one that ended in between is left out.
per_request() {
    awk -v n="$3" '
        FNR == NR {before[$1] = $3; next}
        {d = $3 - before[$1]; by[$2] += d; all += d}
        END {printf "%.1f | %.1f | %.1f | %.1f", by["tokio-rt-worker"] * 10000 / n,
            by["dogear-sqlite-w"] * 10000 / n, by["dogear-sqlite-a"] * 10000 / n, all * 10000 / n}
    ' <(echo "$1") <(echo "$2")
}
