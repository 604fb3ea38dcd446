# shellcheck shell=sh
# The steps of bench/ready/run.sh, run where the VMMs run (L1's busybox ash,
# or bash on a host with VT-x/AMD-V), after nested-runner.sh. Each round's
# step prints one line the host script parses:
#   RESULT shoji N boot_ms=MS ready_ms=MS
#   RESULT qemu N boot_ms=MS
# (-1 for a figure not reached), and DIAG| lines when something failed.
#
# Environment: SHOJID SHOJI VMM SHOJI_IMG QEMU (the QEMU stand-in), IMAGE
# (the bundle's OUT), CMDLINE (its OUT.json "cmdline"), RD_CPUS RD_MEMORY,
# RW (a scratch folder), RD_BOOT_S and RD_READY_S (seconds each may take).

rd_marker='shoji: multi-user.target reached'
rd_ms() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }
rd_shoji() { "$SHOJI" --socket "$RW/run/shojid.sock" "$@"; }
# rd_field VM KEY: KEY's value in `shoji --json vm show VM`.
rd_field() {
    rd_shoji --json vm show "$1" 2>/dev/null | tr '{' '\n' | grep -F "\"name\":\"$1\"" | head -n 1 |
        sed -n -E "s/.*\"$2\":(\"[^\"]*\"|[0-9]+|true|false).*/\\1/p" | tr -d '"'
}
# rd_poll SECONDS INTERVAL CMD...: runs CMD every INTERVAL seconds until it
# succeeds (true) or SECONDS have passed (false).
rd_poll() {
    rp_end=$(( $(rd_ms) + $1 * 1000 )) rp_step=$2
    shift 2
    until "$@"; do
        [ "$(rd_ms)" -lt "$rp_end" ] || return 1
        sleep "$rp_step"
    done
}
rd_has_marker() { grep -a -q -F "$rd_marker" "$1" 2>/dev/null; }
rd_is_ready() { [ "$(rd_field "$1" ready)" = true ]; }
rd_is_stopped() { [ "$(rd_field "$1" state)" = stopped ]; }
rd_tail() {
    echo "DIAG| --- $1, last 15 lines ---"
    tail -n 15 "$2" 2>/dev/null | tr -d '\r' | sed 's/^/DIAG| /'
}

# shojid on a fresh state directory.
rd_setup() {
    rm -rf "$RW"
    mkdir -p "$RW"
    "$SHOJID" --state-dir "$RW/state" --run-dir "$RW/run" --vmm "$VMM" --stop-timeout 30 \
        2>"$RW/shojid.log" &
    echo $! >"$RW/shojid.pid"
    rd_poll 20 1 rd_shoji vm ls >/dev/null 2>&1 || { echo "shojid did not answer"; rd_tail shojid "$RW/shojid.log"; return 1; }
    echo "shojid up"
}

# rd_round_shoji N: a VM of its own name per round (so its console log is
# new), defined with --image (shojid makes its overlay of the master at
# start, inside the timed part), started with --no-wait; the console log is
# polled for the marker, then `vm show` for ready. Then killed and removed
# (which removes the overlay).
rd_round_shoji() {
    vm=shoji-$1 log=$RW/state/logs/shoji-$1.log boot=-1 ready=-1
    rd_shoji vm create "$vm" --role client --image "$IMAGE" --memory "$RD_MEMORY" --cpus "$RD_CPUS" \
        --vsock cid=3 >"$RW/create.out" 2>&1 || { cat "$RW/create.out"; return 1; }
    t0=$(rd_ms)
    rd_shoji vm start --no-wait "$vm" >"$RW/start.out" 2>&1 || cat "$RW/start.out"
    if rd_poll "$RD_BOOT_S" 0.1 rd_has_marker "$log"; then
        t1=$(rd_ms)
        boot=$((t1 - t0))
        if rd_poll "$RD_READY_S" 0.2 rd_is_ready "$vm"; then
            ready=$(( $(rd_ms) - t1 ))
        fi
    fi
    echo "RESULT shoji $1 boot_ms=$boot ready_ms=$ready"
    if [ "$boot" = -1 ] || [ "$ready" = -1 ]; then
        echo "DIAG| state $(rd_field "$vm" state), ready '$(rd_field "$vm" ready)'"
        rd_tail "the guest's console" "$log"
        rd_tail "the VMM's log" "$RW/state/logs/$vm.vmm.log"
        rd_tail shojid "$RW/shojid.log"
    fi
    rd_shoji vm kill "$vm" >/dev/null 2>&1
    rd_poll 60 0.5 rd_is_stopped "$vm" || echo "DIAG| $vm not stopped 60 s after vm kill"
    rd_shoji vm rm "$vm" >/dev/null 2>&1 || echo "DIAG| vm rm $vm failed"
}

# rd_round_qemu N: QEMU through the stand-in (microvm, virtio-blk on
# virtio-mmio) on a fresh overlay of the same master, made before the timed
# part; the console goes to a file, polled for the marker the same way.
rd_round_qemu() {
    ov=$RW/qemu-$1.qcow2 log=$RW/qemu-$1.log boot=-1
    rm -f "$ov" "$log"
    "$SHOJI_IMG" create -b "$IMAGE.qcow2" -F qcow2 "$ov" >"$RW/ov.out" 2>&1 || { cat "$RW/ov.out"; return 1; }
    : >"$log"
    t0=$(rd_ms)
    $QEMU --kernel "$IMAGE.vmlinuz" --initrd "$IMAGE.initrd" --cmdline "$CMDLINE" \
        --cpus "$RD_CPUS" --memory "$RD_MEMORY" --serial "file=$log" \
        --disk "path=$ov,format=qcow2" </dev/null >"$RW/qemu.out" 2>&1 &
    qp=$!
    if rd_poll "$RD_BOOT_S" 0.1 rd_has_marker "$log"; then
        boot=$(( $(rd_ms) - t0 ))
    fi
    echo "RESULT qemu $1 boot_ms=$boot"
    if [ "$boot" = -1 ]; then
        rd_tail "the guest's console" "$log"
        rd_tail "QEMU's output" "$RW/qemu.out"
    fi
    kill -KILL "$qp" 2>/dev/null
    wait "$qp" 2>/dev/null
    rm -f "$ov"
}

rd_teardown() {
    shojid_teardown "$RW"
    sleep 1
    echo "teardown done"
}
