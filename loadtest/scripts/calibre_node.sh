# Sourced by the benchmarks that read a big library (opds.sh, web_library.sh): builds the
# release binary and the benchmark Calibre library of BOOKS books under WORK, makes the
# administrator `bench` (password "correct horse battery"), serves the library on a free
# port, and waits for the sync and then for the server to go idle. Sets `url` and `pid`
# and stops the server on exit.
#
#   work=... books=... . loadtest/scripts/calibre_node.sh
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
# What follows the sync (thumbnails, the full-text index's merges, checkpoints) is not what
# is measured: wait until the server has used under 5 % of a core for a second.
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
for _ in $(seq 1 300); do
    a=$(cpu); sleep 1; b=$(cpu)
    [ $((b - a)) -lt 5 ] && break
done
url="http://127.0.0.1:$port"
