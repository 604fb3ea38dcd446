#!/bin/sh
# bench/net: builds net-bench.c against the sources (no Meson target: a
# benchmark is not a test) and runs it. usage: bench/net/run.sh [FRAMES] [FRAME_BYTES]
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cc -O2 -std=c17 -D_GNU_SOURCE -I"$root/src" "$root/bench/net/net-bench.c" \
	"$root/src/dev/virtio-net.c" "$root/src/dev/virtio-serve.c" "$root/src/dev/virtqueue.c" "$root/src/hv/mem.c" \
	"$root/src/base/iov.c" "$root/src/base/log.c" "$root/src/base/ratelimit.c" "$root/src/base/util.c" -lpthread -o "$out/net-bench"
"$out/net-bench" "$@"
