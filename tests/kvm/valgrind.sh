#!/usr/bin/env bash
# Every exit path releases what it took: runs tiny guests under valgrind
# (poweroff, reboot, SIGTERM while halted) and fails on any leaked heap
# block, memory error, or file descriptor opened by shoji-vmm and left open.
# valgrind cannot run a process under a seccomp filter: --seccomp off here.
#   valgrind.sh VMM HELLO_ELF REBOOT_ELF HALT_ELF
set -euo pipefail
vmm=$1 hello=$2 reboot=$3 halt=$4

if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
	echo "SKIP: /dev/kvm is not usable by $(id -un)"; exit 77
fi
if ! command -v valgrind >/dev/null; then
	echo "SKIP: valgrind is not installed"; exit 77
fi
if ldd "$vmm" | grep -q libasan; then
	echo "SKIP: sanitizer build; LeakSanitizer checks leaks there"; exit 77
fi

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail=0

# check NAME LOG: no valgrind errors, no leaks, only inherited fds open at exit.
check() {
	local name=$1 log=$2
	if ! grep -q "ERROR SUMMARY: 0 errors" "$log"; then
		echo "FAIL: $name: valgrind reports errors or leaks"; cat "$log"; fail=1; return
	fi
	# Every block freed, or the only ones left are those valgrind.supp
	# names (library constructors'): nothing definitely, possibly or
	# indirectly lost and nothing else still reachable.
	if ! grep -q "All heap blocks were freed" "$log" &&
		! grep -Eq "still reachable: 0 bytes in 0 blocks" "$log"; then
		echo "FAIL: $name: heap blocks still in use at exit"; cat "$log"; fail=1; return
	fi
	# valgrind lists each open fd; ours are those not "<inherited from parent>".
	local ours
	ours=$(awk '/Open (file descriptor|AF_UNIX socket)/ {fd=$0; getline; if ($0 !~ /inherited from parent/) print fd}' "$log")
	if [ -n "$ours" ]; then
		echo "FAIL: $name: file descriptors left open: $ours"; fail=1; return
	fi
	echo "ok: $name: no leaks, no errors, no fds left open"
}

run() {
	local name=$1 guest=$2 want=$3 sig=${4:-}
	local log=$dir/$name.vg
	valgrind --track-fds=yes --leak-check=full --show-leak-kinds=all \
		--suppressions="$(dirname "$0")/valgrind.supp" \
		--errors-for-leak-kinds=all --error-exitcode=99 --log-file="$log" \
		"$vmm" --seccomp off --kernel "$guest" --memory 64M --serial "file=$dir/$name.out" </dev/null 2>"$dir/$name.err" &
	local pid=$!
	if [ -n "$sig" ]; then
		for _ in $(seq 1 600); do grep -q . "$dir/$name.out" 2>/dev/null && break; sleep 0.1; done
		sleep 0.5
		kill -s "$sig" "$pid"
	fi
	local status=0
	wait "$pid" || status=$?
	if [ "$status" != "$want" ]; then
		echo "FAIL: $name: exit status $status, expected $want"; cat "$dir/$name.err" "$log"; fail=1; return
	fi
	check "$name" "$log"
}

run poweroff "$hello" 0
run reboot "$reboot" 3
run sigterm "$halt" 6 TERM
exit $fail
