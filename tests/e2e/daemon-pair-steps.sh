# shellcheck shell=sh
# L1 side of tests/e2e/daemon-pair.sh (a manual probe, not part of the
# suite): ROUNDS rounds of two plain shoji-vmm guests booted at once, as
# shojid would start svc and desk but with no daemon, console to a file
# (PAIR_SERIAL=file=) or to an unconnected socket (socket=: output dropped).
# One line per guest and round goes straight into the results stream:
#   ROUND <n> <a|b> <L1 uptime> <ready|STALLED|EXITED> ...
# and for a stalled guest its VMM's threads and one second of L2 exits.
# Inputs: VMM L2_KERNEL L2_INITRD ROUNDS PAIR_SERIAL RESULTS [PAIR_THP].

pair_threads() {
    for t in /proc/"$1"/task/*; do
        echo "   $(cat "$t/comm") $(awk '{ print $3, $14 + $15 }' "$t/stat") wchan=$(cat "$t/wchan")"
    done
    k=/sys/kernel/tracing
    [ -d "$k/events/kvm" ] || mount -t tracefs nodev "$k" 2>/dev/null
    [ -w "$k/events/kvm/kvm_exit/enable" ] || return 0
    : >"$k/trace"
    echo 1 >"$k/events/kvm/kvm_exit/enable"
    sleep 1
    echo 0 >"$k/events/kvm/kvm_exit/enable"
    echo "   L2 exits in 1 s (count thread reason rip):"
    awk '/kvm_exit:/ { r = $0; sub(/.*reason /, "", r); split(r, w, " ")
        print $1, w[1], w[3] }' "$k/trace" | sort | uniq -c | sort -rn | head -n 12 | sed 's/^/   /'
}

pair_round() {
    r=$1 d=/tmp/pair/r$1
    mkdir -p "$d"
    for vm in a b; do
        cid=3
        [ $vm = b ] && cid=4
        "$VMM" --kernel "$L2_KERNEL" --initrd "$L2_INITRD" \
            --cmdline "console=ttyS0 panic=-1 shoji.action=room shoji.token=$vm" \
            --cpus 1 --memory 256M --serial "$PAIR_SERIAL$d/$vm.con" --api-socket "$d/$vm.api" \
            --vsock "cid=$cid,socket=$d/$vm.vsock" </dev/null >"$d/$vm.out" 2>"$d/$vm.err" &
        echo $! >"$d/$vm.pid"
    done
    i=0
    while [ $i -lt 150 ]; do
        n=0
        for vm in a b; do
            if grep -q SHOJI-ROOM-READY "$d/$vm.con" 2>/dev/null || ! kill -0 "$(cat "$d/$vm.pid")" 2>/dev/null; then
                n=$((n + 1))
            fi
        done
        [ $n = 2 ] && break
        sleep 1
        i=$((i + 1))
    done
    for vm in a b; do
        p=$(cat "$d/$vm.pid")
        if grep -q SHOJI-ROOM-READY "$d/$vm.con" 2>/dev/null; then st=ready
        elif kill -0 "$p" 2>/dev/null; then st=STALLED
        else st=EXITED; fi
        echo "ROUND $r $vm $(cut -d' ' -f1 /proc/uptime) $st after ${i}s: $(grep -h 'triple\|error' "$d/$vm.err" | tail -n 1)" \
            "| last console: $(tail -n 1 "$d/$vm.con" 2>/dev/null | tr -d '\r' | cut -c1-80)"
        [ $st = STALLED ] && pair_threads "$p"
    done
    for vm in a b; do kill -TERM "$(cat "$d/$vm.pid")" 2>/dev/null; done
    sleep 2
    for vm in a b; do kill -KILL "$(cat "$d/$vm.pid")" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$d"
}

# Each round's lines go to the stream at once: an L1 that dies keeps them.
pair_all() {
    # PAIR_THP=never|always|madvise: L1's transparent huge pages for the
    # run (guest RAM asks for them with MADV_HUGEPAGE), to tell whether
    # page compaction under L1's KVM matters to the guests' crashes.
    if [ -n "${PAIR_THP:-}" ]; then
        echo "$PAIR_THP" >/sys/kernel/mm/transparent_hugepage/enabled
        echo "THP $(cat /sys/kernel/mm/transparent_hugepage/enabled)" | tee -a "$RESULTS"
    fi
    n=1
    while [ "$n" -le "$ROUNDS" ]; do
        pair_round "$n" | tee -a "$RESULTS"
        n=$((n + 1))
    done
}
