#!/usr/bin/env bash
# Runs the whole test suite of one build directory and ends with the summary
# line "N passed, N failed" (skips are counted and their reasons printed).
set -u
build=${1:-build}
shift || true
# Sanitizer findings must fail the test that triggers them, not just print.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1}
meson test -C "$build" --no-rebuild --print-errorlogs "$@"
rc=$?
python3 "$(dirname "$0")/test-summary.py" "$build/meson-logs/testlog.json" || rc=1
exit $rc
