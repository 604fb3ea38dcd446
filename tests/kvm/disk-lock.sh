#!/usr/bin/env bash
# An image one VM has open for writing is refused to a second VM (writable
# or read-only), with one line and status 2; two read-only users share it;
# once the writer is gone the image is free again.
#   disk-lock.sh VMM HALT_ELF HELLO_ELF
set -euo pipefail
vmm=$1 halt=$2 hello=$3
if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
	echo "SKIP: /dev/kvm is not usable by $(id -un)"; exit 77
fi
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
truncate -s 16M "$dir/disk.img"
fail=0

# start_vm DISKSPEC: a halting VM holding the disk, once it is running.
start_vm() {
	"$vmm" --kernel "$halt" --memory 64M --serial "file=$dir/halt.out" --disk "$1" 2>>"$dir/holder.log" &
	pids+=($!)
	for _ in $(seq 1 300); do grep -q halting "$dir/halt.out" 2>/dev/null && return; sleep 0.1; done
	echo "FAIL: the holding VM did not start"; cat "$dir/holder.log"; exit 1
}

# expect NAME STATUS LOGREGEX DISKSPEC
expect() {
	local status=0
	"$vmm" --kernel "$hello" --memory 64M --serial off --disk "$4" 2>"$dir/err" || status=$?
	local bad=""
	[ "$status" = "$2" ] || bad="status $status, want $2"
	grep -Eq "$3" "$dir/err" || bad="$bad; log does not match /$3/"
	# A refusal is exactly one line.
	if [ "$2" != 0 ] && [ "$(wc -l <"$dir/err")" != 1 ]; then bad="$bad; not one line"; fi
	if [ -n "$bad" ]; then
		echo "FAIL: $1: $bad; log:"; cat "$dir/err"; fail=1
	else
		echo "ok: $1"
	fi
}

start_vm "path=$dir/disk.img"
expect "second writer refused" 2 "disk.img: is in use: another VM or program" "path=$dir/disk.img"
expect "reader refused while a writer holds it" 2 "disk.img: is in use: another VM or program" "path=$dir/disk.img,readonly=on"
kill "${pids[0]}"; wait "${pids[0]}" || true
expect "free again once the writer stopped" 0 "powered off" "path=$dir/disk.img"
rm -f "$dir/halt.out"
start_vm "path=$dir/disk.img,readonly=on"
expect "two readers share it" 0 "powered off" "path=$dir/disk.img,readonly=on"
expect "writer refused while a reader holds it" 2 "disk.img: is in use: another VM or program" "path=$dir/disk.img"
exit $fail
