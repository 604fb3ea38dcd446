#!/bin/sh
# Builds the qcow2 libFuzzer target with clang (independent of the
# compiler Meson uses) and runs it for a bounded time on a copy of the seed
# corpus. usage: fuzz.sh SOURCE_ROOT SECONDS
# FUZZ_SECONDS in the environment overrides SECONDS (make fuzz sets it).
set -u
src=$1
secs=${FUZZ_SECONDS:-${2:-20}}
command -v clang >/dev/null || { echo "SKIP: clang not installed"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# shoji-base without the agent protocol's codec, which needs jansson.
base=$(ls "$src"/src/base/*.c | grep -v '/agent-')
deps=$(pkg-config --cflags --libs zlib libzstd liburing 2>/dev/null || echo "-lz -lzstd -luring")
if ! clang -g -O1 -std=c17 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined -I"$src/src" \
	"$src"/tests/block/fuzz_qcow2.c "$src"/src/block/*.c $base \
	-o "$dir/fuzz" $deps -lpthread 2>"$dir/build.log"; then
	if grep -q "libclang_rt.fuzzer\|fuzzer.*not found\|cannot find" "$dir/build.log"; then
		echo "SKIP: clang has no libFuzzer runtime"; exit 77
	fi
	cat "$dir/build.log"; exit 1
fi
mkdir "$dir/corpus"
cp "$src"/tests/block/corpus/* "$dir/corpus/"
# stderr of the target (check's per-cluster lines) is closed for speed; a
# crash leaves an artifact, which is replayed below with its stack trace.
cd "$dir"
ASAN_OPTIONS=quarantine_size_mb=16 ./fuzz -max_total_time="$secs" -max_len=16384 -timeout=10 \
	-rss_limit_mb=3072 -close_fd_mask=2 -print_final_stats=1 corpus 2>&1 | tail -8
for a in crash-* leak-* timeout-* oom-*; do
	[ -e "$a" ] || continue
	echo "FAIL: fuzzer found $a; replaying:"
	./fuzz "$a" 2>&1 | tail -40
	exit 1
done
echo "fuzzing ran ${secs}s without findings"
