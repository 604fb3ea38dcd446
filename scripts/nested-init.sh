#!/bin/sh
# /init of L1, the Linux that runs under QEMU's software CPU (TCG, emulated
# AMD SVM) so that a VMM inside it gets a KVM that runs stock guests.
# It loads KVM, then sources /job.sh (written by the host script that built
# this initramfs) with nested-runner.sh's functions available, and powers off.
# Lines starting "L1:" on the console say where it is; /dev/ttyS1, when QEMU
# provides it, carries the results stream.
# shellcheck source-path=SCRIPTDIR
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export HOME=/root

say() { echo "L1: $*"; }

# Stops L1 whatever happens; -f because there is no init system to ask.
finish() {
    sync
    poweroff -f
    sleep 10
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
# Loopback is down in a fresh kernel: the host steps' servers on 127.0.0.1
# and the user-mode network's forwards to and from it need it up.
ip link set lo up
say "up after $(cut -d' ' -f1 /proc/uptime) s"

# The module tree has no modules.dep (depmod runs at package install), so
# load KVM's three modules by hand in dependency order. Parameters on L1's
# command line in modprobe's form (kvm_amd.npt=0, via SHOJI_L1_APPEND) are
# passed on, as modprobe would; busybox insmod does not read them itself.
for m in irqbypass kvm kvm-amd; do
    # shellcheck disable=SC2046 # one word per parameter
    if ! insmod "/lib/shoji-kvm/$m.ko" $(tr ' ' '\n' </proc/cmdline | sed -n "s/^$(echo "$m" | tr - _)\.//p"); then
        say "FATAL: insmod $m.ko failed"
        echo "@@FATAL insmod $m.ko failed" >/dev/ttyS1 2>/dev/null
        finish
    fi
done
if [ ! -c /dev/kvm ]; then
    say "FATAL: no /dev/kvm after loading kvm-amd (does QEMU's -cpu expose svm?)"
    echo "@@FATAL no /dev/kvm in L1" >/dev/ttyS1 2>/dev/null
    finish
fi

export RUNNER_WORK=/tmp/runner
mkdir -p "$RUNNER_WORK"
# ttyS1 exists only when QEMU was given a second -serial (batch runs, whose
# host script reads it); stty fails on the placeholder device otherwise, and
# then (the interactive demo) nobody reads results.
if stty -F /dev/ttyS1 raw -echo 2>/dev/null; then
    export RESULTS=/dev/ttyS1
else
    export RESULTS=/dev/null
fi
# shellcheck source=nested-runner.sh
. /lib/shoji/nested-runner.sh
# shellcheck source=/dev/null
. /lib/shoji/job-env.sh

say "kvm ready after $(cut -d' ' -f1 /proc/uptime) s (nested paging: $(cat /sys/module/kvm_amd/parameters/npt 2>/dev/null || echo unknown)); L2 VMM: $L2_VMM"
emit "@@L1-READY uptime=$(cut -d' ' -f1 /proc/uptime)"
# shellcheck source=/dev/null
. /lib/shoji/job.sh
emit "@@L1-DONE uptime=$(cut -d' ' -f1 /proc/uptime)"
say "done after $(cut -d' ' -f1 /proc/uptime) s"
finish
