#!/bin/sh
# Runs QEMU (KVM, microvm machine) with shoji-vmm's command line, so QEMU can
# stand in for shoji-vmm wherever a script runs "$L2_VMM": to validate the
# nested recipe before shoji-vmm boots kernels, and as the reference VMM of
# the boot-time benchmark. Plain POSIX sh: it also runs in L1's busybox.
#
# Only the flags the tests and the demo use are translated. QEMU exits 0 both
# on power-off and (with -no-reboot) on reboot, so it cannot report exit
# status 3 the way shoji-vmm does.
set -eu

kernel='' initrd='' cmdline='' cpus=1 memory=512M serial=tty net='' disk=''
while [ $# -gt 0 ]; do
    case $1 in
        --kernel) kernel=$2; shift 2 ;;
        --initrd) initrd=$2; shift 2 ;;
        --cmdline) cmdline=$2; shift 2 ;;
        --cpus) cpus=$2; shift 2 ;;
        --memory) memory=$2; shift 2 ;;
        --serial) serial=$2; shift 2 ;;
        --net) net=$2; shift 2 ;;
        --disk) disk=$2; shift 2 ;;
        --log-level) shift 2 ;;
        *) echo "qemu-standin: unsupported option $1" >&2; exit 2 ;;
    esac
done
[ -n "$kernel" ] || { echo "qemu-standin: --kernel is required" >&2; exit 2; }

case $serial in
    tty) chardev=stdio ;;
    file=*) chardev="file,path=${serial#file=}" ;;
    socket=*) chardev="socket,path=${serial#socket=},server=on,wait=off" ;;
    off) chardev=null ;;
    *) echo "qemu-standin: bad --serial $serial" >&2; exit 2 ;;
esac

# --net user: a virtio-net PCI NIC on QEMU's own libslirp (bench/net/slirp.sh),
# so microvm gets its PCIe host bridge; no option ROM (the kernel is loaded
# directly). QEMU's user network always reaches the host's loopback, as
# shoji's does with host-loopback=on.
machine=microvm
case $net in
    '') ;;
    user|user,host-loopback=on) machine=microvm,pcie=on ;;
    *) echo "qemu-standin: only --net user is translated, not '$net'" >&2; exit 2 ;;
esac

# --disk path=P[,format=raw|qcow2]: one virtio-blk disk (bench/ready/run.sh),
# on virtio-mmio (microvm has no PCI bus unless pcie=on; shoji-vmm's disks
# are virtio-pci, a difference bench/ready accepts). microvm describes its virtio-mmio
# transports in ACPI (on by default; its auto-kernel-cmdline added no
# virtio_mmio.device= entries then), so the guest's virtio_mmio driver must
# bind through ACPI. Other --disk keys are not translated.
disk_path='' disk_format=raw
if [ -n "$disk" ]; then
    old_ifs=$IFS
    IFS=,
    for kv in $disk; do
        case $kv in
            path=*) disk_path=${kv#path=} ;;
            format=raw|format=qcow2) disk_format=${kv#format=} ;;
            *) echo "qemu-standin: --disk key '$kv' is not translated" >&2; exit 2 ;;
        esac
    done
    IFS=$old_ifs
    [ -n "$disk_path" ] || { echo "qemu-standin: --disk needs path=" >&2; exit 2; }
fi

set -- -M "$machine" -enable-kvm -cpu host -smp "$cpus" -m "$memory" \
    -nodefaults -no-user-config -display none -no-reboot \
    -chardev "$chardev,id=con0" -serial chardev:con0 \
    -kernel "$kernel" -append "$cmdline"
[ -z "$initrd" ] || set -- "$@" -initrd "$initrd"
[ -z "$net" ] || set -- "$@" -netdev user,id=n0 -device virtio-net-pci,netdev=n0,romfile=
[ -z "$disk_path" ] || set -- "$@" -drive "file=$disk_path,format=$disk_format,if=none,id=d0" \
    -device virtio-blk-device,drive=d0
exec qemu-system-x86_64 "$@"
