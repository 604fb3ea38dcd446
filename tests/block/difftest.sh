#!/bin/sh
# Runs the randomized differential test (difftest.c) with fresh seeds until
# the time budget is spent; after each run qemu-img check must find no
# errors and qemu-img compare must find the image equal to the raw model.
# usage: difftest.sh DIFFTEST_BINARY [SECONDS] [SEED]
set -u
bin=$1
budget=${2:-30}
fixed_seed=${3:-}
command -v qemu-img >/dev/null || { echo "SKIP: qemu-img not installed"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
end=$(( $(date +%s) + budget ))
runs=0
while [ "$(date +%s)" -lt "$end" ] || [ $runs -eq 0 ]; do
	seed=${fixed_seed:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
	rm -f "$dir"/*
	if ! "$bin" "$dir" "$seed" 3000; then
		echo "FAIL: seed $seed (replay: $0 $bin 1 $seed)"; exit 1
	fi
	if ! qemu-img check -f qcow2 "$dir/diff.qcow2" >"$dir/check.log" 2>&1; then
		cat "$dir/check.log"; echo "FAIL: qemu-img check, seed $seed"; exit 1
	fi
	if ! qemu-img compare -f qcow2 -F raw "$dir/diff.qcow2" "$dir/model.raw"; then
		echo "FAIL: qemu-img compare, seed $seed"; exit 1
	fi
	runs=$((runs + 1))
	[ -n "$fixed_seed" ] && break
done
echo "$runs runs passed"
