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
# read and write (queue depth --seq-qd, default 1). Each row runs --rounds
# pairs of measurements of --time seconds, device and fio alternating (device
# first in odd rounds, fio first in even ones), so that a host whose speed
# drifts during the row (a shared or virtual disk: fio alone moves by up to
# 2x between runs on the development machine) weighs on both sides alike.
# Prints the median IOPS and MB/s (10^6 bytes) of each side, the median of
# the rounds' ratios device/fio (each round's pair ran back to back: goal of
# issue 3, >= 0.95 on every row) and the lowest and highest of those ratios.
#
# usage: bench/blk/run.sh [--quick] [--dir DIR] [--size MIB] [--time SECS]
#                         [--engine io_uring|libaio] [--seq-qd N] [--seg BYTES]
#                         [--aio auto|threads|io_uring] [--kick vmm|iothread]
#                         [--rounds N]
#   --quick   2 s per measurement instead of 10
#   --rounds  pairs of measurements per row (default 3; 1 = one of each)
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
dir=/var/tmp size=1024 secs=10 rounds=3 engine=io_uring seqqd=1 seg=4096 aio=auto kick=vmm
while [ $# -gt 0 ]; do
	case $1 in
	--quick) secs=2 ;;
	--dir) dir=$2; shift ;;
	--size) size=$2; shift ;;
	--time) secs=$2; shift ;;
	--rounds) rounds=$2; shift ;;
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
case $rounds in ''|*[!0-9]*|0) echo "bench/blk: --rounds must be a whole number >= 1, not '$rounds'" >&2; exit 2 ;; esac
[ "$size" -ge 1024 ] || { echo "bench/blk: --size must be at least 1024 MiB" >&2; exit 2; }
avail=$(df -Pm "$dir" | awk 'NR==2 { print $4 }')
[ "$avail" -gt $((size + 256)) ] || { echo "bench/blk: $dir has only $avail MiB free, need $size + 256" >&2; exit 1; }

out=$(mktemp -d)
img=$(mktemp "$dir/shoji-blk-bench.XXXXXX")
trap 'rm -rf "$out" "$img"' EXIT INT TERM
b=$root/src/block
cc -std=c17 -O2 -D_GNU_SOURCE -I"$root/src" -o "$out/blk-bench" \
	"$root/bench/blk/blk-bench.c" "$root/src/dev/virtio-blk.c" "$root/src/dev/virtio-blk-request.c" \
	"$root/src/dev/virtio-blk-pool.c" "$root/src/dev/virtio-blk-ring.c" "$root/src/dev/virtqueue.c" \
	"$root/src/hv/mem.c" "$root/src/base/iov.c" "$root/src/base/log.c" "$root/src/base/ratelimit.c" "$root/src/base/util.c" \
	"$root/src/vmm/iothread.c" "$b/block.c" "$b/file.c" "$b/lock.c" "$b/raw.c" "$b/aio.c" "$b/qcow2.c" \
	"$b/qcow2-cache.c" "$b/qcow2-refcount.c" "$b/qcow2-io.c" "$b/qcow2-compress.c" \
	"$b/qcow2-create.c" "$b/qcow2-snapshot.c" "$b/qcow2-snapshot-ops.c" "$b/qcow2-check.c" \
	-lz -lzstd -luring -lpthread

# Fully allocated and written (unwritten extents would read as zeros without I/O),
# then read once, so that the first measurement meets the same (virtual)
# disk's caches as the later ones.
dd if=/dev/urandom of="$img" bs=1M count="$size" oflag=direct conv=fsync status=none
dd if="$img" of=/dev/null bs=1M iflag=direct status=none

echo "bench/blk: virtio-blk device path vs fio on the same file"
echo "host: $(uname -r), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "image: $img, $size MiB raw, $(df -P "$dir" | awk 'NR==2 { print $1 }'), O_DIRECT on both sides"
echo "fio $(fio --version | sed 's/^fio-//'), --ioengine=$engine; $rounds rounds of $secs s per side and row; device data descriptors of $seg bytes, aio=$aio, kick=$kick"
echo
printf '%-26s %10s %9s %10s %9s %7s  %s\n' "row" "dev IOPS" "dev MB/s" "fio IOPS" "fio MB/s" "ratio" "rounds"

dev_iops() { # rw bs qd -> IOPS of one device run
	"$out/blk-bench" "$img" "$1" "$2" "$3" "$secs" "$seg" "$aio" "$kick" | awk '{ print $3 }'
}
fio_iops() { # rw bs qd -> IOPS of one fio run
	# terse v3: field 8 read IOPS, 49 write IOPS
	case $1 in *write) fi=49 ;; *) fi=8 ;; esac
	fio --name=blk --filename="$img" --direct=1 --ioengine="$engine" --rw="$1" \
		--bs="$2" --iodepth="$3" --runtime="$secs" --time_based --norandommap \
		--randrepeat=0 --numjobs=1 --output-format=terse --terse-version=3 | cut -d';' -f"$fi"
}
row() { # label rw bs qd
	devs="" fios=""
	r=1
	while [ "$r" -le "$rounds" ]; do
		# Alternate which side goes first, so a drift of the host during
		# the row does not favour one side.
		if [ $((r % 2)) -eq 1 ]; then
			d=$(dev_iops "$2" "$3" "$4") || { echo "bench/blk: the device run failed ($1)" >&2; exit 1; }
			f=$(fio_iops "$2" "$3" "$4") || { echo "bench/blk: fio failed ($1)" >&2; exit 1; }
		else
			f=$(fio_iops "$2" "$3" "$4") || { echo "bench/blk: fio failed ($1)" >&2; exit 1; }
			d=$(dev_iops "$2" "$3" "$4") || { echo "bench/blk: the device run failed ($1)" >&2; exit 1; }
		fi
		[ -n "$d" ] && [ -n "$f" ] || { echo "bench/blk: no figure from round $r ($1)" >&2; exit 1; }
		devs="$devs $d" fios="$fios $f"
		r=$((r + 1))
	done
	echo "$devs|$fios" | awk -v label="$1" -v bs="$3" '
		function median(a, n,   i, j, t) {
			for (i = 2; i <= n; i++)
				for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
			return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
		}
		{
			split($0, side, "|"); n = split(side[1], d, " "); split(side[2], f, " ")
			for (i = 1; i <= n; i++) q[i] = d[i] / f[i]
			ratio = median(q, n); lo = q[1]; hi = q[n] # q is sorted now
			di = median(d, n); fi = median(f, n)
			printf "%-26s %10.0f %9.1f %10.0f %9.1f %7.2f  %.2f-%.2f\n", label, di, di * bs / 1e6,
				fi, fi * bs / 1e6, ratio, lo, hi
		}'
}
row "4 KiB rand read  QD1" randread 4096 1
row "4 KiB rand write QD1" randwrite 4096 1
row "4 KiB rand read  QD32" randread 4096 32
row "4 KiB rand write QD32" randwrite 4096 32
row "1 MiB seq read   QD$seqqd" read 1048576 "$seqqd"
row "1 MiB seq write  QD$seqqd" write 1048576 "$seqqd"
echo
echo "IOPS and MB/s: medians of $rounds rounds; ratio: the median of the rounds' device IOPS / fio IOPS"
echo "(1.00 = the device adds nothing; goal >= 0.95); rounds: the lowest and highest of those ratios"
