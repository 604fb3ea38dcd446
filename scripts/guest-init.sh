#!/bin/sh
# /init of the L2 test/demo guest (busybox). What it does is chosen by the
# kernel command line, so one initramfs serves the demo and every test case:
#   shoji.action=shell     (default) banner + interactive shell on the console
#   shoji.action=report    print CPUs online, MemTotal and /proc/cmdline, power off
#   shoji.action=reboot    print a marker, then reboot -f
#   shoji.action=poweroff  power off at once (boot-time benchmark)
#   shoji.action=storage   virtio-rng, then a filesystem on /dev/vda with a
#                          64 MiB random file and its sha256; /dev/vdb must be
#                          read-only (even when the kernel is told otherwise)
#   shoji.action=diskroot  run a check script from the root filesystem on
#                          /dev/vda (a qcow2 overlay on the host), in a chroot
#   shoji.action=panic     load pvpanic and crash the kernel (sysrq c)
#   shoji.action=net       DHCP on eth0, fetch http://10.0.2.2:8080/f.bin (the
#                          host's loopback through the user-mode network, if
#                          the VMM allows it: fetch=ok or failed), then serve
#                          a CGI on port 8080 until the host fetched it
#                          through its host forward (at most 150 s)
#   shoji.action=iperf     DHCP on eth0, then iperf3 to and from the server on
#                          the host's loopback (bench/net/slirp.sh), for
#                          shoji.iperf=SECONDS (default 10) each way
#   shoji.action=vsock     with /bin/vsock-test (tests/e2e/vsock-test.c): echo
#                          server on vsock port 5000, a source that never
#                          stops on 5001, 100 connections x 1 MiB to the host's
#                          echo server on port 6000; then it waits for the
#                          host to knock on port 5009 and reboots
#   shoji.action=room      a VM under shojid (tests/e2e/daemon.sh): echo server
#                          on vsock port 5000; a knock on port 5009 panics the
#                          kernel (sysrq c, pvpanic); the ACPI power button
#                          (its /dev/input/event*) powers the guest off
#   shoji.action=hostile   with /bin/hostile-guest (tests/e2e/hostile-guest.c),
#                          as root against its own VMM, in phases announced
#                          by "SHOJI-PHASE name" lines: floods vsock port
#                          7000 (then holds the connections idle), cycles
#                          driver unbind/bind of every virtio device, then
#                          drives each device's BAR 0 itself with malformed
#                          rings; after each phase the devices must work
#                          (vsock echo with the host's server on port 6000,
#                          /dev/hwrng, the second disk, DHCP at the end);
#                          /dev/vda is left alone and written throughout
#                          (the canary)
#   shoji.action=crashwriter  numbered blocks written and flushed to
#                          /dev/vda without end ("FLUSHED N" after each
#                          flush), until the host kills the VMM
#   shoji.ttysize=ROWSxCOLS size of the terminal behind the console (demo)
# Every line meant for a harness starts with "SHOJI-" so it can be found among
# kernel messages.

# First thing, before any other work: the boot-time benchmark measures the time
# until this line appears on the console.
echo "SHOJI-INIT-REACHED"

mkdir -p /proc /sys /dev /tmp /mnt
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || true
mount -t tmpfs tmpfs /tmp

action=shell
ttysize=
iperf_seconds=10
read -r cmdline </proc/cmdline
# Word splitting is wanted here: one kernel parameter per word.
for word in $cmdline; do
    case $word in
        shoji.action=*) action=${word#shoji.action=} ;;
        shoji.ttysize=*) ttysize=${word#shoji.ttysize=} ;;
        shoji.iperf=*) iperf_seconds=${word#shoji.iperf=} ;;
    esac
done

report() {
    echo "SHOJI-REPORT cpus-online=$(cat /sys/devices/system/cpu/online)"
    echo "SHOJI-REPORT nproc=$(nproc)"
    echo "SHOJI-REPORT memtotal-kb=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
    echo "SHOJI-REPORT cmdline=$(cat /proc/cmdline)"
    echo "SHOJI-REPORT done"
}

# The virtio and pvpanic drivers are modules in Debian's kernel; the
# initramfs carries them flat in /lib/modules, in dependency order.
load_modules() {
    for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci \
             virtio_blk virtio-rng pvpanic pvpanic-pci failover net_failover virtio_net \
             vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport \
             evdev button; do
        [ -f "/lib/modules/$m.ko" ] && insmod "/lib/modules/$m.ko" 2>/dev/null
    done
    mdev -s 2>/dev/null
}

# Waits up to 10 s for a device node (drivers probe asynchronously).
wait_for() {
    i=0
    while [ ! -e "$1" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    [ -e "$1" ]
}

storage() {
    load_modules
    echo "SHOJI-REPORT rng-current=$(cat /sys/class/misc/hw_random/rng_current 2>/dev/null)"
    echo "SHOJI-REPORT rng-bytes=$(dd if=/dev/hwrng bs=64 count=1 2>/dev/null | wc -c)"
    wait_for /dev/vda || { echo "SHOJI-ERROR no /dev/vda"; return; }
    mke2fs -q -F /dev/vda >/dev/null && mount -t ext4 /dev/vda /mnt || { echo "SHOJI-ERROR mkfs/mount"; return; }
    dd if=/dev/urandom of=/mnt/data.bin bs=1M count=64 2>/dev/null
    sha256sum /mnt/data.bin | cut -d' ' -f1 >/mnt/data.sha256
    echo "SHOJI-REPORT data-sha256=$(cat /mnt/data.sha256)"
    umount /mnt && sync
    wait_for /dev/vdb || { echo "SHOJI-ERROR no /dev/vdb"; return; }
    echo "SHOJI-REPORT vdb-ro=$(cat /sys/block/vdb/ro)"
    # How the virtio devices interrupt: MSI-X, or INTx through the IOAPIC (pci=nomsi).
    echo "SHOJI-REPORT virtio-irqs-msi=$(grep virtio /proc/interrupts | grep -c MSI)"
    echo "SHOJI-REPORT virtio-irqs-ioapic=$(grep virtio /proc/interrupts | grep -c IO-APIC)"
    # Past the kernel's own read-only flag, so the device must refuse.
    blockdev --setrw /dev/vdb 2>/dev/null
    if dd if=/dev/zero of=/dev/vdb bs=4096 count=1 oflag=direct,sync 2>/dev/null; then
        echo "SHOJI-REPORT vdb-write=accepted"
    else
        echo "SHOJI-REPORT vdb-write=refused"
    fi
    echo "SHOJI-REPORT done"
}

diskroot() {
    load_modules
    wait_for /dev/vda || { echo "SHOJI-ERROR no /dev/vda"; return; }
    mount -t ext4 /dev/vda /mnt || { echo "SHOJI-ERROR cannot mount /dev/vda"; return; }
    mount -t devtmpfs devtmpfs /mnt/dev || echo "SHOJI-ERROR cannot mount /mnt/dev"
    chroot /mnt /bin/sh /check.sh
    umount /mnt/dev
    umount /mnt && sync
    echo "SHOJI-REPORT done"
}

# Brings eth0 up with an address from the user-mode network's DHCP server
# and reports it; false (after a SHOJI-ERROR line) without a NIC.
net_up() {
    load_modules
    ip link set lo up
    wait_for /sys/class/net/eth0 || { echo "SHOJI-ERROR no eth0"; return 1; }
    ip link set eth0 up
    # Routes through a link the kernel does not yet see as up are refused.
    i=0
    while [ "$(cat /sys/class/net/eth0/operstate)" != up ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    cat >/tmp/udhcpc.sh <<'EOF'
#!/bin/sh
[ "$1" = bound ] || exit 0
ip addr add "$ip/${mask:-24}" dev "$interface"
ip route add default via "$router"
EOF
    chmod +x /tmp/udhcpc.sh
    udhcpc -q -n -t 10 -i eth0 -s /tmp/udhcpc.sh >/dev/null 2>&1
    echo "SHOJI-REPORT ip=$(ip -4 addr show eth0 | awk '/inet / { print $2 }')"
    echo "SHOJI-REPORT route=$(ip route show default)"
}

net() {
    net_up || return
    # timeout, not wget -T: this busybox's wget segfaults with -T.
    if timeout 60 wget -q -O /tmp/f.bin http://10.0.2.2:8080/f.bin; then
        echo "SHOJI-REPORT fetch=ok"
    else
        echo "SHOJI-REPORT fetch=failed"
    fi
    echo "SHOJI-REPORT fetched-sha256=$(sha256sum /tmp/f.bin 2>/dev/null | cut -d' ' -f1)"
    # The host fetches this CGI through its forward; running it marks it done.
    token=$(dd if=/dev/urandom bs=8 count=1 2>/dev/null | od -An -tx1 | tr -d ' \n')
    mkdir -p /tmp/www/cgi-bin
    printf '#!/bin/sh\necho "Content-Type: text/plain"\necho\necho "served-%s"\ntouch /tmp/served\n' "$token" \
        >/tmp/www/cgi-bin/hello
    chmod +x /tmp/www/cgi-bin/hello
    httpd -p 8080 -h /tmp/www
    echo "SHOJI-REPORT serve-token=served-$token"
    i=0
    while [ ! -e /tmp/served ] && [ $i -lt 1500 ]; do sleep 0.1; i=$((i + 1)); done
    [ -e /tmp/served ] && echo "SHOJI-REPORT hostfwd=served" || echo "SHOJI-REPORT hostfwd=timeout"
    sleep 1
    echo "SHOJI-REPORT done"
}

# bench/net/slirp.sh: iperf3 against the server on the host's loopback
# (10.0.2.2 through the user-mode network), guest to host (tx) and host to
# guest (rx, iperf3 -R), for shoji.iperf=SECONDS each. Reports the
# receiver's Mbit/s.
iperf() {
    net_up || return
    [ -x /bin/iperf3 ] || { echo "SHOJI-ERROR no /bin/iperf3 in this initramfs"; return; }
    for dir in tx rx; do
        flag=
        [ $dir = rx ] && flag=-R
        iperf3 -c 10.0.2.2 -t "$iperf_seconds" -f m $flag >/tmp/iperf.$dir 2>&1
        mbits=$(awk '/receiver/ { for (i = 2; i <= NF; i++) if ($i == "Mbits/sec") print $(i - 1) }' /tmp/iperf.$dir)
        echo "SHOJI-REPORT iperf-$dir=${mbits:-failed: $(tail -n 1 /tmp/iperf.$dir)}"
    done
    echo "SHOJI-REPORT done"
}

vsock() {
    load_modules
    wait_for /dev/vsock || { echo "SHOJI-ERROR no /dev/vsock"; return; }
    [ -x /bin/vsock-test ] || { echo "SHOJI-ERROR no /bin/vsock-test in this initramfs"; return; }
    /bin/vsock-test server 5000 >/tmp/echo.log 2>&1 &
    /bin/vsock-test source 5001 >/tmp/source.log 2>&1 &
    echo "SHOJI-REPORT g2h=$(/bin/vsock-test client 2 6000 100 1048576 2>&1 | tail -n 1)"
    echo "SHOJI-REPORT knock=$(/bin/vsock-test wait 5009 400 2>&1 | tail -n 1)"
}

# run_tagged TAG COMMAND...: COMMAND's "PHASE x" lines go to the console as
# "SHOJI-PHASE x" as they come, every other line as "SHOJI-REPORT TAG=line"
# (the harness takes the last one as the result).
run_tagged() {
    rt_tag=$1
    shift
    "$@" 2>&1 | while IFS= read -r rt_line; do
        case $rt_line in
            PHASE\ *) echo "SHOJI-$rt_line" ;;
            *) echo "SHOJI-REPORT $rt_tag=$rt_line" ;;
        esac
    done
}

# The devices still work: a vsock echo through the host's server on port
# 6000, 64 bytes from /dev/hwrng, a read of the second disk. TAG names the
# phase they follow.
hostile_devices_work() {
    echo "SHOJI-REPORT vsock-after-$1=$(timeout 60 /bin/vsock-test client 2 6000 4 262144 2>&1 | tail -n 1)"
    wait_for /dev/hwrng
    echo "SHOJI-REPORT rng-after-$1=$(timeout 10 dd if=/dev/hwrng bs=64 count=1 2>/dev/null | wc -c)"
    hw_disk=
    for hw_d in /sys/block/vd*; do
        [ "${hw_d##*/}" = vda ] || hw_disk=/dev/${hw_d##*/}
    done
    [ -n "$hw_disk" ] && wait_for "$hw_disk"
    echo "SHOJI-REPORT disk-after-$1=$(timeout 10 dd if="${hw_disk:-/dev/null}" bs=65536 count=16 iflag=direct 2>/dev/null | wc -c)"
}

hostile() {
    load_modules
    for f in /dev/vsock /dev/vda /dev/vdb /dev/hwrng /sys/class/net/eth0; do
        wait_for $f || { echo "SHOJI-ERROR no $f"; return; }
    done
    [ -x /bin/hostile-guest ] || { echo "SHOJI-ERROR no /bin/hostile-guest in this initramfs"; return; }
    # The PCI function behind /dev/vda: the one device left alone.
    canary_bdf=$(basename "$(dirname "$(readlink -f /sys/block/vda/device)")")
    echo "SHOJI-REPORT canary-bdf=$canary_bdf"
    /bin/hostile-guest canary /dev/vda /tmp/canary.stop >/tmp/canary.log 2>&1 &
    canary_pid=$!
    echo "SHOJI-PHASE flood-open"
    run_tagged flood /bin/hostile-guest flood 7000 15 8
    hostile_devices_work flood
    echo "SHOJI-PHASE resets"
    run_tagged resets /bin/hostile-guest resets 15 "$canary_bdf"
    echo "SHOJI-PHASE after-resets"
    hostile_devices_work resets
    echo "SHOJI-PHASE malformed"
    run_tagged malformed /bin/hostile-guest malformed "$canary_bdf"
    echo "SHOJI-PHASE after-malformed"
    hostile_devices_work malformed
    net_up >/dev/null 2>&1
    echo "SHOJI-REPORT ip-after-malformed=$(ip -4 addr show eth0 2>/dev/null | awk '/inet / { print $2 }')"
    : >/tmp/canary.stop
    wait "$canary_pid"
    echo "SHOJI-REPORT canary=$(tail -n 1 /tmp/canary.log)"
    echo "SHOJI-PHASE done"
    echo "SHOJI-REPORT done"
}

# Written and flushed blocks until the host's SIGKILL ends the VMM.
crashwriter() {
    load_modules
    wait_for /dev/vda || { echo "SHOJI-ERROR no /dev/vda"; return; }
    /bin/hostile-guest writer /dev/vda 32768
    echo "SHOJI-ERROR the writer stopped"
}

# The input event device of the ACPI power button (button.ko, read through
# evdev), or nothing.
power_button_dev() {
    for pb_dir in /sys/class/input/event*; do
        [ -e "$pb_dir/device/name" ] || continue
        if [ "$(cat "$pb_dir/device/name")" = "Power Button" ]; then
            echo "/dev/input/${pb_dir##*/}"
            return 0
        fi
    done
    return 1
}

room() {
    load_modules
    wait_for /dev/vsock || { echo "SHOJI-ERROR no /dev/vsock"; return; }
    [ -x /bin/vsock-test ] || { echo "SHOJI-ERROR no /bin/vsock-test in this initramfs"; return; }
    /bin/vsock-test server 5000 >/tmp/echo.log 2>&1 &
    # shoji.agent=1: the guest's shoji-agent too (tests/e2e/daemon-steps.sh's agent step).
    case " $(cat /proc/cmdline) " in
    *" shoji.agent=1 "*) /bin/shoji-agent 2>&1 | sed 's/^/SHOJI-AGENT: /' >/dev/console & ;;
    esac
    # A peer on port 5009 asks for a kernel panic (a timeout just waits again).
    {
        while :; do
            if /bin/vsock-test wait 5009 500 2>/dev/null | grep -q '^PASS'; then
                echo "SHOJI-PANICKING"
                echo c >/proc/sysrq-trigger
            fi
        done
    } </dev/null &
    i=0
    while ! pb=$(power_button_dev) && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    if [ -z "$pb" ]; then
        echo "SHOJI-ERROR no Power Button input device"
        sleep 3600
        return
    fi
    wait_for "$pb" || { echo "SHOJI-ERROR no $pb"; sleep 3600; return; }
    echo "SHOJI-ROOM-READY power-button=$pb"
    # One input event (24 bytes on x86_64) is the press.
    dd if="$pb" of=/dev/null bs=24 count=1 2>/dev/null
    echo "SHOJI-POWER-BUTTON"
}

panic_now() {
    load_modules
    echo "SHOJI-REPORT pvpanic=$(ls /sys/bus/pci/drivers/pvpanic-pci 2>/dev/null | grep -c :)"
    echo "SHOJI-PANICKING"
    echo c >/proc/sysrq-trigger
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
    storage)  storage; sync; poweroff -f ;;
    diskroot) diskroot; sync; poweroff -f ;;
    panic)    panic_now ;;
    net)      net; poweroff -f ;;
    iperf)    iperf; poweroff -f ;;
    vsock)    vsock; echo "SHOJI-REBOOTING"; reboot -f ;;
    room)     room; sync; poweroff -f ;;
    hostile)  hostile; poweroff -f ;;
    crashwriter) crashwriter; sleep 3600 ;;
    *)        shell; echo "SHOJI-POWEROFF"; poweroff -f ;;
esac
# poweroff -f only returns if it failed; say so instead of letting the kernel
# panic with "Attempted to kill init" and hiding the cause.
echo "SHOJI-ERROR $action did not stop the machine"
sleep 3600
