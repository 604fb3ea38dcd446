# shellcheck shell=bash
# Host-side helpers to run a VMM on a stock Linux guest when the host's KVM
# cannot (see shared/notes/kvm-testing.md): build an L1 initramfs holding
# KVM's modules, the L2 VMM with its shared libraries, the L2 kernel/initrd
# and a job script, then boot it under QEMU's software CPU (TCG), which
# emulates AMD SVM so that KVM works inside L1.
# Sourced by scripts/run-demo.sh, tests/e2e/run.sh, tests/e2e/daemon.sh and
# bench/boot-nested.sh.

NESTED_SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# True when this host's KVM can run a stock guest itself: the CPU advertises
# hardware virtualisation and /dev/kvm opens for reading and writing.
nested_native_kvm_ok() {
    grep -qwE 'vmx|svm' /proc/cpuinfo 2>/dev/null &&
        [[ -c /dev/kvm && -r /dev/kvm && -w /dev/kvm ]] &&
        { : <>/dev/kvm; } 2>/dev/null
}

# nested_pick_mode: sets NESTED_MODE to native or nested and NESTED_WHY to
# the reason: SHOJI_E2E_MODE=native|nested forces it, else native when
# nested_native_kvm_ok. False (NESTED_WHY says why) for a bad SHOJI_E2E_MODE.
nested_pick_mode() {
    case ${SHOJI_E2E_MODE:-} in
        native|nested) NESTED_MODE=$SHOJI_E2E_MODE NESTED_WHY="forced by SHOJI_E2E_MODE" ;;
        '')
            if nested_native_kvm_ok; then
                NESTED_MODE=native NESTED_WHY="host CPU has vmx/svm and /dev/kvm is usable"
            else
                NESTED_MODE=nested NESTED_WHY="host KVM cannot run stock guests (no vmx/svm in /proc/cpuinfo)"
            fi ;;
        *) NESTED_WHY="SHOJI_E2E_MODE must be native or nested, not '$SHOJI_E2E_MODE'"; return 1 ;;
    esac
}

# nested_l1_cpus [MIN]: how many vCPUs L1 gets. TCG's multi-threaded mode
# runs one host thread per vCPU, so follow the host (2 to 4), but never fewer
# than MIN, the most vCPUs any L2 guest gets: once, with QEMU 7.2 as the L2
# VMM, a 4-vCPU L2 in a 2-vCPU L1 hung L1 for good (not even its timers ran;
# shoji-vmm in the same setup did not), and the extra L1 vCPUs cost little.
# SHOJI_L1_CPUS overrides.
nested_l1_cpus() {
    local n min=${1:-0}
    n=$(nproc)
    ((n < 2)) && n=2
    ((n > 4)) && n=4
    ((n < min)) && n=$min
    echo "${SHOJI_L1_CPUS:-$n}"
}

# nested_copy_exe ROOT SRC DEST: copies executable SRC to ROOT/DEST and its
# shared libraries (nested_copy_libs), so the binary runs unchanged inside
# L1. Works for sanitizer builds too, whose libasan/libubsan ldd lists like
# any other library.
nested_copy_exe() {
    local root=$1 src=$2 dest=$3
    [[ -x $src ]] || { echo "nested: $src is not an executable" >&2; return 1; }
    mkdir -p "$root/$(dirname "$dest")"
    cp -L "$src" "$root/$dest"
    nested_copy_libs "$root" "$src"
}

# nested_copy_libs ROOT EXE: copies every shared library ldd names for EXE
# (the dynamic loader included) into ROOT at its own absolute path; nothing
# for a static EXE.
nested_copy_libs() {
    local root=$1 src=$2 lib
    # ldd lines: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and
    # "/lib64/ld-linux-x86-64.so.2 (0x...)"; vdso has no file.
    while read -r lib; do
        [[ -e $root/$lib ]] && continue
        mkdir -p "$root/$(dirname "$lib")"
        cp -L "$lib" "$root/$lib"
    done < <(ldd "$src" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
}

# nested_add_qemu ROOT: QEMU as an L2 VMM inside L1 (the stand-in and the
# benchmark's reference), with the firmware files microvm loads.
nested_add_qemu() {
    local root=$1 qemu share f
    qemu=$(command -v qemu-system-x86_64) || { echo "nested: qemu-system-x86_64 not found" >&2; return 1; }
    nested_copy_exe "$root" "$qemu" /usr/bin/qemu-system-x86_64
    share=$(dirname "$qemu")/../share/qemu
    mkdir -p "$root/usr/share/qemu"
    for f in bios-microvm.bin linuxboot_dma.bin kvmvapic.bin; do
        [[ -e $share/$f ]] && cp -L "$share/$f" "$root/usr/share/qemu/"
    done
    install -m 0755 "$NESTED_SCRIPTS/nested-qemu-standin.sh" "$root/bin/qemu-standin"
}

# nested_build_l1 OUT CACHE JOB ENV [EXE SRC:DEST | FILE SRC:DEST | QEMU]...
# Writes the L1 initramfs OUT (uncompressed newc: TCG would spend seconds
# inflating it, and most of it is the already compressed L2 kernel).
# JOB is the shell script L1 sources to do its work; ENV is a file of
# "export VAR=..." lines it sources first (L2_VMM at least).
nested_build_l1() {
    local out=$1 cache=$2 job=$3 env=$4 root kmod applet spec
    shift 4
    root=$(mktemp -d "${TMPDIR:-/tmp}/shoji-l1root.XXXXXX")
    mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,root,lib/shoji,lib/shoji-kvm}
    install -m 0755 "$cache/busybox" "$root/bin/busybox"
    for applet in $("$cache/busybox" --list); do
        [[ $applet == busybox ]] || ln -sf busybox "$root/bin/$applet"
    done
    for kmod in virt/lib/irqbypass.ko arch/x86/kvm/kvm.ko arch/x86/kvm/kvm-amd.ko; do
        cp "$cache/modules/kernel/$kmod" "$root/lib/shoji-kvm/" ||
            { echo "nested: $cache/modules lacks $kmod" >&2; rm -rf "$root"; return 1; }
    done
    install -m 0755 "$NESTED_SCRIPTS/nested-init.sh" "$root/init"
    cp "$NESTED_SCRIPTS/nested-runner.sh" "$root/lib/shoji/"
    cp "$job" "$root/lib/shoji/job.sh"
    cp "$env" "$root/lib/shoji/job-env.sh"
    while (($#)); do
        case $1 in
            EXE) spec=$2; nested_copy_exe "$root" "${spec%%:*}" "${spec#*:}" || { rm -rf "$root"; return 1; }; shift 2 ;;
            FILE) spec=$2; mkdir -p "$root/$(dirname "${spec#*:}")"; cp -L "${spec%%:*}" "$root/${spec#*:}"; shift 2 ;;
            QEMU) nested_add_qemu "$root" || { rm -rf "$root"; return 1; }; shift ;;
            *) echo "nested_build_l1: unknown item $1" >&2; rm -rf "$root"; return 1 ;;
        esac
    done
    mkdir -p "$(dirname "$out")"
    (cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet) >"$out.tmp"
    mv "$out.tmp" "$out"
    rm -rf "$root"
}

# nested_qemu_l1_cmd CACHE CPIO CPUS: sets the array NESTED_QEMU_CMD to the
# command that runs L1 with CPUS vCPUs (callers append their -serial
# options). An array rather than a function, so that a caller that runs it
# in the background gets QEMU's own pid in $! and can kill QEMU itself, not
# a subshell that would leave QEMU running and holding the test's output.
# -no-reboot turns any L1 reboot (panic=-1 included) into an exit, so a broken
# L1 never loops. SHOJI_L1_MEMORY (MiB) and SHOJI_L1_APPEND tune it.
#
# L1's KVM runs its guests on shadow page tables (kvm_amd.npt=0, which
# nested-init.sh passes to insmod): QEMU 7.2's software CPU emulates SVM's
# nested paging, and with it L2 guests triple-faulted (about one boot in
# ten alone, most boots with two at once) and L1 itself reset or hung. With
# shadow paging, 2026-12-02: two guests at once booted cleanly in 8 of 8
# rounds where nested paging had lost L1 within four, and the daemon e2e
# passed where it had failed in most runs (docs/testing.md). What shoji-vmm
# sees of KVM does not change. SHOJI_L1_NPT=1 brings nested paging back.
nested_qemu_l1_cmd() {
    local cache=$1 cpio=$2 cpus=$3 npt="kvm_amd.npt=0"
    [[ ${SHOJI_L1_NPT:-0} == 1 ]] && npt=
    NESTED_QEMU_CMD=(qemu-system-x86_64 -accel tcg,thread=multi -cpu max
        -smp "$cpus" -m "${SHOJI_L1_MEMORY:-2048}"
        -nodefaults -no-user-config -display none -no-reboot
        -kernel "$cache/vmlinuz" -initrd "$cpio"
        -append "console=ttyS0 panic=-1 quiet $npt ${SHOJI_L1_APPEND:-}")
}

# nested_run_batch CACHE CPIO CPUS CONSOLE RESULTS BOOT_S STEP...
# Boots L1 without input, its console into CONSOLE and the results stream
# (its ttyS1) into RESULTS, and watches it: L1 must report ready (@@L1-READY)
# within BOOT_S seconds, then each further record (@@END, @@BOOTTIME) within
# the seconds of the matching STEP ("SECONDS:what it is"), then power off
# within 60 s. An L1 that misses a deadline is hung (under TCG that happens,
# and then nothing inside L1 runs any more, its own watchdogs included): it is
# killed, one line on stderr (and NESTED_HANG_REASON) says what it was
# waiting for, and the status is 124. Otherwise the status is QEMU's (0 when L1 powered off).
nested_run_batch() {
    local cache=$1 cpio=$2 cpus=$3 console=$4 results=$5 limit=$6
    shift 6
    local -a steps=("$@")
    local qpid seen=-1 n deadline what
    : >"$console"
    : >"$results"
    : >"$console.qemu"
    nested_qemu_l1_cmd "$cache" "$cpio" "$cpus"
    "${NESTED_QEMU_CMD[@]}" -serial "file:$console" -serial "file:$results" \
        </dev/null >>"$console.qemu" 2>&1 &
    qpid=$!
    while kill -0 "$qpid" 2>/dev/null; do
        n=$(grep -a -c -E '^@@(L1-READY|END|BOOTTIME|FATAL)' "$results" || true)
        if [[ $n != "$seen" ]]; then
            seen=$n
            if ((n == 0)); then
                what="L1 to boot and load KVM"
            elif grep -a -q '^@@FATAL' "$results" || ((n > ${#steps[@]})); then
                limit=60 what="L1 to power off"
            else
                limit=${steps[n-1]%%:*} what=${steps[n-1]#*:}
            fi
            deadline=$((SECONDS + limit))
        fi
        if ((SECONDS > deadline)); then
            NESTED_HANG_REASON="waited ${limit} s for $what"
            echo "nested: L1 hung: $NESTED_HANG_REASON; killing QEMU" >&2
            kill -TERM "$qpid" 2>/dev/null
            sleep 3
            kill -KILL "$qpid" 2>/dev/null
            wait "$qpid" 2>/dev/null
            return 124
        fi
        sleep 1
    done
    wait "$qpid"
}

# nested_bench_here WORK: runs a benchmark's job WORK/job.sh on this host
# (native mode), its records into WORK/results.log.
nested_bench_here() {
    local work=$1
    : >"$work/results.log"
    RESULTS=$work/results.log RUNNER_WORK=$work/runner \
        bash -c 'source "$1"; source "$2"' _ "$NESTED_SCRIPTS/nested-runner.sh" "$work/job.sh"
}

# nested_bench_l1 NAME CACHE WORK CPUS STEP_S NSTEPS ITEM...: runs a
# benchmark's job WORK/job.sh in one L1 boot with CPUS vCPUs, shoji-vmm's
# L2 kernel and initrd (WORK/initrd.cpio.gz) and the nested_build_l1 ITEMs,
# its records into WORK/results.log; each of the NSTEPS runs must report
# within STEP_S seconds. False, after L1's last console lines, if L1 did not
# finish.
nested_bench_l1() {
    local name=$1 cache=$2 work=$3 cpus=$4 step_s=$5 nsteps=$6 i t0=$SECONDS rc=0
    shift 6
    local -a steps=()
    echo "export L2_VMM=/bin/shoji-vmm" >"$work/job-env.sh"
    nested_build_l1 "$work/l1.cpio" "$cache" "$work/job.sh" "$work/job-env.sh" \
        FILE "$cache/vmlinuz:/l2/vmlinuz" FILE "$work/initrd.cpio.gz:/l2/initrd.cpio.gz" "$@" || return 1
    for ((i = 0; i < nsteps; i++)); do steps+=("$step_s:run $((i + 1)) of $nsteps"); done
    nested_run_batch "$cache" "$work/l1.cpio" "$cpus" "$work/l1-console.log" "$work/results.log" \
        180 "${steps[@]}" || rc=$?
    echo "$name: L1 ran $((SECONDS - t0)) s (QEMU exit $rc); console in $work/l1-console.log"
    ((rc == 0)) || { tail -n 20 "$work/l1-console.log" >&2; return 1; }
}

# nested_run_interactive CACHE CPIO CPUS: boots L1 with its console on this
# terminal. signal=off and no QEMU multiplexer: every key, Ctrl-C and Ctrl-A
# included, goes through to L1 and on to the VMM inside it, so the keys are
# those of the VMM run natively.
nested_run_interactive() {
    nested_qemu_l1_cmd "$1" "$2" "$3"
    "${NESTED_QEMU_CMD[@]}" -chardev stdio,id=l1con,signal=off -serial chardev:l1con
}

# nested_step_out PREFIX STEP RESULTS: the lines step PREFIX:STEP printed
# (the runner's out| records), carriage returns removed.
nested_step_out() {
    awk -v want="@@CASE $1:$2" '
        $0 == want { on = 1; next }
        on && /^@@END / { on = 0 }
        on && index($0, "out|") == 1 { print substr($0, 5) }' "$3" | tr -d '\r'
}

# nested_report_checks PREFIX RESULTS PROBLEM STEP:CHECK...: prints "ok
# CHECK (detail)" or "FAIL CHECK" with why (the step's CHECK line, or that
# the step never finished: PROBLEM, L1's trouble if any) and, once per
# failed step, its DIAG| lines. Status 1 if any check failed.
nested_report_checks() {
    local prefix=$1 results=$2 problem=$3 c step name line failed=0
    shift 3
    local -A shown=()
    for c in "$@"; do
        step=${c%%:*} name=${c#*:}
        line=$(nested_step_out "$prefix" "$step" "$results" | grep -a "^CHECK [a-zA-Z]* $name :: " | tail -n 1 || true)
        if [[ $line == "CHECK ok $name :: "* ]]; then
            echo "ok   $name (${line#* :: })"
            continue
        fi
        failed=1
        echo "FAIL $name"
        if [[ -n $line ]]; then
            echo "       - ${line#* :: }"
        elif grep -a -q "^@@END $prefix:$step " "$results"; then
            echo "       - step $step ended without this check: $(nested_step_out "$prefix" "$step" "$results" | grep -v '^DIAG|' | tail -n 3 | tr '\n' ' ')"
        else
            echo "       - step $step never finished: ${problem:-the runner stopped before it}"
        fi
        if [[ -z ${shown[$step]:-} ]]; then
            shown[$step]=1
            nested_step_out "$prefix" "$step" "$results" | grep -a '^DIAG|' | sed 's/^DIAG| /       | /' || true
        fi
    done
    return "$failed"
}
