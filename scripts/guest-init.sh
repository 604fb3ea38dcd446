#!/bin/sh
# /init of the L2 test/demo guest (busybox). What it does is chosen by the
# kernel command line, so one initramfs serves the demo and every test case:
#   shoji.action=shell     (default) banner + interactive shell on the console
#   shoji.action=report    print CPUs online, MemTotal and /proc/cmdline, power off
#   shoji.action=reboot    print a marker, then reboot -f
#   shoji.action=poweroff  power off at once (boot-time benchmark)
#   shoji.ttysize=ROWSxCOLS size of the terminal behind the console (demo)
# Every line meant for a harness starts with "SHOJI-" so it can be found among
# kernel messages.

# First thing, before any other work: the boot-time benchmark measures the time
# until this line appears on the console.
echo "SHOJI-INIT-REACHED"

mkdir -p /proc /sys /dev /tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || true
mount -t tmpfs tmpfs /tmp

action=shell
ttysize=
read -r cmdline </proc/cmdline
# Word splitting is wanted here: one kernel parameter per word.
for word in $cmdline; do
    case $word in
        shoji.action=*) action=${word#shoji.action=} ;;
        shoji.ttysize=*) ttysize=${word#shoji.ttysize=} ;;
    esac
done

report() {
    echo "SHOJI-REPORT cpus-online=$(cat /sys/devices/system/cpu/online)"
    echo "SHOJI-REPORT nproc=$(nproc)"
    echo "SHOJI-REPORT memtotal-kb=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
    echo "SHOJI-REPORT cmdline=$(cat /proc/cmdline)"
    echo "SHOJI-REPORT done"
}

shell() {
    cat <<'BANNER'

  shoji: stock Debian kernel booted in shoji-vmm.
BANNER
    echo "  kernel $(uname -r), $(nproc) CPUs online, $(awk '/^MemTotal:/ { print $2 / 1024 }' /proc/meminfo) MiB RAM"
    echo "  Type 'exit' or press Ctrl-D to power the guest off."
    echo
    # A serial console cannot tell its size; the demo passes the host's.
    [ -n "$ttysize" ] && stty rows "${ttysize%x*}" cols "${ttysize#*x}" 2>/dev/null
    # cttyhack gives the shell a controlling tty, so job control and Ctrl-C
    # work on the serial console.
    setsid cttyhack sh -l
}

case $action in
    report)   report; sync; poweroff -f ;;
    reboot)   echo "SHOJI-REBOOTING"; reboot -f ;;
    poweroff) poweroff -f ;;
    *)        shell; echo "SHOJI-POWEROFF"; poweroff -f ;;
esac
# poweroff -f only returns if it failed; say so instead of letting the kernel
# panic with "Attempted to kill init" and hiding the cause.
echo "SHOJI-ERROR $action did not stop the machine"
sleep 3600
