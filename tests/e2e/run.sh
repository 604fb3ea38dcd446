#!/usr/bin/env bash
# End-to-end boot tests: Debian's stock cloud kernel boots in shoji-vmm with
# 1, 2 and 4 vCPUs and reports what it sees; a guest reboot ends the VMM with
# status 3.
#
# Usage: tests/e2e/run.sh BUILD_DIR
# Exit: 0 all cases passed, 1 a case failed, 77 skipped ("SKIP: <reason>").
#
# Mode: "native" runs shoji-vmm on this host's KVM; "nested" runs it inside
# an L1 Linux under QEMU's software CPU (see shared/notes/kvm-testing.md),
# with every case in one L1 boot. Picked by the host (vmx/svm and a usable
# /dev/kvm mean native); SHOJI_E2E_MODE=native|nested forces it.
# SHOJI_E2E_VMM=qemu swaps shoji-vmm for QEMU (microvm) to check the harness
# itself; QEMU cannot report a reboot, so that case is then not run.
# Generated files go to BUILD_DIR/e2e, the guest to ${SHOJI_CACHE:-.cache}.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=../../scripts/nested-lib.sh
source "$repo/scripts/nested-lib.sh"

build=${1:?usage: tests/e2e/run.sh BUILD_DIR}
build=$(cd "$build" && pwd)
cache=${SHOJI_CACHE:-$repo/.cache}
work=$build/e2e
vmm_kind=${SHOJI_E2E_VMM:-shoji}

skip() { echo "SKIP: $*"; exit 77; }
die() { echo "e2e: $*" >&2; exit 1; }

# --- the cases -------------------------------------------------------------
# name cpus memory action expected-exit-status. Memory sizes differ so a VMM
# that ignored --memory would fail, and stay >= 512M because the stock kernel
# keeps about 40 MiB for itself (code, data, page tables), which at 256M
# would already exceed the 10% tolerance on MemTotal.
cases=(
    "boot-1cpu 1 512 report 0"
    "boot-2cpu 2 768 report 0"
    "boot-4cpu 4 1024 report 0"
    "reboot 1 512 reboot 3"
)

# Seconds one case may take. Nested, a 4-vCPU boot took 70 s on 2 host cores
# with QEMU as L2 VMM and up to 160 s for 2 vCPUs on a busy host; native
# boots take a second or two.
case_timeout() {
    if [[ $mode == nested ]]; then echo "${SHOJI_E2E_CASE_TIMEOUT:-400}"; else echo "${SHOJI_E2E_CASE_TIMEOUT:-60}"; fi
}

# --- environment -----------------------------------------------------------
pick_mode() {
    case ${SHOJI_E2E_MODE:-} in
        native|nested) mode=$SHOJI_E2E_MODE; why="forced by SHOJI_E2E_MODE" ;;
        '')
            if nested_native_kvm_ok; then
                mode=native why="host CPU has vmx/svm and /dev/kvm is usable"
            else
                mode=nested why="host KVM cannot run stock guests (no vmx/svm in /proc/cpuinfo)"
            fi ;;
        *) die "SHOJI_E2E_MODE must be native or nested, not '$SHOJI_E2E_MODE'" ;;
    esac
    echo "e2e: mode $mode ($why)"
}

check_prerequisites() {
    case $vmm_kind in
        shoji) vmm_bin=$build/shoji-vmm
               [[ -x $vmm_bin ]] || die "$vmm_bin not built (run 'make' first)" ;;
        qemu) command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 not installed" ;;
        *) die "SHOJI_E2E_VMM must be shoji or qemu, not '$vmm_kind'" ;;
    esac
    if [[ $mode == native ]]; then
        [[ -r /dev/kvm && -w /dev/kvm ]] || skip "native mode needs read/write access to /dev/kvm"
    else
        command -v qemu-system-x86_64 >/dev/null ||
            skip "nested mode needs qemu-system-x86_64 (Debian package qemu-system-x86)"
    fi
    for tool in cpio gzip; do
        command -v "$tool" >/dev/null || skip "$tool not installed"
    done
}

prepare_guest() {
    local log
    log=$("$repo/scripts/fetch-guest.sh" "$cache" 2>&1) ||
        skip "cannot fetch the Debian guest kernel: $(tail -n1 <<<"$log")"
    mkdir -p "$work"
    "$repo/scripts/guest-initramfs.sh" "$work/l2-initrd.cpio.gz" "$cache"
}

# --- running ---------------------------------------------------------------
# Single-quotes a word for the job script (read by ash in L1, bash natively).
shq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# Writes the job script: one run_case per case, each with its own token on
# the kernel command line so the report can only come from that boot.
write_job() {
    local job=$1 line name cpus mem action expect token
    : >"$job"
    for line in "${cases[@]}"; do
        read -r name cpus mem action expect <<<"$line"
        [[ $vmm_kind == qemu && $action == reboot ]] && continue
        token="shoji.token=$name-$RANDOM$RANDOM"
        tokens[$name]=$token
        # shellcheck disable=SC2016 # $L2_KERNEL/$L2_INITRD expand where the job runs
        printf 'run_case %s %s --kernel "$L2_KERNEL" --initrd "$L2_INITRD" --cmdline %s --cpus %s --memory %sM\n' \
            "$name" "$(case_timeout)" "$(shq "console=ttyS0 panic=-1 shoji.action=$action $token")" \
            "$cpus" "$mem" >>"$job"
    done
}

max_cpus() {
    local line n max=1
    for line in "${cases[@]}"; do
        n=$(awk '{ print $2 }' <<<"$line")
        ((n > max)) && max=$n
    done
    echo "$max"
}

run_native() {
    local vmm=$vmm_bin
    [[ $vmm_kind == qemu ]] && vmm=$repo/scripts/nested-qemu-standin.sh
    mkdir -p "$work/runner"
    : >"$results"
    L2_VMM=$vmm L2_KERNEL=$cache/vmlinuz L2_INITRD=$work/l2-initrd.cpio.gz \
        RESULTS=$results RUNNER_WORK=$work/runner \
        bash -c 'source "$1"; source "$2"' _ "$repo/scripts/nested-runner.sh" "$work/job.sh"
}

run_nested() {
    local env=$work/job-env.sh cpio=$work/l1.cpio rc=0 t0 item
    local -a payload steps
    {
        echo "export L2_KERNEL=/l2/vmlinuz L2_INITRD=/l2/initrd.cpio.gz"
        if [[ $vmm_kind == qemu ]]; then echo "export L2_VMM=/bin/qemu-standin"
        else echo "export L2_VMM=/bin/shoji-vmm"; fi
    } >"$env"
    payload=(FILE "$cache/vmlinuz:/l2/vmlinuz" FILE "$work/l2-initrd.cpio.gz:/l2/initrd.cpio.gz")
    if [[ $vmm_kind == qemu ]]; then payload+=(QEMU); else payload+=(EXE "$vmm_bin:/bin/shoji-vmm"); fi
    nested_build_l1 "$cpio" "$cache" "$work/job.sh" "$env" "${payload[@]}"
    # The host's deadline per case leaves room for L1's own watchdog (case
    # timeout, then SIGTERM, 5 s, SIGKILL) to act and report first.
    while read -r _ item _; do
        steps+=("$(($(case_timeout) + 60)):case $item to finish")
    done <"$work/job.sh"
    echo "e2e: booting L1 (QEMU TCG, $(nested_l1_cpus "$(max_cpus)") vCPUs); console in $work/l1-console.log"
    t0=$SECONDS
    nested_run_batch "$cache" "$cpio" "$(nested_l1_cpus "$(max_cpus)")" \
        "$work/l1-console.log" "$results" "${SHOJI_E2E_L1_BOOT_TIMEOUT:-180}" "${steps[@]}" || rc=$?
    local ready
    ready=$(grep -a -m1 '^@@L1-READY' "$results" | sed 's/.*uptime=//' | tr -d '\r' || true)
    ready=${ready:+KVM ready at L1 uptime $ready s}
    echo "e2e: L1 ran $((SECONDS - t0)) s (${ready:-KVM never got ready}), QEMU exit $rc"
    if ((rc != 0)) || ! grep -a -q '^@@L1-DONE' "$results"; then
        l1_problem="L1 did not finish its job (QEMU exit $rc)"
        ((rc == 124)) && l1_problem="L1 hung and was killed (${NESTED_HANG_REASON:-no reason recorded})"
        grep -a '^@@FATAL' "$results" | sed 's/^@@FATAL /L1: /' || true
    fi
}

# --- checking --------------------------------------------------------------
# Lines a case's guest wrote on its console (tag out) or its VMM on stderr
# (tag err), carriage returns removed.
section() {
    awk -v want="@@CASE $1" -v tag="$2|" '
        $0 == want { on = 1; next }
        on && /^@@END / { on = 0 }
        on && index($0, tag) == 1 { print substr($0, length(tag) + 1) }' "$results" | tr -d '\r'
}

end_field() { grep -a "^@@END $1 " "$results" | tail -n1 | grep -o "$2=[^ ]*" | cut -d= -f2 | tr -d '\r'; }

report_field() { section "$1" out | grep -a "^SHOJI-REPORT $2=" | tail -n1 | cut -d= -f2-; }

# Counts the CPUs in a kernel CPU list such as "0-3" or "0,2-3".
count_cpulist() {
    local n=0 part
    local -a parts
    IFS=, read -r -a parts <<<"$1"
    for part in "${parts[@]}"; do
        if [[ $part =~ ^([0-9]+)-([0-9]+)$ ]]; then
            n=$((n + BASH_REMATCH[2] - BASH_REMATCH[1] + 1))
        elif [[ $part =~ ^[0-9]+$ ]]; then
            n=$((n + 1))
        fi
    done
    echo "$n"
}

# The meaning of shoji-vmm's exit statuses, for failure messages.
describe_status() {
    case $1 in
        0) echo "guest powered off" ;;
        1) echo "VMM failure" ;;
        2) echo "usage error" ;;
        3) echo "guest reboot" ;;
        4) echo "vCPU crash" ;;
        5) echo "guest panic" ;;
        6) echo "stopped by a signal" ;;
        *) echo "unknown" ;;
    esac
}

# check_case LINE: prints "ok" or "FAIL" with the reasons and the tails of
# the guest console and the VMM's stderr.
check_case() {
    local name cpus mem action expect rc ms timedout online nproc memkb cmdline want_kb
    local -a why=()
    read -r name cpus mem action expect <<<"$1"
    if [[ $vmm_kind == qemu && $action == reboot ]]; then
        echo "skip $name: QEMU stand-in cannot report a reboot"
        return 0
    fi
    rc=$(end_field "$name" rc)
    ms=$(end_field "$name" ms)
    timedout=$(end_field "$name" timedout)
    if [[ -z $rc ]]; then
        echo "FAIL $name (${cpus} vCPU, ${mem}M)"
        echo "       - no result: ${l1_problem:-the runner never finished this case}"
        return 1
    else
        [[ $timedout == 1 ]] && why+=("timed out after $(case_timeout) s and was killed")
        if ((rc > 128)); then
            why+=("shoji-vmm killed by signal $((rc - 128)) (exit status $rc), expected exit status $expect")
        elif [[ $rc != "$expect" ]]; then
            why+=("shoji-vmm exit status $rc ($(describe_status "$rc")), expected $expect ($(describe_status "$expect"))")
        fi
    fi
    case $action in
        report)
            if ! section "$name" out | grep -q '^SHOJI-REPORT done'; then
                why+=("the guest's /init never reported (no 'SHOJI-REPORT done' on the console)")
            else
                online=$(report_field "$name" cpus-online)
                nproc=$(report_field "$name" nproc)
                memkb=$(report_field "$name" memtotal-kb)
                cmdline=$(report_field "$name" cmdline)
                [[ $(count_cpulist "$online") == "$cpus" ]] ||
                    why+=("CPUs online '$online' ($(count_cpulist "$online")), expected $cpus")
                [[ $nproc == "$cpus" ]] || why+=("nproc $nproc, expected $cpus")
                want_kb=$((mem * 1024))
                if ! [[ $memkb =~ ^[0-9]+$ ]] || ((memkb > want_kb || (want_kb - memkb) * 10 > want_kb)); then
                    why+=("MemTotal ${memkb:-?} kB is not within 10% below ${mem} MiB ($want_kb kB)")
                fi
                [[ " $cmdline " == *" ${tokens[$name]} "* ]] ||
                    why+=("/proc/cmdline '$cmdline' lacks the token ${tokens[$name]}")
            fi ;;
        reboot)
            section "$name" out | grep -q '^SHOJI-REBOOTING' ||
                why+=("the guest's /init never got to 'reboot -f' (no SHOJI-REBOOTING)") ;;
    esac
    if ((${#why[@]} == 0)); then
        echo "ok   $name (${cpus} vCPU, ${mem}M, exit $rc, ${ms} ms)"
        return 0
    fi
    echo "FAIL $name (${cpus} vCPU, ${mem}M)"
    printf '       - %s\n' "${why[@]}"
    echo "       --- guest console, last 25 lines ---"
    section "$name" out | tail -n 25 | sed 's/^/       | /' | grep . || echo "       (nothing)"
    echo "       --- shoji-vmm stderr, last 10 lines ---"
    section "$name" err | tail -n 10 | sed 's/^/       | /' | grep . || echo "       (nothing)"
    return 1
}

main() {
    local line failed=0
    declare -gA tokens=()
    l1_problem=''
    pick_mode
    check_prerequisites
    prepare_guest
    results=$work/results.log
    write_job "$work/job.sh"
    if [[ $mode == native ]]; then run_native; else run_nested; fi
    for line in "${cases[@]}"; do
        check_case "$line" || failed=1
    done
    if [[ -n $l1_problem ]]; then
        echo "FAIL L1: $l1_problem; last lines of its console ($work/l1-console.log):"
        tail -n 20 "$work/l1-console.log" | tr -d '\r' | sed 's/^/       | /'
        failed=1
    fi
    echo "e2e: results stream in $results"
    return "$failed"
}

main "$@"
