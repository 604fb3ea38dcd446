#!/usr/bin/env bash
# One KVM smoke test: runs a tiny guest in shoji-vmm and checks its exit
# status, its console output and (optionally) a log line.
#   smoke.sh VMM GUEST EXPECTED_STATUS OUTPUT_REGEX [LOG_REGEX] [--signal SIG]
# With --signal, the test waits for the output, then sends SIG to the VMM.
set -euo pipefail

vmm=$1 guest=$2 want_status=$3 want_output=$4 want_log=${5:-}
signal=${7:-}

if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
	echo "SKIP: /dev/kvm is not usable by $(id -un)"
	exit 77
fi

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
out=$dir/console log=$dir/log

"$vmm" --kernel "$guest" --memory 64M --serial "file=$out" 2>"$log" &
pid=$!
if [ -n "$signal" ]; then
	for _ in $(seq 1 300); do
		grep -Eq "$want_output" "$out" 2>/dev/null && break
		sleep 0.1
	done
	kill -s "$signal" "$pid"
fi
# The guests run a few hundred instructions; 60 s is far beyond any healthy run.
for _ in $(seq 1 600); do
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
	kill -9 "$pid"
	echo "FAIL: $(basename "$guest") did not stop within 60 s"; cat "$log"
	exit 1
fi
set +e
wait "$pid"
status=$?
set -e

fail=0
if [ "$status" != "$want_status" ]; then
	echo "FAIL: exit status $status, expected $want_status"
	fail=1
fi
if ! grep -Eq "$want_output" "$out"; then
	echo "FAIL: console output does not match /$want_output/:"
	cat "$out"
	fail=1
fi
if [ -n "$want_log" ] && ! grep -Eq "$want_log" "$log"; then
	echo "FAIL: log does not match /$want_log/:"
	fail=1
fi
echo "--- log"; cat "$log"
[ $fail = 0 ] && echo "ok: $(basename "$guest") exit $status"
exit $fail
