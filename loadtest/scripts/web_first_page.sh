#!/usr/bin/env bash
# The web reader's first page: starts a dogear, makes a reader, uploads a book (BOOK, the
# Hamlet fixture by default) and times opening it in Chromium (web_first_page.py).
#
#   loadtest/scripts/web_first_page.sh [DOGEAR_BINARY]
#
# RUNS (openings of each kind, 20). Needs Debian's chromium and PyPI's playwright (what
# scripts/test.sh installs).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-target/release/dogear}
book_file=${BOOK:-tests/fixtures/books/good/hamlet.epub}
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" --data "$dir/data" serve --listen "127.0.0.1:$port" >"$dir/out" 2>"$dir/log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 300); do grep -q "listening on" "$dir/out" && break; sleep 0.1; done
url="http://127.0.0.1:$port"
token=$(curl -sf -X POST "$url/v1/auth/register" -H 'content-type: application/json' \
    -d '{"username":"bench","password":"correct horse battery"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
job=$(curl -sf -X POST "$url/v1/books/upload" -H "authorization: Bearer $token" \
    -H "content-disposition: attachment; filename=\"$(basename "$book_file")\"" --data-binary @"$book_file" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
for _ in $(seq 1 300); do
    state=$(curl -sf "$url/v1/imports/$job" -H "authorization: Bearer $token")
    case "$state" in *'"done"'*|*'"failed"'*) break;; esac
    sleep 0.1
done
book=$(echo "$state" | python3 -c 'import json,sys; print(json.load(sys.stdin)["book_id"])')
echo "dogear $("$bin" --version 2>/dev/null || echo "$bin"), book $(basename "$book_file")"
python3 loadtest/scripts/web_first_page.py "$url" bench "correct horse battery" "$book"
