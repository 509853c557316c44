#!/usr/bin/env bash
# Runs Dogear's whole test suite on a fresh machine: unit and property tests, the storage
# conformance suite on real SQLite files, the importers against the fixtures in tests/fixtures, and
# end-to-end tests against real `dogear` processes over loopback HTTP and WebSocket.
#
# Services the tests need are installed if missing and started here, thrown away after:
#   - an S3-compatible server (moto's server mode, from PyPI) for the object-store test;
#   - poppler's pdftoppm (Debian's poppler-utils), which renders PDF covers;
#   - a PostgreSQL server (Debian's postgresql) in a temporary directory on a free port, for
#     the PostgreSQL conformance suite and the nodes that run on it;
#   - a Redis server (Debian's redis-server) on a free port, for the clusters' shared limits;
#   - Debian's Chromium, driven headless by Playwright (from PyPI), for the web app's browser
#     tests (tests/web.rs, tests/browser/web.py).
set -euo pipefail
cd "$(dirname "$0")/.."

# The repository stands alone: nothing in it may reach for a path outside it (the project's
# shared folder, a developer's home). Refuse to start, naming the file, if something does.
outside="$(grep -rIlE '\.\./shared/|\.\./\.\./shared|/work/[s]hared' \
    --exclude-dir=target --exclude-dir=.git --exclude-dir=fixtures . || true)"
if [ -n "$outside" ]; then
    echo "scripts/test.sh: these files refer to a path outside the repository:" >&2
    echo "$outside" >&2
    exit 1
fi

# On CI (or with DOGEAR_TEST_IN_COPY=1) the suite runs from a copy of the repository's files
# in an empty directory, so a test that still reads something beside the checkout fails there.
if [ "${DOGEAR_TEST_COPIED:-}" != 1 ] && { [ "${CI:-}" = true ] || [ "${DOGEAR_TEST_IN_COPY:-}" = 1 ]; }; then
    copy="$(mktemp -d)"
    trap 'rm -rf "$copy"' EXIT
    mkdir "$copy/dogear"
    tar --exclude=./target --exclude=./.git -cf - . | tar -xf - -C "$copy/dogear"
    echo "running the suite from a copy of the repository alone: $copy/dogear" >&2
    (cd "$copy/dogear" && DOGEAR_TEST_COPIED=1 bash scripts/test.sh "$@")
    exit $?
fi

apt_install() {
    if [ "$(id -u)" = 0 ]; then apt-get install -y -q "$@" >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q "$@" >/dev/null; }
    else sudo apt-get install -y -q "$@" >/dev/null; fi
}
if ! command -v pdftoppm >/dev/null 2>&1; then
    echo "installing poppler-utils (PDF cover rendering)" >&2
    apt_install poppler-utils
fi
pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then
    echo "installing postgresql (a throwaway database server)" >&2
    apt_install postgresql
    pg_bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
fi
if ! command -v redis-server >/dev/null 2>&1; then
    echo "installing redis-server (a throwaway Redis)" >&2
    apt_install redis-server
fi
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    echo "installing prometheus (for the monitoring test and promtool)" >&2
    apt_install prometheus
fi
if ! python3 -c 'import moto.server' >/dev/null 2>&1; then
    echo "installing moto[server] (a throwaway S3-compatible server)" >&2
    python3 -m pip install --quiet --disable-pip-version-check 'moto[server]>=5,<6' >&2
fi
if ! command -v chromium >/dev/null 2>&1; then
    echo "installing chromium (the web app's browser tests run it headless)" >&2
    apt_install chromium
fi
if ! python3 -c 'import playwright.sync_api' >/dev/null 2>&1; then
    echo "installing playwright (drives Chromium in the web app's browser tests)" >&2
    python3 -m pip install --quiet --disable-pip-version-check 'playwright>=1.40,<2' >&2
fi
if ! python3 -c 'import feedparser' >/dev/null 2>&1; then
    echo "installing feedparser (reads the OPDS 1.2 feeds as a real feed reader does)" >&2
    python3 -m pip install --quiet --disable-pip-version-check 'feedparser>=6,<7' >&2
fi

work="$(mktemp -d)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# PostgreSQL refuses to run as root: as root, its files belong to (and it runs as) the
# `postgres` user the Debian package made.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
    if [ -f "$work/moto.pid" ]; then kill "$(cat "$work/moto.pid")" 2>/dev/null || true; fi
    if [ -f "$work/redis.pid" ]; then kill "$(cat "$work/redis.pid")" 2>/dev/null || true; fi
    if [ -f "$work/pg/data/postmaster.pid" ]; then as_pg "$pg_bin/pg_ctl" -D "$work/pg/data" -m immediate stop >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# PostgreSQL on a free loopback port, trusting local connections: each test creates its own
# database through DOGEAR_TEST_POSTGRES.
mkdir -p "$work/pg"
chmod 755 "$work"
if [ "$(id -u)" = 0 ]; then chown postgres "$work/pg"; fi
pg_port="$(free_port)"
as_pg "$pg_bin/initdb" -D "$work/pg/data" -U dogear --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$work/initdb.log" 2>&1 \
    || { cat "$work/initdb.log" >&2; exit 1; }
as_pg "$pg_bin/pg_ctl" -D "$work/pg/data" -w -l "$work/pg/server.log" \
    -o "-p $pg_port -k $work/pg -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off" start >/dev/null \
    || { cat "$work/pg/server.log" >&2; exit 1; }
export DOGEAR_TEST_POSTGRES="postgres://dogear@127.0.0.1:$pg_port/postgres"

# Redis on a free loopback port, nothing saved.
redis_port="$(free_port)"
redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
    --daemonize yes --pidfile "$work/redis.pid" --logfile "$work/redis.log"
for _ in $(seq 1 50); do
    if [ -f "$work/redis.pid" ]; then break; fi
    sleep 0.1
done
export DOGEAR_TEST_REDIS="redis://127.0.0.1:$redis_port"

# moto on a free loopback port; the tests use the bucket dogear-test.
port="$(free_port)"
python3 -m moto.server -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
echo $! >"$work/moto.pid"
for _ in $(seq 1 100); do
    if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/')" >/dev/null 2>&1; then break; fi
    sleep 0.1
done
python3 -c "import urllib.request; urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:$port/dogear-test', method='PUT'))"
export DOGEAR_TEST_S3="http://127.0.0.1:$port"

# The deploy files' Prometheus configuration and alert rules must load.
(cd deploy/prometheus && promtool check config prometheus.yml >/dev/null && promtool check rules alerts.yml >/dev/null) \
    || { echo "scripts/test.sh: deploy/prometheus does not pass promtool" >&2; exit 1; }

# The end-to-end tests start the real binary: build it first (tests do not rebuild it).
cargo build --locked -p dogear

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast "$@"
else
    cargo test --workspace --locked --no-fail-fast "$@"
fi
