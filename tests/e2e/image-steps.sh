# shellcheck shell=sh
# The steps of tests/e2e/image.sh, run where the VMM runs (L1's busybox ash,
# or bash on a host with VT-x/AMD-V). Each prints "CHECK ok|FAIL NAME :: WHY"
# lines that the host script matches.
#
# Environment: SHOJID SHOJI VMM SHOJI_IMG E2FSCK, IMAGE (the bundle's OUT),
# IW (a scratch folder), IM_BOOT_S (seconds a boot may take).

im_failed=0
im_ok() { echo "CHECK ok $1 :: $2"; }
im_fail() { echo "CHECK FAIL $1 :: $2"; im_failed=1; }
im_result() { if [ "$1" = 0 ]; then im_ok "$2" "$3"; else im_fail "$2" "$4"; fi; }
im_ms() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }
shoji() { "$SHOJI" --socket "$IW/run/shojid.sock" "$@"; }
im_vm() { shoji --json vm show e2e 2>/dev/null | tr '{' '\n' | grep -F '"name":"e2e"' | head -n 1 |
    sed -n -E "s/.*\"$1\":(\"[^\"]*\"|[0-9]+|true|false).*/\\1/p" | tr -d '"'; }
im_wait() {
    im_end=$(( $(im_ms) + $1 * 1000 ))
    shift
    until "$@"; do
        [ "$(im_ms)" -lt "$im_end" ] || return 1
        sleep 1
    done
}
im_ready() { [ "$(im_vm ready)" = true ]; }
im_stopped() { [ "$(im_vm state)" = stopped ]; }
im_marker() { grep -a -q 'shoji: multi-user.target reached' "$IW/state/logs/e2e.log" 2>/dev/null; }
im_diag() {
    echo "DIAG| --- the guest's console, last 25 lines ---"
    tail -n 25 "$IW/state/logs/e2e.log" 2>/dev/null | tr -d '\r' | sed 's/^/DIAG| /'
    echo "DIAG| --- shojid, last 10 lines ---"
    tail -n 10 "$IW/shojid.log" 2>/dev/null | sed 's/^/DIAG| /'
}

# shojid, and the VM from the image as a client VM under it.
im_boot() {
    rm -rf "$IW"
    mkdir -p "$IW"
    "$SHOJID" --state-dir "$IW/state" --run-dir "$IW/run" --vmm "$VMM" --stop-timeout 120 \
        2>"$IW/shojid.log" &
    echo $! >"$IW/shojid.pid"
    im_wait 20 shoji vm ls >/dev/null 2>&1
    shoji vm create e2e --role client --image "$IMAGE" --memory 512M --cpus 1 --vsock cid=3 \
        >"$IW/create.out" 2>&1
    im_result $? image-define "shoji vm create e2e --image $IMAGE" "$(cat "$IW/create.out")"
    t0=$(im_ms)
    shoji vm start e2e >"$IW/start.out" 2>&1
    im_wait "$IM_BOOT_S" im_marker
    im_result $? image-boots "systemd reached multi-user.target $(( $(im_ms) - t0 )) ms after 'shoji vm start'" \
        "no 'multi-user.target reached' on the console after $IM_BOOT_S s; start said: $(cat "$IW/start.out")"
    im_wait 120 im_ready
    im_result $? image-ready "the agent answered; the VM is ready $(( $(im_ms) - t0 )) ms after 'shoji vm start'" \
        "state $(im_vm state), ready '$(im_vm ready)'"
    [ $im_failed = 0 ] || im_diag
}

im_exec() {
    shoji exec e2e -- cat /etc/os-release >"$IW/os" 2>&1
    grep -q '^ID=debian$' "$IW/os" && grep -q '^VERSION_ID="12"$' "$IW/os"
    im_result $? image-exec "shoji exec e2e -- cat /etc/os-release: $(grep PRETTY_NAME "$IW/os")" \
        "it said: $(tr '\n' ' ' <"$IW/os")"
    shoji exec e2e -- sh -c 'echo to-stderr >&2; exit 42' >/dev/null 2>"$IW/err"
    st=$?
    [ $st = 42 ] && [ "$(cat "$IW/err")" = to-stderr ]
    im_result $? image-exit-status "exit status 42 and stderr passed through" "status $st, stderr '$(cat "$IW/err")'"
    head -c 16777216 /dev/urandom >"$IW/r16"
    want=$(sha256sum <"$IW/r16" | cut -d' ' -f1)
    t0=$(im_ms)
    got=$(shoji exec e2e -- sha256sum <"$IW/r16" 2>"$IW/sum.err" | cut -d' ' -f1)
    [ -n "$want" ] && [ "$got" = "$want" ]
    im_result $? image-exec-16mib "16 MiB of random bytes through sha256sum in the guest: same sum ($(( $(im_ms) - t0 )) ms)" \
        "host $want, guest '$got' ($(cat "$IW/sum.err"))"
    rm -f "$IW/r16"
    [ $im_failed = 0 ] || im_diag
}

im_cp() {
    head -c 10485760 /dev/urandom >"$IW/r10"
    shoji cp "$IW/r10" e2e:/root/r10 >"$IW/cp.err" 2>&1 &&
        shoji cp e2e:/root/r10 "$IW/r10.back" >>"$IW/cp.err" 2>&1 && cmp "$IW/r10" "$IW/r10.back" &&
        [ "$(shoji exec e2e -- sha256sum /root/r10 | cut -d' ' -f1)" = "$(sha256sum <"$IW/r10" | cut -d' ' -f1)" ]
    im_result $? image-cp "10 MiB copied into the guest's /root and back, byte-exact" "$(tr '\n' ' ' <"$IW/cp.err")"
    rm -f "$IW/r10" "$IW/r10.back"
}

# shoji vm pause stops the guest where it is: a ticker the guest writes to
# its console twice a second stops ticking, and ticks again after resume;
# the guest's clock is right afterwards (kvmclock went on counting, and the
# daemon checks it at once after a resume).
im_ticks() { im_n=$(grep -a -c 'e2e-tick' "$IW/state/logs/e2e.log" 2>/dev/null); echo "${im_n:-0}"; }
im_ticked_since() { [ "$(im_ticks)" -gt "$1" ]; }
im_pause() {
    shoji exec e2e -- systemd-run --unit=e2e-tick sh -c \
        'while :; do echo e2e-tick >/dev/ttyS0; sleep 0.5; done' >"$IW/tick.out" 2>&1
    im_wait 60 im_ticked_since 2
    n0=$(im_ticks)
    shoji vm pause e2e >"$IW/pause.out" 2>&1
    state=$(im_vm state)
    sleep 2
    n1=$(im_ticks)
    sleep 6
    n2=$(im_ticks)
    [ "$n0" -gt 2 ] && [ "$state" = paused ] && [ "$n2" = "$n1" ]
    im_result $? image-pause "vm pause: state paused, no tick from the guest in 6 s (ticks $n0 before, $n1 then $n2)" \
        "state '$state', ticks $n0 before, $n1 then $n2 while paused; pause said: $(cat "$IW/pause.out"), the ticker: $(cat "$IW/tick.out")"
    t0=$(im_ms)
    shoji vm resume e2e >"$IW/resume.out" 2>&1
    im_wait 60 im_ticked_since "$n2"
    im_result $? image-resume "vm resume: the guest ticks again $(( $(im_ms) - t0 )) ms later" \
        "no tick 60 s after resume (state '$(im_vm state)'); resume said: $(cat "$IW/resume.out")"
    im_wait 60 im_ready
    guest=$(shoji exec e2e -- date +%s 2>&1)
    host=$(date +%s)
    off=$(( host - ${guest:-0} ))
    [ "${off#-}" -le 3 ] 2>/dev/null
    im_result $? image-clock "after resume the guest's clock is $off s off the host's" \
        "guest said '$guest', host $host"
    shoji exec e2e -- systemctl stop e2e-tick >/dev/null 2>&1
    [ $im_failed = 0 ] || im_diag
}

# shoji-agent answers only the host: a connection from the guest itself
# (vsock loopback, CID 1) is closed without a reply, and the agent logs it.
im_cid() {
    shoji exec e2e -- modprobe vsock_loopback >"$IW/cid.out" 2>&1
    shoji exec e2e -- perl -e '
        socket(S, 40, 1, 0) or die "socket: $!\n";            # AF_VSOCK, SOCK_STREAM
        connect(S, pack("SSLLCx3", 40, 0, 1027, 1, 0)) or die "connect: $!\n";
        syswrite(S, "\x01\x00\x00\x0d{\"op\":\"ping\"}");
        my $n = sysread(S, my $buf, 4096);
        print defined $n ? "read $n bytes\n" : "read failed: $!\n";' >>"$IW/cid.out" 2>&1
    shoji exec e2e -- journalctl -u shoji-agent --no-pager >"$IW/agent.journal" 2>&1
    grep -q -E '^read (0 bytes|failed)' "$IW/cid.out" && grep -q 'from CID 1, not the host' "$IW/agent.journal"
    im_result $? image-agent-cid "a connection to the agent from inside the guest (CID 1) is closed unanswered: $(tail -n 1 "$IW/cid.out")" \
        "$(tr '\n' ' ' <"$IW/cid.out"); agent's journal: $(tail -n 3 "$IW/agent.journal" | tr '\n' ' ')"
}

# shoji vm stop: the agent shuts the guest down; its file system is clean
# (e2fsck -fn of the overlay, read through the master image, needs no
# journal replay).
im_stop() {
    t0=$(im_ms)
    shoji vm stop e2e >"$IW/stop.out" 2>&1
    im_wait 130 im_stopped
    [ "$(im_vm last_exit)" = poweroff ] && grep -q 'asked the agent to shut down' "$IW/shojid.log"
    im_result $? image-stop "powered off through its agent $(( $(im_ms) - t0 )) ms after 'shoji vm stop'" \
        "state $(im_vm state), last_exit '$(im_vm last_exit)'; stop said: $(cat "$IW/stop.out")"
    "$SHOJI_IMG" convert -O raw "$IW/state/disks/e2e.qcow2" "$IW/root.raw" >"$IW/fsck.out" 2>&1 &&
        "$E2FSCK" -fn "$IW/root.raw" >>"$IW/fsck.out" 2>&1 && ! grep -qi 'recovering journal' "$IW/fsck.out"
    im_result $? image-fs-clean "e2fsck -fn of the VM's overlay: clean, no journal to replay" \
        "$(tail -n 5 "$IW/fsck.out" | tr '\n' ' ')"
    rm -f "$IW/root.raw"
    [ $im_failed = 0 ] || im_diag
}

im_teardown() {
    shojid_teardown "$IW"
    sleep 1
    echo "teardown done"
}
