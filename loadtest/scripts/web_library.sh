#!/usr/bin/env bash
# The web app's library on a big library (BENCHMARKS.md, "Issue 15"): builds the release
# binary and the benchmark Calibre library (as opds.sh does), serves it, waits for the sync
# and for the server to go idle, then times the library in Chromium (web_library.py).
#
# usage: loadtest/scripts/web_library.sh [BOOKS] [PAGES]   (defaults 20000 and 50; data under
# target/bench-web). Needs Debian's chromium and PyPI's playwright (scripts/test.sh installs both).
set -euo pipefail
cd "$(dirname "$0")/../.."
books="${1:-20000}"
pages="${2:-50}"
work="$PWD/target/bench-web"
. loadtest/scripts/calibre_node.sh
python3 loadtest/scripts/web_library.py "$url" bench 'correct horse battery' "$pages"
