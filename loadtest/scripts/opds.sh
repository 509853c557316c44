#!/usr/bin/env bash
# OPDS feed pages on a 20,000-book library (BENCHMARKS.md, "OPDS catalogs"): builds the
# release binary and the benchmark Calibre library, serves it, waits for the sync, then
# times every page of the catalog's lists as an app reads them (loadtest/scripts/opds_pages.py).
#
# usage: loadtest/scripts/opds.sh [BOOKS]   (default 20000; data under target/bench-opds)
set -euo pipefail
cd "$(dirname "$0")/../.."
books="${1:-20000}"
work="$PWD/target/bench-opds"
. loadtest/scripts/calibre_node.sh
python3 loadtest/scripts/opds_pages.py "$url" bench 'correct horse battery'
