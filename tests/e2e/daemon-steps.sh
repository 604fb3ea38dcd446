# shellcheck shell=sh
# The steps of the shojid end-to-end test (tests/e2e/daemon.sh), run where
# the VMMs run: in L1 (busybox ash) when nested, or on this host (bash).
# Plain POSIX sh. Each dm_* function is one step of the job (a host_step of
# scripts/nested-runner.sh); steps share their state through files in $DW.
#
# Every assertion prints one line:
#   CHECK ok <name> :: <detail>
#   CHECK FAIL <name> :: <why>
# and a step with a failure appends the tails of the daemon's log, the
# event stream and each guest's console and VMM log (DIAG| lines).
#
# Inputs (environment): SHOJID SHOJI VMM VSOCK_TEST L2_KERNEL L2_INITRD,
# DW (a scratch folder; its socket paths must stay short), DM_BOOT_S (how
# long a guest may take to answer over vsock), DM_STOP_S (shojid's
# --stop-timeout), DM_BACKOFF_MS (shojid's --backoff-ms).

DM_SOCK=$DW/run/shojid.sock
DM_CMDLINE="console=ttyS0 panic=-1 shoji.action=room"

dm_failed=0
dm_ok() { echo "CHECK ok $1 :: $2"; }
dm_fail() { echo "CHECK FAIL $1 :: $2"; dm_failed=1; }
# dm_result STATUS NAME DETAIL-IF-OK WHY-IF-NOT: STATUS is the $? of the test.
dm_result() {
    if [ "$1" = 0 ]; then dm_ok "$2" "$3"; else dm_fail "$2" "$4"; fi
}

# Milliseconds since boot (10 ms steps), like the runner's now_ms.
dm_ms() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }

shoji() { "$SHOJI" --socket "$DM_SOCK" "$@"; }

# dm_field JSON-LINE NAME KEY: KEY of the VM NAME in one line of `vm ls
# --json` or `vm show --json` (compact JSON, one object per VM; the keys
# of a status object are unique within it and come before "definition").
dm_field() {
    printf '%s\n' "$1" | tr '{' '\n' | grep -F "\"name\":\"$2\"," | head -n 1 |
        sed -n -E "s/.*\"$3\":(\"[^\"]*\"|[0-9]+|true|false).*/\\1/p" | tr -d '"'
}
dm_vm() { dm_field "$(shoji --json vm show "$1" 2>/dev/null)" "$1" "$2"; }
dm_vsock() {
    shoji --json vm show "$1" 2>/dev/null | sed -n 's/.*"sockets":{[^}]*"vsock":"\([^"]*\)".*/\1/p'
}

# dm_wait SECONDS COMMAND...: retries COMMAND every 0.5 s until it succeeds.
dm_wait() {
    dm_w_end=$(( $(dm_ms) + $1 * 1000 ))
    shift
    until "$@"; do
        [ "$(dm_ms)" -lt "$dm_w_end" ] || return 1
        sleep 0.5
    done
}
dm_state_is() { [ "$(dm_vm "$1" state)" = "$2" ]; }

# dm_answers VM N BYTES: N connections of BYTES each echoed exactly by the
# guest's server on vsock port 5000, through the VM's own Unix socket.
# dm_answers_at SOCKET NAME N BYTES: the same through a socket path given.
dm_answers() { dm_answers_at "$(dm_vsock "$1")" "$@"; }
dm_answers_at() {
    [ -n "$1" ] || return 1
    "$VSOCK_TEST" client --unix "$1" 5000 "$3" "$4" >"$DW/answer.$2" 2>&1 &&
        tail -n 1 "$DW/answer.$2" | grep -q '^PASS'
}
# dm_wait_answers CHECK-NAME VM: waits for a first small echo, then checks
# 4 x 64 KiB; the detail says how long it took.
dm_wait_answers() {
    dm_wa_t0=$(dm_ms)
    if dm_wait "$DM_BOOT_S" dm_answers "$2" 1 1 && dm_answers "$2" 4 65536; then
        dm_ok "$1" "$2 echoed 4 x 64 KiB over vsock ($(( $(dm_ms) - dm_wa_t0 )) ms to answer)"
    else
        dm_fail "$1" "$2 did not answer over vsock within $DM_BOOT_S s (state $(dm_vm "$2" state), last: $(tail -n 1 "$DW/answer.$2" 2>/dev/null))"
    fi
}

# Event lines of EVENTS-FILE for VM and EVENT, in order.
dm_events() { grep -F "\"event\":\"$3\"" "$1" 2>/dev/null | grep -F "\"vm\":\"$2\""; }
dm_ev_field() { printf '%s\n' "$1" | sed -n -E "s/.*\"$2\":(\"[^\"]*\"|[0-9.]+).*/\\1/p" | tr -d '"'; }
# dm_has_event FILE VM EVENT [TEXT...]: an EVENT line of VM holding every TEXT.
dm_has_event() {
    dm_h_lines=$(dm_events "$1" "$2" "$3")
    shift 3
    [ -n "$dm_h_lines" ] || return 1
    for dm_h_t in "$@"; do
        dm_h_lines=$(printf '%s\n' "$dm_h_lines" | grep -F -- "$dm_h_t") || return 1
    done
}

dm_start_daemon() { # LOG-SUFFIX
    "$SHOJID" --state-dir "$DW/state" --run-dir "$DW/run" --vmm "$VMM" \
        --stop-timeout "$DM_STOP_S" --backoff-ms "$DM_BACKOFF_MS" --log-level debug \
        </dev/null >>"$DW/shojid.log" 2>&1 &
    echo $! >"$DW/shojid.pid"
    dm_wait 20 shoji vm ls >/dev/null 2>&1
}
# The event stream from its first event (--since 0) into FILE, in the background.
dm_start_events() {
    shoji events --since 0 </dev/null >"$1" 2>&1 &
    echo $! >>"$DW/events.pids"
}

dm_diag() {
    [ "$dm_failed" = 1 ] || return 0
    {
        echo "--- shojid log, last 30 lines ---"
        tail -n 30 "$DW/shojid.log" 2>/dev/null
        for f in "$DW"/events*.log; do
            [ -f "$f" ] || continue
            echo "--- ${f##*/}, last 15 events ---"
            grep . "$f" | tail -n 15
        done
        for vm in svc desk; do
            echo "--- $vm: guest console, last 20 lines ---"
            tail -n 20 "$DW/state/logs/$vm.log" 2>/dev/null | tr -d '\r'
            echo "--- $vm: shoji-vmm stderr, last 10 lines ---"
            tail -n 10 "$DW/state/logs/$vm.vmm.log" 2>/dev/null
        done
        dm_threads
    } | sed 's/^/DIAG| /'
}

# Where every thread of the VMMs and the daemon is (a stalled guest: a vCPU
# waiting in the kernel's HLT path, on a futex, or running), sampled twice
# a second apart so the CPU ticks show which ones still run.
dm_threads() {
    for dm_t_round in 1 2; do
        echo "--- threads (sample $dm_t_round): pid/tid comm state wchan utime+stime ---"
        for dm_t_p in $(pidof shoji-vmm shojid 2>/dev/null); do
            for dm_t in /proc/"$dm_t_p"/task/*; do
                [ -r "$dm_t/stat" ] || continue
                echo "$dm_t_p/${dm_t##*/} $(cat "$dm_t/comm" 2>/dev/null)" \
                    "$(awk '{ print $3, $14 + $15 }' "$dm_t/stat" 2>/dev/null)" \
                    "wchan=$(cat "$dm_t/wchan" 2>/dev/null)"
                [ "$dm_t_round" = 2 ] && sed -n '1,6s/^/      /p' "$dm_t/stack" 2>/dev/null
            done
        done
        [ "$dm_t_round" = 1 ] && sleep 1
    done
    echo "--- L1 load: $(cat /proc/loadavg) ---"
    dm_kvm_exits
}

# One second of L2 exits (L1's kvm_exit tracepoint), counted by VMM thread,
# reason and guest RIP: a guest spinning in its own code makes none, one
# looping on a device or a fault repeats the same few.
dm_kvm_exits() {
    dm_k=/sys/kernel/tracing
    [ -d "$dm_k/events/kvm" ] || mount -t tracefs nodev "$dm_k" 2>/dev/null
    [ -w "$dm_k/events/kvm/kvm_exit/enable" ] || { echo "--- no kvm_exit tracepoint ---"; return 0; }
    : >"$dm_k/trace"
    echo 1 >"$dm_k/events/kvm/kvm_exit/enable"
    sleep 1
    echo 0 >"$dm_k/events/kvm/kvm_exit/enable"
    echo "--- L2 exits in 1 s: count thread reason rip ---"
    awk '/kvm_exit:/ { r = $0; sub(/.*reason /, "", r); split(r, w, " ")
        print $1, w[1], w[3] }' "$dm_k/trace" | sort | uniq -c | sort -rn | head -n 12
}

# --- the steps -------------------------------------------------------------

# The first daemon has exited (a zombie counts: /init reaps orphans late).
dm_daemon_gone() {
    dm_g_pid=$(cat "$DW/shojid.pid")
    ! kill -0 "$dm_g_pid" 2>/dev/null || awk '{ exit $3 != "Z" }' "/proc/$dm_g_pid/stat" 2>/dev/null
}

# Definitions made with `shoji vm create` under a first daemon, which then
# stops: a service VM (autostart) and a client VM that depends on it, each
# with its own vsock device.
dm_define() {
    rm -rf "$DW"
    mkdir -p "$DW"
    : >"$DW/events.pids"
    dm_start_daemon || { dm_fail define "shojid did not answer on $DM_SOCK"; dm_diag; return 1; }
    shoji vm create svc --role service --kernel "$L2_KERNEL" --initrd "$L2_INITRD" \
        --cmdline "$DM_CMDLINE shoji.token=svc" --memory 256M --vsock cid=3 >"$DW/create.out" 2>&1 &&
        shoji vm create desk --role client --depends-on svc --autostart on --kernel "$L2_KERNEL" --initrd "$L2_INITRD" \
            --cmdline "$DM_CMDLINE shoji.token=desk shoji.agent=1" --memory 256M --vsock cid=4 >>"$DW/create.out" 2>&1
    dm_result $? define "svc (service) and desk (client, depends_on svc, autostart on) created" \
        "shoji vm create: $(tr '\n' ' ' <"$DW/create.out")"
    dm_s=$(dm_vsock svc) dm_d=$(dm_vsock desk)
    [ "$dm_s" = "$DW/run/vms/svc/vsock.sock" ] && [ "$dm_d" = "$DW/run/vms/desk/vsock.sock" ]
    dm_result $? vsock-sockets-per-vm "$dm_s, $dm_d" \
        "vsock sockets '$dm_s', '$dm_d' are not each in the VM's own run directory"
    kill -TERM "$(cat "$DW/shojid.pid")"
    dm_wait 10 dm_daemon_gone
    dm_diag
}

# A new daemon autostarts svc; desk waits for it, then starts; both answer.
dm_autostart() {
    t0=$(dm_ms)
    dm_start_daemon || { dm_fail autostart "shojid did not answer on $DM_SOCK"; dm_diag; return 1; }
    dm_start_events "$DW/events1.log"
    dm_wait_answers svc-answers svc
    dm_wait_answers desk-answers desk
    echo "TIME daemon-start-to-both-answering-ms=$(( $(dm_ms) - t0 ))"
    ev=$DW/events1.log
    s_start=$(dm_events "$ev" svc starting | head -n 1)
    s_run=$(dm_events "$ev" svc running | head -n 1)
    d_wait=$(dm_events "$ev" desk waiting | head -n 1)
    d_start=$(dm_events "$ev" desk starting | head -n 1)
    [ -n "$s_start" ]
    dm_result $? autostart "svc started by the daemon itself: $s_start" \
        "no 'starting' event for svc (events: $(grep -c . "$ev"))"
    ss=$(dm_ev_field "$s_run" seq) ds=$(dm_ev_field "$d_start" seq) dw=$(dm_ev_field "$d_wait" seq)
    [ -n "$dw" ] && [ -n "$ss" ] && [ -n "$ds" ] && [ "$dw" -lt "$ss" ] && [ "$ss" -lt "$ds" ]
    dm_result $? depends-on "desk waited (event $dw), svc ran (event $ss), then desk started (event $ds)" \
        "events out of order: desk waiting '$d_wait', svc running '$s_run', desk starting '$d_start'"
    mode=$(stat -c %a "$DW/run/vms/svc" 2>/dev/null)/$(stat -c %a "$DW/run/vms/desk" 2>/dev/null)
    [ "$mode" = 710/710 ]
    dm_result $? run-dirs-private "run directories (sockets inside) mode $mode (root's; the jailed VMM's group may enter)" \
        "run directories mode $mode, want 710/710"
    dm_jailed svc
    dm_jailed desk
    dm_diag
}

# dm_jailed VM: its VMM runs as the VM's own user (not root), owns the run
# directory, has no capabilities, and lives in mount and network namespaces
# that are not the daemon's (shoji-vmm --jail; docs/security.md).
dm_jailed() {
    dm_j_pid=$(dm_vm "$1" pid)
    dm_j_uid=$(awk '/^Uid:/ { print $2 "/" $3 "/" $4 }' "/proc/$dm_j_pid/status" 2>/dev/null)
    dm_j_cap=$(awk '/^CapEff:/ { print $2 }' "/proc/$dm_j_pid/status" 2>/dev/null)
    dm_j_owner=$(stat -c %g "$DW/run/vms/$1" 2>/dev/null)
    dm_j_dir_uid=$(stat -c %u "$DW/run/vms/$1" 2>/dev/null)
    dm_j_mnt=$(readlink "/proc/$dm_j_pid/ns/mnt" 2>/dev/null)
    dm_j_net=$(readlink "/proc/$dm_j_pid/ns/net" 2>/dev/null)
    dm_j_pidns=$(readlink "/proc/$dm_j_pid/ns/pid" 2>/dev/null)
    dm_j_nspid=$(awk '/^NSpid:/ { print $NF }' "/proc/$dm_j_pid/status" 2>/dev/null)
    [ -n "$dm_j_owner" ] && [ "$dm_j_owner" != 0 ] && [ "$dm_j_dir_uid" = 0 ] &&
        [ "$dm_j_uid" = "$dm_j_owner/$dm_j_owner/$dm_j_owner" ] &&
        [ "$dm_j_cap" = 0000000000000000 ] &&
        [ -n "$dm_j_mnt" ] && [ "$dm_j_mnt" != "$(readlink /proc/self/ns/mnt)" ] &&
        [ -n "$dm_j_net" ] && [ "$dm_j_net" != "$(readlink /proc/self/ns/net)" ] &&
        [ -n "$dm_j_pidns" ] && [ "$dm_j_pidns" != "$(readlink /proc/self/ns/pid)" ] && [ "$dm_j_nspid" = 1 ]
    dm_result $? "jailed-$1" "$1's VMM (pid $dm_j_pid, pid 1 in its own PID namespace) runs as uid $dm_j_owner, no capabilities, own mount and network namespaces" \
        "$1's VMM (pid $dm_j_pid): uids $dm_j_uid, run dir $dm_j_dir_uid:$dm_j_owner, CapEff $dm_j_cap, mnt $dm_j_mnt, net $dm_j_net, pid ns $dm_j_pidns, NSpid $dm_j_nspid"
}

# 8 clients at once, 25 `vm ls --json` each: every answer identical to one
# taken before (nothing changes meanwhile) and naming both VMs as running.
dm_concurrent() {
    ref=$(shoji --json vm ls)
    rm -f "$DW"/conc.*
    t0=$(dm_ms)
    i=0
    while [ $i -lt 8 ]; do
        (
            n=0 bad=0
            while [ $n -lt 25 ]; do
                out=$(shoji --json vm ls 2>&1) || bad=$((bad + 1))
                [ "$out" = "$ref" ] || { bad=$((bad + 1)); printf '%s\n' "$out" >"$DW/conc.$i.diff"; }
                n=$((n + 1))
            done
            echo "$bad" >"$DW/conc.$i"
        ) </dev/null >/dev/null 2>&1 &
        i=$((i + 1))
    done
    wait
    ms=$(( $(dm_ms) - t0 ))
    bad=0 finished=0
    for f in "$DW"/conc.[0-7]; do
        [ -f "$f" ] || continue
        finished=$((finished + 1)); bad=$((bad + $(cat "$f")))
    done
    [ "$finished" = 8 ] && [ "$bad" = 0 ] &&
        [ "$(dm_field "$ref" svc state)/$(dm_field "$ref" desk state)" = running/running ]
    dm_result $? concurrent-api "8 clients x 25 'shoji vm ls --json' in $ms ms: 200 answers, all identical, both VMs running" \
        "$finished of 8 clients finished, $bad bad answers; reference '$ref', e.g. '$(cat "$DW"/conc.*.diff 2>/dev/null | head -c 300)'"
    dm_diag
}

# Counted from the knock on: an earlier restart of svc (a guest that crashed
# by itself under TCG) must not pass for the one after the panic.
dm_svc_restarted() { [ "$(dm_events "$DW/events1.log" svc starting | wc -l)" -gt "$dm_starts0" ]; }

# The service VM's kernel panics (asked over vsock): a panic from pvpanic,
# a restart after the back-off, and it answers again; desk is untouched.
dm_panic() {
    ev=$DW/events1.log
    pid0=$(dm_vm svc pid) dpid=$(dm_vm desk pid)
    dm_starts0=$(dm_events "$ev" svc starting | wc -l)
    "$VSOCK_TEST" knock --unix "$(dm_vsock svc)" 5009 >"$DW/knock.out" 2>&1
    dm_wait 60 dm_has_event "$ev" svc exited '"reason":"panic"'
    ex=$(dm_events "$ev" svc exited | tail -n 1)
    dm_has_event "$ev" svc exited '"reason":"panic"' '"status":5'
    dm_result $? panic-reported "$ex" \
        "no 'exited' event with reason panic, status 5 for svc (last: '$ex'; knock: $(cat "$DW/knock.out"))"
    dm_wait 30 dm_svc_restarted
    rs=$(dm_events "$ev" svc restarting | tail -n 1)
    st=$(dm_events "$ev" svc starting | sed -n "$((dm_starts0 + 1))p")
    in_ms=$(dm_ev_field "$rs" in_ms)
    gap=$(awk -v a="$(dm_ev_field "$ex" time)" -v b="$(dm_ev_field "$st" time)" \
        'BEGIN { if (a == "" || b == "") print -1; else printf "%d\n", (b - a) * 1000 }')
    dm_svc_restarted && [ -n "$in_ms" ] && [ "$gap" -ge $((in_ms - 100)) ] && [ "$gap" -le $((in_ms + 2000)) ]
    dm_result $? panic-restart "restart scheduled in ${in_ms} ms, VMM started ${gap} ms after the exit" \
        "restarting '$rs', starting '$st': no restart within the back-off (${in_ms:-?} ms, +2000 allowed; gap $gap ms)"
    dm_wait_answers panic-answers-again svc
    pid1=$(dm_vm svc pid)
    # Under QEMU's software CPU a guest sometimes triple-faults on its own
    # (vcpu-crash, seen only with two L2 guests at once): the daemon restarts
    # it as it should, and the panic itself was checked by panic-reported.
    le=$(dm_vm svc last_exit)
    [ -n "$pid1" ] && [ "$pid1" != "$pid0" ] && { [ "$le" = panic ] || [ "$le" = vcpu-crash ]; }
    dm_result $? panic-new-vmm "svc runs in a new VMM (pid $pid0 -> $pid1), last_exit $(dm_vm svc last_exit), restarts $(dm_vm svc restarts)" \
        "svc pid $pid0 -> '$pid1', last_exit '$(dm_vm svc last_exit)'"
    [ "$(dm_vm desk pid)" = "$dpid" ] && dm_answers desk 4 65536
    dm_result $? panic-client-untouched "desk still answers in the same VMM (pid $dpid)" \
        "desk: pid $dpid -> '$(dm_vm desk pid)', state $(dm_vm desk state), last echo: $(tail -n 1 "$DW/answer.desk" 2>/dev/null)"
    dm_diag
}

dm_desk_killed() { [ "$(dm_vm desk state)/$(dm_vm desk last_exit)" = stopped/killed ]; }

# kill -9 of the client's VMM: svc keeps answering, the stream says killed.
dm_kill_client() {
    ev=$DW/events1.log
    spid=$(dm_vm svc pid) dpid=$(dm_vm desk pid)
    kill -KILL "$dpid"
    dm_wait 20 dm_has_event "$ev" desk exited '"reason":"killed"'
    dm_has_event "$ev" desk exited '"reason":"killed"' '"signal":9'
    dm_result $? kill-client-event "$(dm_events "$ev" desk exited | tail -n 1)" \
        "no 'exited' event with reason killed, signal 9 for desk (last: '$(dm_events "$ev" desk exited | tail -n 1)')"
    dm_wait 10 dm_desk_killed
    dm_result $? kill-client-state "desk $(dm_vm desk state), last_exit $(dm_vm desk last_exit), not restarted" \
        "desk: state $(dm_vm desk state), last_exit $(dm_vm desk last_exit) (want stopped, killed)"
    [ "$(dm_vm svc pid)" = "$spid" ] && dm_answers svc 4 65536
    dm_result $? kill-client-service-answers "svc still answers in the same VMM (pid $spid)" \
        "svc: pid $spid -> '$(dm_vm svc pid)', last echo: $(tail -n 1 "$DW/answer.svc" 2>/dev/null)"
    dm_diag
}

dm_alive() { kill -0 "$1" 2>/dev/null && echo alive || echo gone; }
dm_both_running() { [ "$(dm_vm svc state)/$(dm_vm desk state)" = running/running ]; }

# kill -9 of shojid: both VMs keep answering; a new shojid re-adopts them.
dm_kill_daemon() {
    shoji vm start desk >"$DW/start.out" 2>&1
    dm_wait_answers client-restarted desk
    before=$(shoji --json vm ls)
    spid=$(dm_field "$before" svc pid) dpid=$(dm_field "$before" desk pid)
    ssock=$(dm_vsock svc) dsock=$(dm_vsock desk)
    kill -KILL "$(cat "$DW/shojid.pid")"
    for p in $(cat "$DW/events.pids"); do kill "$p" 2>/dev/null; done
    sleep 2
    # Without a daemon, the VMs' vsock sockets are where `vm show` said.
    kill -0 "$spid" && kill -0 "$dpid" && dm_answers_at "$ssock" svc 4 65536 && dm_answers_at "$dsock" desk 4 65536
    dm_result $? kill-daemon-vms-live "both VMMs alive (svc $spid, desk $dpid) and answering with no daemon" \
        "after kill -9 of shojid: svc $spid $(dm_alive "$spid"), desk $dpid $(dm_alive "$dpid"); last echoes: $(tail -n 1 "$DW/answer.svc" 2>/dev/null) / $(tail -n 1 "$DW/answer.desk" 2>/dev/null)"
    dm_start_daemon || { dm_fail readopt "the new shojid did not answer"; dm_diag; return 1; }
    dm_start_events "$DW/events2.log"
    dm_wait 20 dm_both_running
    after=$(shoji --json vm ls)
    [ "$(dm_field "$after" svc state)/$(dm_field "$after" desk state)" = running/running ] &&
        [ "$(dm_field "$after" svc pid)" = "$spid" ] && [ "$(dm_field "$after" desk pid)" = "$dpid" ]
    dm_result $? readopt "vm ls --json: svc $(dm_field "$after" svc state) pid $(dm_field "$after" svc pid), desk $(dm_field "$after" desk state) pid $(dm_field "$after" desk pid)" \
        "before: $before; after: $after"
    dm_has_event "$DW/events2.log" svc adopted "\"pid\":$spid" && dm_has_event "$DW/events2.log" desk adopted "\"pid\":$dpid"
    dm_result $? readopt-events "'adopted' events for svc (pid $spid) and desk (pid $dpid)" \
        "no 'adopted' events with those pids: $(grep -F adopted "$DW/events2.log" | tr '\n' ' ')"
    dm_answers svc 4 65536 && dm_answers desk 4 65536
    dm_result $? readopt-answers "both answer under the new daemon" "svc or desk no longer answers"
    dm_diag
}

# desk runs shoji-agent (shoji.agent=1): it becomes ready, and commands
# and files go in and out through shojid's relay and the guest's agent.
dm_ready() { [ "$(dm_vm desk ready)" = true ]; }
dm_agent() {
    t0=$(dm_ms)
    dm_wait "$DM_BOOT_S" dm_ready
    dm_result $? agent-ready "desk ready $(( $(dm_ms) - t0 )) ms into the step" \
        "desk: state $(dm_vm desk state), ready '$(dm_vm desk ready)'; its console: $(grep -a SHOJI-AGENT "$DW/state/logs/desk.log" | tail -n 5 | tr '\n\r' '  ')"
    out=$(shoji exec desk -- cat /proc/version 2>&1)
    case $out in Linux\ version*) true ;; *) false ;; esac
    dm_result $? agent-exec "shoji exec desk -- cat /proc/version: ${out%% (*}" "shoji exec said: $out"
    shoji exec desk -- sh -c 'echo to-stderr >&2; exit 42' >"$DW/ex.out" 2>"$DW/ex.err"
    st=$?
    [ "$st" = 42 ] && [ "$(cat "$DW/ex.err")" = to-stderr ]
    dm_result $? agent-exit-status "exit status 42 and stderr passed through" \
        "status $st, stderr '$(cat "$DW/ex.err")'"
    head -c 16777216 /dev/urandom >"$DW/r16"
    want=$(sha256sum <"$DW/r16" | cut -d' ' -f1)
    t1=$(dm_ms)
    got=$(shoji exec desk -- sha256sum <"$DW/r16" 2>"$DW/sum.err" | cut -d' ' -f1)
    [ -n "$want" ] && [ "$got" = "$want" ]
    dm_result $? agent-exec-16mib "16 MiB through sha256sum in desk: same sum, $(( $(dm_ms) - t1 )) ms" \
        "host $want, guest '$got' ($(cat "$DW/sum.err"))"
    head -c 10485760 /dev/urandom >"$DW/r10"
    shoji cp "$DW/r10" desk:/tmp/r10 >"$DW/cp.err" 2>&1 &&
        shoji cp desk:/tmp/r10 "$DW/r10.back" >>"$DW/cp.err" 2>&1 && cmp -s "$DW/r10" "$DW/r10.back" &&
        [ "$(shoji exec desk -- sha256sum /tmp/r10 | cut -d' ' -f1)" = "$(sha256sum <"$DW/r10" | cut -d' ' -f1)" ]
    dm_result $? agent-cp "10 MiB copied in and out byte-exact" "cp: $(tr '\n' ' ' <"$DW/cp.err")"
    rm -f "$DW/r16" "$DW/r10" "$DW/r10.back"
    dm_diag
}

dm_no_stop_timeout() { ! dm_has_event "$DW/events2.log" "$1" stop-timeout; }

# shoji vm stop: the ACPI power button, the guest powers off, not killed.
dm_stop() {
    ev=$DW/events2.log
    t0=$(dm_ms)
    shoji vm stop desk >"$DW/stop.out" 2>&1
    dm_wait $((DM_STOP_S + 10)) dm_state_is desk stopped
    ms=$(( $(dm_ms) - t0 ))
    dm_has_event "$ev" desk exited '"reason":"poweroff"' '"status":0' && [ "$ms" -lt $((DM_STOP_S * 1000)) ]
    dm_result $? stop-poweroff "desk powered off ${ms} ms after 'shoji vm stop' (stop timeout ${DM_STOP_S} s): $(dm_events "$ev" desk exited | tail -n 1)" \
        "desk: state $(dm_vm desk state), last_exit '$(dm_vm desk last_exit)' after ${ms} ms; 'shoji vm stop' said '$(cat "$DW/stop.out")'"
    dm_no_stop_timeout desk && dm_has_event "$ev" desk stopping '"via":"agent"'
    dm_result $? stop-not-killed "no stop-timeout; desk's agent took the shutdown" \
        "stop-timeout events: $(dm_events "$ev" desk stop-timeout | wc -l); stopping: $(dm_events "$ev" desk stopping | tail -n 1)"
    # A service VM that powers off is not restarted.
    shoji vm stop svc >/dev/null 2>&1
    dm_wait $((DM_STOP_S + 10)) dm_state_is svc stopped
    sleep $((DM_BACKOFF_MS / 1000 * 2 + 1))
    [ "$(dm_vm svc state)/$(dm_vm svc last_exit)" = stopped/poweroff ] && dm_no_stop_timeout svc &&
        grep -q SHOJI-POWER-BUTTON "$DW/state/logs/svc.log"
    dm_result $? stop-service-stays-down "svc (no agent) read the power button, powered off, not restarted" \
        "svc: state $(dm_vm svc state), last_exit $(dm_vm svc last_exit) (want stopped, poweroff); SHOJI-POWER-BUTTON in its log: $(grep -c SHOJI-POWER-BUTTON "$DW/state/logs/svc.log" 2>/dev/null)"
    dm_diag
}

# Ends whatever is left: any VMM, the daemon, the event readers.
dm_teardown() {
    shojid_teardown "$DW"
    for p in $(cat "$DW/events.pids" 2>/dev/null); do kill "$p" 2>/dev/null; done
    sleep 1
    echo "teardown done"
}
