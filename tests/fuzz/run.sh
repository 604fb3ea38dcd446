#!/bin/sh
# Builds one libFuzzer target with clang (whatever compiler Meson uses) and
# runs it for a bounded time on a copy of its seed corpus; any crash, leak
# or timeout fails the test and is replayed with its stack trace.
# usage: run.sh SOURCE_ROOT NAME SECONDS [LIBS=FLAGS] SOURCE...
#   sources are relative to SOURCE_ROOT; LIBS= names the extra libraries
#   the target links besides -lpthread -luring ("LIBS=-ljansson"), as
#   linker flags: not every library ships a usable pkg-config file.
#   FUZZ_SECONDS in the environment overrides SECONDS (make fuzz sets it).
set -u
root=$1 name=$2 secs=${FUZZ_SECONDS:-$3}
shift 3
libs=""
case "${1:-}" in LIBS=*) libs=${1#LIBS=}; shift ;; esac
command -v clang >/dev/null || { echo "SKIP: clang is not installed"; exit 77; }
dir=$(mktemp -d)
# Scratch files of the targets (images, definitions' files), named by
# TMPDIR and so removed with everything else even when a target crashes:
# on tmpfs when there is one, where fdatasync costs nothing.
work=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d -p "$dir")
trap 'rm -rf "$dir" "$work"' EXIT
srcs=""
for s in "$@"; do srcs="$srcs $root/$s"; done
# shellcheck disable=SC2086
if ! clang -g -O1 -std=c17 -D_GNU_SOURCE -DSHOJI_VERSION=\"fuzz\" -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined -I"$root/src" $srcs -o "$dir/fuzz" $libs -lpthread -luring \
	2>"$dir/build.log"; then
	if grep -q "libclang_rt.fuzzer\|cannot find -lclang\|cannot find.*fuzzer" "$dir/build.log"; then
		echo "SKIP: clang has no libFuzzer runtime (libclang-rt-dev)"; exit 77
	fi
	cat "$dir/build.log"; exit 1
fi
mkdir "$dir/corpus"
cp "$root/tests/fuzz/corpus/$name"/* "$dir/corpus/"
cd "$dir" || exit 1
TMPDIR=$work ./fuzz -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 corpus >fuzz.log 2>&1
status=$?
# The final coverage line and statistics (a dictionary may follow DONE).
grep -E '^#[0-9]+[[:space:]]+DONE|^Done|^stat::' fuzz.log
for a in crash-* leak-* timeout-* oom-*; do
	[ -e "$a" ] || continue
	echo "FAIL: the fuzzer found $a; replaying:"
	TMPDIR=$work ./fuzz "$a" 2>&1 | tail -40
	exit 1
done
if [ "$status" -ne 0 ]; then
	echo "FAIL: the fuzzer ended with status $status and no finding:"
	tail -30 fuzz.log
	exit 1
fi
echo "$name: fuzzed for ${secs}s without findings"
