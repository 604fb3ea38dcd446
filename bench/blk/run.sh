#!/bin/sh
# bench/blk: the virtio-blk device path against the raw host file, natively
# (no guest, no KVM). Not a test: it prints figures and exits non-zero only
# when it cannot measure.
#
# What it measures, per row, on the same raw image file (>= 1 GiB, written
# in full with random data before the runs so every block is allocated):
#   device: bench/blk/blk-bench.c, built here with cc against the sources.
#           The real device model (src/dev/virtio-blk.c, with its rings,
#           worker threads and completion eventfd), the real virtqueue
#           code and the real block layer (raw format, O_DIRECT as with
#           --disk ...,direct=on), on the VMM's real I/O thread
#           (src/vmm/iothread.c), driven by a simulated guest driver
#           (indirect descriptors, EVENT_IDX, a data descriptor per --seg
#           bytes). Kicks and waits as the VMM has them for this disk
#           (--kick vmm): the driver thread plays the vCPU thread, serves
#           its kick itself (the MMIO exit) and sleeps in epoll_wait until
#           an interrupt or the io_uring task work that makes KVM_RUN
#           return -EINTR, then polls as the vCPU loop does; --kick iothread
#           sends every kick through an eventfd to the I/O thread instead
#           (the ioeventfd path). Queue depth N = N requests in the ring at
#           once, refilled as each completes.
#   fio:    the same pattern straight on the file: --direct=1, --ioengine
#           io_uring (or --engine libaio), same block size, same queue depth,
#           one job, uniform random offsets (--norandommap) or sequential.
# Rows: 4 KiB random read and write at queue depth 1 and 32, 1 MiB sequential
# read and write (queue depth --seq-qd, default 1). Each measurement runs
# --time seconds, device first then fio, row by row. Prints IOPS and MB/s
# (10^6 bytes) of both and the ratio device/fio of the IOPS (goal of issue 3:
# >= 0.95 on every row).
#
# usage: bench/blk/run.sh [--quick] [--dir DIR] [--size MIB] [--time SECS]
#                         [--engine io_uring|libaio] [--seq-qd N] [--seg BYTES]
#                         [--aio auto|threads|io_uring] [--kick vmm|iothread]
#   --quick   2 s per measurement instead of 10
#   --dir     where the image goes (default /var/tmp; needs --size MiB free)
#   --size    image size in MiB (default 1024, at least 1024)
#   --seg     bytes per data descriptor of the simulated driver (default 4096,
#             one per guest page as a Linux guest sends scattered pages; use
#             1048576 for a physically contiguous 1 MiB buffer)
#   --aio     the device's --disk aio= mode (default auto: io_uring for the
#             raw image's reads and writes; threads: the worker pool only)
#   --kick    vmm (default): kicks where the VMM serves them for this disk
#             (the vCPU thread for a raw image on io_uring); iothread: all
#             through the I/O thread, the path before the vCPU ring
# Needs fio (Debian: apt-get install fio) and cc. Run from anywhere after
# checking out; it builds what it needs in a temporary folder.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=/var/tmp size=1024 secs=10 engine=io_uring seqqd=1 seg=4096 aio=auto kick=vmm
while [ $# -gt 0 ]; do
	case $1 in
	--quick) secs=2 ;;
	--dir) dir=$2; shift ;;
	--size) size=$2; shift ;;
	--time) secs=$2; shift ;;
	--engine) engine=$2; shift ;;
	--seq-qd) seqqd=$2; shift ;;
	--seg) seg=$2; shift ;;
	--aio) aio=$2; shift ;;
	--kick) kick=$2; shift ;;
	-h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench/blk: unknown option $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done
command -v fio >/dev/null || { echo "bench/blk: fio is missing (apt-get install fio)" >&2; exit 1; }
[ "$size" -ge 1024 ] || { echo "bench/blk: --size must be at least 1024 MiB" >&2; exit 2; }
avail=$(df -Pm "$dir" | awk 'NR==2 { print $4 }')
[ "$avail" -gt $((size + 256)) ] || { echo "bench/blk: $dir has only $avail MiB free, need $size + 256" >&2; exit 1; }

out=$(mktemp -d)
img=$(mktemp "$dir/shoji-blk-bench.XXXXXX")
trap 'rm -rf "$out" "$img"' EXIT INT TERM
b=$root/src/block
cc -std=c17 -O2 -D_GNU_SOURCE -I"$root/src" -o "$out/blk-bench" \
	"$root/bench/blk/blk-bench.c" "$root/src/dev/virtio-blk.c" "$root/src/dev/virtqueue.c" \
	"$root/src/hv/mem.c" "$root/src/base/log.c" "$root/src/base/util.c" \
	"$root/src/vmm/iothread.c" "$b/block.c" "$b/file.c" "$b/raw.c" "$b/aio.c" "$b/qcow2.c" \
	"$b/qcow2-cache.c" "$b/qcow2-refcount.c" "$b/qcow2-io.c" "$b/qcow2-compress.c" \
	"$b/qcow2-create.c" "$b/qcow2-snapshot.c" "$b/qcow2-snapshot-ops.c" "$b/qcow2-check.c" \
	-lz -lzstd -luring -lpthread

# Fully allocated and written (unwritten extents would read as zeros without I/O).
dd if=/dev/urandom of="$img" bs=1M count="$size" oflag=direct conv=fsync status=none

echo "bench/blk: virtio-blk device path vs fio on the same file"
echo "host: $(uname -r), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "image: $img, $size MiB raw, $(df -P "$dir" | awk 'NR==2 { print $1 }'), O_DIRECT on both sides"
echo "fio $(fio --version | sed 's/^fio-//'), --ioengine=$engine; $secs s per measurement; device data descriptors of $seg bytes, aio=$aio, kick=$kick"
echo
printf '%-26s %10s %9s %10s %9s %7s\n' "row" "dev IOPS" "dev MB/s" "fio IOPS" "fio MB/s" "ratio"

row() { # label rw bs qd
	dev=$("$out/blk-bench" "$img" "$2" "$3" "$4" "$secs" "$seg" "$aio" "$kick") || {
		echo "bench/blk: the device run failed ($1)" >&2; exit 1; }
	# terse v3: field 8 read IOPS, 7 read KiB/s; 49 write IOPS, 48 write KiB/s
	f=$(fio --name=blk --filename="$img" --direct=1 --ioengine="$engine" --rw="$2" \
		--bs="$3" --iodepth="$4" --runtime="$secs" --time_based --norandommap \
		--randrepeat=0 --numjobs=1 --output-format=terse --terse-version=3) || {
		echo "bench/blk: fio failed ($1)" >&2; exit 1; }
	case $2 in *write) fi=49 fb=48 ;; *) fi=8 fb=7 ;; esac
	echo "$dev" | awk -v label="$1" -v fi="$fi" -v fb="$fb" -v terse="$f" '{
		split(terse, t, ";"); di = $3; dm = $4; xi = t[fi]; xm = t[fb] * 1024 / 1e6
		printf "%-26s %10.0f %9.1f %10.0f %9.1f %7.2f\n", label, di, dm, xi, xm, di / xi }'
}
row "4 KiB rand read  QD1" randread 4096 1
row "4 KiB rand write QD1" randwrite 4096 1
row "4 KiB rand read  QD32" randread 4096 32
row "4 KiB rand write QD32" randwrite 4096 32
row "1 MiB seq read   QD$seqqd" read 1048576 "$seqqd"
row "1 MiB seq write  QD$seqqd" write 1048576 "$seqqd"
echo
echo "ratio: device IOPS / fio IOPS (1.00 = the device adds nothing; goal >= 0.95)"
