#!/usr/bin/env bash
# Builds the initramfs of the L2 guest (the one shoji-vmm boots): a static
# busybox with its applet links and scripts/guest-init.sh as /init.
#
# Usage: scripts/guest-initramfs.sh OUT.cpio.gz [CACHE] [EXE...]
#   CACHE is where scripts/fetch-guest.sh put busybox
#   (default ${SHOJI_CACHE:-<repo>/.cache}); each EXE (a static program,
#   such as the build's vsock-test, or a dynamic one such as iperf3, whose
#   shared libraries ldd names are copied along at their own paths) is
#   copied into /bin.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:?usage: guest-initramfs.sh OUT.cpio.gz [CACHE]}
cache=${2:-${SHOJI_CACHE:-$here/../.cache}}
extra=("${@:3}")

# shellcheck source=nested-lib.sh
source "$here/nested-lib.sh"

die() { echo "guest-initramfs: $*" >&2; exit 1; }

# Lays out a busybox root in DIR: /bin/busybox plus one symlink per applet,
# made now rather than at boot so /init starts without any setup.
populate_busybox() {
    local dir=$1 busybox=$2 applet
    mkdir -p "$dir/bin" "$dir/sbin" "$dir/proc" "$dir/sys" "$dir/dev" "$dir/tmp" "$dir/root"
    install -m 0755 "$busybox" "$dir/bin/busybox"
    for applet in $("$busybox" --list); do
        [[ $applet == busybox ]] || ln -sf busybox "$dir/bin/$applet"
    done
}

# The drivers of shoji's devices that Debian builds as modules (the init
# loads them with insmod, in its own order).
GUEST_MODULES=(
    drivers/virtio/virtio.ko drivers/virtio/virtio_ring.ko
    drivers/virtio/virtio_pci_modern_dev.ko drivers/virtio/virtio_pci_legacy_dev.ko
    drivers/virtio/virtio_pci.ko drivers/block/virtio_blk.ko
    drivers/char/hw_random/virtio-rng.ko
    drivers/misc/pvpanic/pvpanic.ko drivers/misc/pvpanic/pvpanic-pci.ko
    net/core/failover.ko drivers/net/net_failover.ko drivers/net/virtio_net.ko
    net/vmw_vsock/vsock.ko net/vmw_vsock/vmw_vsock_virtio_transport_common.ko
    net/vmw_vsock/vmw_vsock_virtio_transport.ko
    drivers/input/evdev.ko drivers/acpi/button.ko
)

copy_modules() {
    local dest=$1 tree=$2 m
    mkdir -p "$dest"
    for m in "${GUEST_MODULES[@]}"; do
        [[ -f $tree/$m ]] || die "$tree lacks $m (re-run scripts/fetch-guest.sh)"
        cp "$tree/$m" "$dest/"
    done
}

# Writes the newc archive of DIR to OUT, owned by root whoever runs this.
pack() {
    local dir=$1 out=$2
    (cd "$dir" && find . -print0 | LC_ALL=C sort -z |
        cpio --null -o -H newc -R 0:0 --quiet) | gzip -1 >"$out.tmp"
    mv "$out.tmp" "$out"
}

main() {
    [[ -x $cache/busybox ]] || die "no $cache/busybox: run scripts/fetch-guest.sh first"
    local root
    root=$(mktemp -d "${TMPDIR:-/tmp}/shoji-l2root.XXXXXX")
    # shellcheck disable=SC2064 # expand now: root is local
    trap "rm -rf '$root'" EXIT
    populate_busybox "$root" "$cache/busybox"
    install -m 0755 "$here/guest-init.sh" "$root/init"
    local exe
    for exe in "${extra[@]}"; do
        [[ -x $exe ]] || die "$exe is not an executable"
        install -m 0755 "$exe" "$root/bin/"
        nested_copy_libs "$root" "$exe"
    done
    copy_modules "$root/lib/modules" "$cache/modules/kernel"
    mkdir -p "$(dirname "$out")"
    pack "$root" "$out"
}

main "$@"
