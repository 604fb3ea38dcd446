#!/usr/bin/env bash
# Runs the whole test suite of one build directory and ends with the summary
# line "N passed, N failed" (skips are counted and their reasons printed).
set -u
build=${1:-build}
shift || true
meson test -C "$build" --no-rebuild --print-errorlogs "$@"
rc=$?
python3 "$(dirname "$0")/test-summary.py" "$build/meson-logs/testlog.json" || rc=1
exit $rc
