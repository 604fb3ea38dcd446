# shellcheck shell=sh
# Functions that run L2 guests and write what happened to a results stream.
# Sourced by L1's /init (busybox ash) in nested mode, and by bash on the host
# in native mode, so it is plain POSIX sh. The host parses the stream
# (format below) and makes every assertion there; this file only records.
#
# Inputs (environment):
#   L2_VMM      the VMM command (shoji-vmm, or the QEMU stand-in); takes
#               shoji-vmm's flags
#   RESULTS     where the stream goes (L1: /dev/ttyS1; native: a file)
#   RUNNER_WORK scratch folder for per-case logs
#
# Stream format, one record per case:
#   @@CASE <name>
#   out|<a line the guest wrote on its serial console>
#   err|<a line the VMM wrote on stderr>
#   @@END <name> rc=<exit status> ms=<wall ms> timedout=<0|1>
# and for boot-time measurements, after the console's last lines
# (out-<name>|...) and stderr (err-<name>|...) when the run failed:
#   @@BOOTTIME <name> ms=<exec to marker, or -1> rc=<exit status> timedout=<0|1>

: "${RESULTS:=/dev/stdout}"
: "${RUNNER_WORK:=/tmp}"

emit() { printf '%s\n' "$*" >>"$RESULTS"; }

# Milliseconds since boot. /proc/uptime has 10 ms resolution, which is fine
# for boots that take seconds, and it exists in L1 (busybox's date has no %N).
now_ms() {
    awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime
}

# watchdog PID SECONDS FLAGFILE: after SECONDS, mark FLAGFILE and stop PID,
# first politely (SIGTERM: shoji-vmm exits 6) then with SIGKILL. Run it in the
# background and kill it with SIGTERM once PID has ended.
watchdog() {
    wd_pid=$1 wd_limit=$2 wd_flag=$3
    trap 'kill "$wd_sleep" 2>/dev/null; exit 0' TERM
    sleep "$wd_limit" &
    wd_sleep=$!
    wait "$wd_sleep"
    if kill -0 "$wd_pid" 2>/dev/null; then
        : >"$wd_flag"
        kill -TERM "$wd_pid" 2>/dev/null
        # Up to 5 s of grace, in 1 s steps so that the TERM from the caller
        # (once PID is gone) is acted on at once.
        wd_i=0
        while [ "$wd_i" -lt 5 ] && kill -0 "$wd_pid" 2>/dev/null; do
            sleep 1
            wd_i=$((wd_i + 1))
        done
        kill -KILL "$wd_pid" 2>/dev/null
    fi
    exit 0
}

# Copies FILE into the stream, each line prefixed with TAG|.
emit_file() {
    [ -f "$2" ] || return 0
    awk -v tag="$1" '{ print tag "|" $0 }' "$2" >>"$RESULTS"
}

# run_case NAME TIMEOUT_S VMM-ARGS...: boots one guest with no input and
# records its console, the VMM's stderr and its exit status.
run_case() {
    rc_name=$1 rc_limit=$2
    shift 2
    rc_out=$RUNNER_WORK/$rc_name.out rc_err=$RUNNER_WORK/$rc_name.err
    rc_flag=$RUNNER_WORK/$rc_name.timedout
    rm -f "$rc_out" "$rc_err" "$rc_flag"
    echo "runner: case $rc_name: $L2_VMM $*" >&2
    rc_t0=$(now_ms)
    # shellcheck disable=SC2086 # L2_VMM may carry its own arguments
    $L2_VMM "$@" </dev/null >"$rc_out" 2>"$rc_err" &
    rc_pid=$!
    watchdog "$rc_pid" "$rc_limit" "$rc_flag" &
    rc_wd=$!
    wait "$rc_pid"
    rc_status=$?
    kill -TERM "$rc_wd" 2>/dev/null
    wait "$rc_wd" 2>/dev/null
    rc_ms=$(( $(now_ms) - rc_t0 ))
    rc_to=0
    [ -e "$rc_flag" ] && rc_to=1
    echo "runner: case $rc_name: exit $rc_status after ${rc_ms} ms$([ $rc_to = 1 ] && echo ', TIMED OUT')" >&2
    emit "@@CASE $rc_name"
    emit_file out "$rc_out"
    emit_file err "$rc_err"
    emit "@@END $rc_name rc=$rc_status ms=$rc_ms timedout=$rc_to"
}

# host_step NAME COMMANDS: runs shell COMMANDS where the VMM runs (L1, or
# this host natively): preparing a case's images, and reading them back
# afterwards. Its output is recorded like a case's console (out|), and its
# status as rc, so a job line always yields exactly one @@END record.
host_step() {
    hs_name=$1 hs_cmds=$2
    # A job holds one step per line (the watcher and the retry count lines):
    # commands of several lines come base64-encoded, marked "b64:".
    case $hs_cmds in
        b64:*) hs_cmds=$(printf '%s' "${hs_cmds#b64:}" | base64 -d) ;;
    esac
    hs_t0=$(now_ms)
    emit "@@CASE $hs_name"
    (eval "$hs_cmds") >"$RUNNER_WORK/$hs_name.host" 2>&1
    hs_status=$?
    emit_file out "$RUNNER_WORK/$hs_name.host"
    emit "@@END $hs_name rc=$hs_status ms=$(( $(now_ms) - hs_t0 )) timedout=0"
}

# vmm_own_kb WORD GUEST_KB: the resident memory (kB) of the VMM whose command
# line holds WORD, less its guest RAM: the anonymous mapping of GUEST_KB
# (smaps lists Size before Rss for each mapping). For memory bounds.
vmm_own_kb() {
    ok_word=$1 ok_guest=$2 ok_pid=
    for ok_p in /proc/[0-9]*; do
        if tr '\0' ' ' <"$ok_p/cmdline" 2>/dev/null | grep -q -F -- "$ok_word"; then
            ok_pid=${ok_p#/proc/}
            break
        fi
    done
    [ -n "$ok_pid" ] || { echo "none"; return 1; }
    ok_anon=0 ok_skip=0 ok_kb=0
    while read -r ok_k ok_v ok_rest; do
        case $ok_k in
            Size:) ok_skip=0; [ "$ok_anon" = 1 ] && [ "$ok_v" = "$ok_guest" ] && ok_skip=1 ;;
            Rss:) [ "$ok_skip" = 1 ] || ok_kb=$((ok_kb + ok_v)) ;;
            *-*)
                # shellcheck disable=SC2086 # split on purpose: 3 words = no path
                set -- $ok_rest
                ok_anon=0; [ $# = 3 ] && ok_anon=1 ;;
        esac
    done <"/proc/$ok_pid/smaps"
    echo "$ok_kb"
}

# time_boot NAME TIMEOUT_S MARKER COMMAND...: time from starting COMMAND (a
# VMM with its serial console on stdout) to the first console line holding
# MARKER. The rest of the output is drained so the VMM runs to its end.
time_boot() {
    tb_name=$1 tb_limit=$2 tb_marker=$3
    shift 3
    tb_mark=$RUNNER_WORK/$tb_name.mark tb_fifo=$RUNNER_WORK/$tb_name.fifo
    tb_flag=$RUNNER_WORK/$tb_name.timedout
    rm -f "$tb_mark" "$tb_fifo" "$tb_flag"
    mkfifo "$tb_fifo"
    tb_t0=$(now_ms)
    "$@" </dev/null >"$tb_fifo" 2>"$RUNNER_WORK/$tb_name.err" &
    tb_pid=$!
    watchdog "$tb_pid" "$tb_limit" "$tb_flag" &
    tb_wd=$!
    # tee keeps the console for a failure report; grep stops at the first
    # match, and cat then drains the rest so the VMM never blocks on a full
    # pipe and runs to its own end.
    tee "$RUNNER_WORK/$tb_name.out" <"$tb_fifo" |
        { if grep -q -F "$tb_marker"; then now_ms >"$tb_mark"; fi; cat >/dev/null; }
    wait "$tb_pid"
    tb_status=$?
    kill -TERM "$tb_wd" 2>/dev/null
    wait "$tb_wd" 2>/dev/null
    rm -f "$tb_fifo"
    tb_ms=-1
    [ -s "$tb_mark" ] && tb_ms=$(( $(cat "$tb_mark") - tb_t0 ))
    tb_to=0
    [ -e "$tb_flag" ] && tb_to=1
    echo "runner: boot time $tb_name: ${tb_ms} ms (exit $tb_status)" >&2
    # A run that failed gets the end of its console and stderr, to say why.
    if [ "$tb_ms" = -1 ] || [ "$tb_status" != 0 ]; then
        tail -n 30 "$RUNNER_WORK/$tb_name.out" >"$RUNNER_WORK/$tb_name.tail"
        emit_file "out-$tb_name" "$RUNNER_WORK/$tb_name.tail"
        emit_file "err-$tb_name" "$RUNNER_WORK/$tb_name.err"
    fi
    emit "@@BOOTTIME $tb_name ms=$tb_ms rc=$tb_status timedout=$tb_to"
}

# shojid_teardown DIR: ends what a step script left of a shojid run with
# --state-dir DIR/state --run-dir DIR/run (pid in DIR/shojid.pid): every VMM
# its run directory names, with SIGKILL, and the daemon.
shojid_teardown() {
    for st_f in "$1"/run/vms/*/state.json; do
        [ -f "$st_f" ] || continue
        st_p=$(sed -n 's/.*"vmm_pid":\([0-9]*\).*/\1/p' "$st_f")
        [ -n "$st_p" ] && kill -KILL "$st_p" 2>/dev/null
    done
    [ -f "$1/shojid.pid" ] && kill -TERM "$(cat "$1/shojid.pid")" 2>/dev/null
    return 0
}
