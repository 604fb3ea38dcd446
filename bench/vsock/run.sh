#!/bin/sh
# Builds bench/vsock/vsock-bench.c with cc against the device, the host side
# and the I/O thread, and runs it: virtio-vsock's data path vs a plain Unix
# socket pair (see bench/README.md).
# usage: bench/vsock/run.sh [MIB] [ROUNDTRIPS] [vmm|eventfd|inline]
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cc -std=c17 -O2 -D_GNU_SOURCE -I"$root/src" -o "$out/vsock-bench" \
	"$root/bench/vsock/vsock-bench.c" "$root/src/dev/virtio-vsock.c" "$root/src/dev/virtio-serve.c" \
	"$root/src/dev/virtqueue.c" "$root/src/hv/mem.c" "$root/src/base/iov.c" "$root/src/base/log.c" "$root/src/base/ratelimit.c" \
	"$root/src/base/util.c" "$root/src/base/unix-socket.c" "$root/src/vmm/vsock-host.c" "$root/src/vmm/listener.c" \
	"$root/src/vmm/iothread.c" -lpthread
"$out/vsock-bench" "$@"
