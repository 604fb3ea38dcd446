#!/bin/sh
# bench/api: shojid's API round trip (GET /v1/vms) and the time the daemon
# adds from `shoji vm start` to the exec of the VMM, natively (no guest
# runs: the stand-in VMM stamps the time it started, then execs shoji-vmm,
# which refuses the empty kernel file and exits). See bench/README.md.
# usage: bench/api/run.sh [BUILD_DIR] [RTT_RUNS] [START_RUNS]
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
rtt_runs=${2:-2000}
start_runs=${3:-200}
for b in shojid shoji shoji-vmm; do
	[ -x "$build/$b" ] || { echo "bench/api: $build/$b not built (run make)" >&2; exit 1; }
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/shoji-apibench.XXXXXX")
# The run directory (pids, sockets) is a tmpfs on a real system (/run):
# /dev/shm stands in for it when this host's /run is not one.
run=$tmp/run
if [ "$(stat -f -c %T /run 2>/dev/null)" != tmpfs ] && [ -w /dev/shm ]; then
	run=$(mktemp -d /dev/shm/shoji-apibench.XXXXXX)
fi
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$tmp"
	[ "$run" = "$tmp/run" ] || rm -rf "$run"
}
trap cleanup EXIT
cc -std=c17 -O2 -Wall -o "$tmp/api-bench" "$root/bench/api/api-bench.c" -lpthread
# Static when the toolchain can, so the stamp is not held up by the loader.
cc -std=c17 -O2 -Wall -static -o "$tmp/stamp-vmm" "$root/bench/api/stamp-vmm.c" 2>/dev/null ||
	cc -std=c17 -O2 -Wall -o "$tmp/stamp-vmm" "$root/bench/api/stamp-vmm.c"
: >"$tmp/empty-kernel"
sock=$run/shojid.sock
SHOJI_BENCH_STAMP=$tmp/stamp SHOJI_BENCH_VMM=$build/shoji-vmm \
	"$build/shojid" --state-dir "$tmp/state" --run-dir "$run" --vmm "$tmp/stamp-vmm" \
	--log-level warn 2>"$tmp/shojid.log" &
pid=$!
i=0
until "$build/shoji" --socket "$sock" vm ls >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -lt 100 ] || { echo "bench/api: shojid did not start:" >&2; cat "$tmp/shojid.log" >&2; exit 1; }
	sleep 0.05
done
# A realistic table: a service VM, a client depending on it, the bench's VM.
"$build/shoji" --socket "$sock" vm create files --role service --autostart off \
	--kernel "$tmp/empty-kernel" --memory 1G --vsock cid=3 >/dev/null
"$build/shoji" --socket "$sock" vm create desk --role client --depends-on files \
	--kernel "$tmp/empty-kernel" --memory 4G --cpus 4 --vsock cid=4 --rng >/dev/null
"$build/shoji" --socket "$sock" vm create bench --kernel "$tmp/empty-kernel" --memory 64M >/dev/null
echo "bench/api: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), kernel $(uname -r); state in $tmp ($(stat -f -c %T "$tmp")), run dir $run ($(stat -f -c %T "$run"))"
SHOJI_BENCH_STAMP=$tmp/stamp "$tmp/api-bench" "$sock" bench "$tmp/stamp-vmm" "$tmp/stamp" "$rtt_runs" "$start_runs"
