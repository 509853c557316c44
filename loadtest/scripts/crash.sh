#!/usr/bin/env bash
# The crash test of issue 11 with more cycles than the suite runs: a hot reader (64 writers
# over 20 books) and 256 readers writing while the server is SIGKILLed at random moments,
# restarted on the same files each time; every acknowledged write must be in the feed once,
# versions gapless, replays answered as duplicates.
#
#   loadtest/scripts/crash.sh [CYCLES]        # 200 by default; about 3 s a cycle
#
# Needs what the suite needs for this test only: the debug `dogear` binary, built here.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -p dogear
DOGEAR_CRASH_CYCLES=${1:-200} cargo nextest run -p dogear-e2e --no-fail-fast \
    -E 'test(sigkill_during_batches_loses_nothing_and_repeats_nothing)' --no-capture
