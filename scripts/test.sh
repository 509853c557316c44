#!/usr/bin/env bash
# Runs Dogear's whole test suite on a fresh machine: unit and property tests, the storage
# conformance suite on real SQLite files, and end-to-end tests against real `dogear`
# processes over loopback HTTP and WebSocket.
#
# The embedded SQLite backend needs no outside service. When a backend that needs one
# (PostgreSQL, Redis, S3) lands, this script installs it from Debian or PyPI if missing
# and starts a throwaway instance here, before the tests run.
set -euo pipefail
cd "$(dirname "$0")/.."

# The end-to-end tests start the real binary: build it first (tests do not rebuild it).
cargo build --locked -p dogear

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast "$@"
else
    cargo test --workspace --locked --no-fail-fast "$@"
fi
