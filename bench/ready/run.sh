#!/usr/bin/env bash
# Boot-to-ready of a real image: the service master image (images/
# service.recipe, built by shoji-img build) booted under shojid as
# `shoji vm create NAME --image OUT` against the same bundle under QEMU
# (-M microvm, virtio-blk on virtio-mmio, through scripts/
# nested-qemu-standin.sh): same kernel, initrd, command line (OUT.json's),
# memory and vCPUs, each VMM on a fresh qcow2 overlay of the master, rounds
# alternated within one L1 boot (or natively where the host has VT-x/AMD-V).
#
# Usage: bench/ready/run.sh [BUILD_DIR] [-n ROUNDS] [--cpus N] [--memory SIZE]
#                           [--with-desktop]
#   BUILD_DIR defaults to build; 3 rounds, 1 vCPU, 512M. --with-desktop also
#   builds images/desktop.recipe (long), for its size only; it is never booted.
#   SHOJI_E2E_MODE=native|nested forces the mode.
#
# Figures: `shoji vm start` to the console line "shoji: multi-user.target
# reached" (shoji) and QEMU's exec to the same line (QEMU), their medians
# and the ratio shoji/QEMU; for shoji also the marker to `ready` in
# `shoji --json vm show` (the agent answered; QEMU has no agent channel
# here). Timestamps from /proc/uptime where the VMMs run (10 ms), the
# console polled every 0.1 s. Then the qcow2 sizes of both recipes' bundles.
# Nested, the CPU is QEMU's TCG: read the ratio, not the seconds.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=../../scripts/nested-lib.sh
source "$repo/scripts/nested-lib.sh"

build=$repo/build
rounds=3
cpus=1
memory=512M
desktop=0
cache=${SHOJI_CACHE:-$repo/.cache}

die() { echo "bench/ready: $*" >&2; exit 1; }
usage_error() { echo "bench/ready: $*" >&2; exit 2; }

parse_args() {
    while (($#)); do
        case $1 in
            -n|--rounds) rounds=${2:?}; shift 2 ;;
            --cpus) cpus=${2:?}; shift 2 ;;
            --memory) memory=${2:?}; shift 2 ;;
            --with-desktop) desktop=1; shift ;;
            -h|--help) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
            -*) usage_error "unknown option '$1'" ;;
            *) build=$1; shift ;;
        esac
    done
    [[ $rounds =~ ^[1-9][0-9]*$ ]] || usage_error "-n needs a positive integer, not '$rounds'"
    [[ $cpus =~ ^[1-9][0-9]*$ ]] || usage_error "--cpus needs a positive integer, not '$cpus'"
    [[ $memory =~ ^[1-9][0-9]*[MG]$ ]] || usage_error "--memory needs NM or NG, not '$memory'"
}

# bundle NAME: builds images/NAME.recipe into WORK/NAME/NAME unless a bundle
# newer than the recipe and the agent is there. Compressed clusters (-c):
# the bundle travels inside L1's initramfs.
bundle() {
    local name=$1 out=$work/$1/$1 recipe=$repo/images/$1.recipe t0
    if [[ -f $out.json && ! $recipe -nt $out.json && ! $build/shoji-agent -nt $out.json ]]; then
        echo "bench/ready: $name bundle from the cache ($out)"
        return 0
    fi
    rm -f "$out".{qcow2,vmlinuz,initrd,json}
    mkdir -p "$work/$1"
    t0=$SECONDS
    "$build/shoji-img" build -c --agent "$build/shoji-agent" "$recipe" "$out" ||
        die "shoji-img build of $recipe failed (see above)"
    echo "bench/ready: built the $name bundle in $((SECONDS - t0)) s"
}

# size_of NAME: the bundle's qcow2 size, or "not built".
size_of() {
    local out=$work/$1/$1 recipe=$repo/images/$1.recipe
    if [[ -f $out.json && -f $out.qcow2 && ! $recipe -nt $out.json ]]; then
        awk -v b="$(stat -c %s "$out.qcow2")" 'BEGIN { printf "%.0f MiB (%d bytes)", b / 1048576, b }'
        echo ", virtual $(jq -r '.disk."virtual-size" / 1048576 | floor' "$out.json") MiB, compressed clusters"
    else
        echo "not built"
    fi
}

write_job() {
    local i
    {
        echo "host_step ready:setup rd_setup"
        for ((i = 1; i <= rounds; i++)); do
            # The first VMM alternates per round.
            if ((i % 2)); then
                echo "host_step ready:shoji-$i 'rd_round_shoji $i'"
                echo "host_step ready:qemu-$i 'rd_round_qemu $i'"
            else
                echo "host_step ready:qemu-$i 'rd_round_qemu $i'"
                echo "host_step ready:shoji-$i 'rd_round_shoji $i'"
            fi
        done
        echo "host_step ready:teardown rd_teardown"
    } >"$work/job.sh"
}

run_native() {
    local rw
    rw=$(mktemp -d "${TMPDIR:-/tmp}/shoji-rd.XXXXXX")
    : >"$results"
    SHOJID=$build/shojid SHOJI=$build/shoji VMM=$build/shoji-vmm SHOJI_IMG=$build/shoji-img \
        QEMU=$repo/scripts/nested-qemu-standin.sh IMAGE=$work/service/service CMDLINE=$cmdline \
        RD_CPUS=$cpus RD_MEMORY=$memory RW=$rw RD_BOOT_S=$boot_s RD_READY_S=$ready_s \
        RESULTS=$results RUNNER_WORK=$work/runner \
        bash -c 'mkdir -p "$RUNNER_WORK"; source "$1"; source "$2"; source "$3"' _ \
        "$repo/scripts/nested-runner.sh" "$here/ready-steps.sh" "$work/job.sh"
    rm -rf "$rw"
}

run_nested() {
    local env=$work/job-env.sh img=$work/service/service rc=0 t0 i l1cpus
    local -a limits=("60:shojid to start")
    l1cpus=$(nested_l1_cpus "$cpus")
    cat >"$env" <<EOF
export SHOJID=/bin/shojid SHOJI=/bin/shoji VMM=/bin/shoji-vmm SHOJI_IMG=/bin/shoji-img QEMU=/bin/qemu-standin
export IMAGE=/img/service CMDLINE='$cmdline' RD_CPUS=$cpus RD_MEMORY=$memory RW=/tmp/rd
export RD_BOOT_S=$boot_s RD_READY_S=$ready_s L2_VMM=/bin/shoji-vmm
. /lib/shoji/ready-steps.sh
EOF
    nested_build_l1 "$work/l1.cpio" "$cache" "$work/job.sh" "$env" \
        FILE "$img.qcow2:/img/service.qcow2" FILE "$img.vmlinuz:/img/service.vmlinuz" \
        FILE "$img.initrd:/img/service.initrd" FILE "$img.json:/img/service.json" \
        FILE "$here/ready-steps.sh:/lib/shoji/ready-steps.sh" \
        EXE "$build/shojid:/bin/shojid" EXE "$build/shoji:/bin/shoji" \
        EXE "$build/shoji-vmm:/bin/shoji-vmm" EXE "$build/shoji-img:/bin/shoji-img" QEMU ||
        die "could not build L1's initramfs"
    # The host's limit is twice the step's own: L1's clock (TCG, a loaded
    # host) has run slow enough that the host stopped L1 before a hung
    # round printed its guest's console.
    for ((i = 0; i < 2 * rounds; i++)); do limits+=("$((2 * (boot_s + ready_s) + 120)):round step $((i + 1)) of $((2 * rounds))"); done
    limits+=("60:teardown")
    echo "bench/ready: booting L1 (QEMU TCG, $l1cpus vCPUs); console in $work/l1-console.log"
    t0=$SECONDS
    # L1 holds the bundle (in its initramfs, unpacked to RAM) and one guest at a time.
    SHOJI_L1_MEMORY=${SHOJI_L1_MEMORY:-3072} \
        nested_run_batch "$cache" "$work/l1.cpio" "$l1cpus" "$work/l1-console.log" "$results" \
        300 "${limits[@]}" || rc=$?
    echo "bench/ready: L1 ran $((SECONDS - t0)) s, QEMU exit $rc"
    if ((rc != 0)) || ! grep -a -q '^@@L1-DONE' "$results"; then
        echo "bench/ready: L1 did not finish its job (QEMU exit $rc${NESTED_HANG_REASON:+: $NESTED_HANG_REASON}); last lines of its console:" >&2
        tail -n 20 "$work/l1-console.log" | tr -d '\r' | sed 's/^/    /' >&2
    fi
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print -1; else if (NR % 2) print v[(NR + 1) / 2]; else print int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
# field KEY: KEY's values (>= 0) from RESULT lines on stdin.
field() { { grep -o "$1=[0-9][0-9]*" || true; } | cut -d= -f2; }

summarise() {
    local lines shoji qemu ms ms_shoji ms_qemu ms_ready bad=0
    lines=$(grep -a '^out|RESULT ' "$results" | tr -d '\r' | cut -d'|' -f2- || true)
    [[ -n $lines ]] || { echo "bench/ready: no measurements in $results" >&2; return 1; }
    echo "run        start->marker   marker->ready"
    awk '{ b = $4; r = ($5 == "" ? "ready_ms=n/a" : $5); sub(/^boot_ms=/, "", b); sub(/^ready_ms=/, "", r)
           printf "%-8s %10s ms   %10s%s\n", $2 "-" $3, b, r, (r ~ /^[-0-9]+$/ ? " ms" : " (no agent channel)") }' <<<"$lines"
    grep -q -E '=-1( |$)' <<<"$lines" && bad=1
    shoji=$(grep '^RESULT shoji ' <<<"$lines" || true)
    qemu=$(grep '^RESULT qemu ' <<<"$lines" || true)
    ms_shoji=$(field boot_ms <<<"$shoji" | median)
    ms_qemu=$(field boot_ms <<<"$qemu" | median)
    ms_ready=$(field ready_ms <<<"$shoji" | median)
    echo "median     start->marker: shoji ${ms_shoji} ms, qemu microvm ${ms_qemu} ms ($mode, $cpus vCPU, $memory)"
    echo "median     marker->ready: shoji ${ms_ready} ms (QEMU: no agent channel here, not measured)"
    if ((ms_shoji > 0 && ms_qemu > 0)); then
        awk -v s="$ms_shoji" -v q="$ms_qemu" 'BEGIN { printf "ratio      shoji/qemu start->marker = %.2f (goal <= 0.8: %s)\n", s / q, (s / q <= 0.8 ? "MET" : "MISSED") }'
    fi
    ms=$(grep -a '^@@END ready:setup ' "$results" | grep -o 'rc=[0-9]*' || true)
    [[ $ms == rc=0 ]] || { echo "bench/ready: shojid's setup failed" >&2; bad=1; }
    if ((bad)); then
        echo "bench/ready: some rounds did not reach the marker or ready; what they printed:" >&2
        grep -a '^out|' "$results" | grep -a -v '^out|RESULT ' | tr -d '\r' | cut -d'|' -f2- | sed 's/^/    /' >&2
        return 1
    fi
}

main() {
    parse_args "$@"
    build=$(cd "$build" && pwd)
    work=$build/bench-ready
    results=$work/results.log
    for bin in shojid shoji shoji-vmm shoji-img shoji-agent; do
        [[ -x $build/$bin ]] || die "$build/$bin not built (run 'make' first)"
    done
    [[ $(id -u) == 0 ]] || die "building an image needs root (mmdebstrap)"
    command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found (Debian package qemu-system-x86)"
    command -v jq >/dev/null || die "jq not found (Debian package jq)"
    nested_pick_mode || usage_error "$NESTED_WHY"
    mode=$NESTED_MODE
    echo "bench/ready: mode $mode ($NESTED_WHY), $rounds rounds, $cpus vCPU, $memory; load: $(cut -d' ' -f1-3 /proc/loadavg)"
    if [[ $mode == nested ]]; then boot_s=600 ready_s=300; else boot_s=120 ready_s=60; fi
    mkdir -p "$work/runner"
    bundle service
    ((desktop == 0)) || bundle desktop
    cmdline=$(jq -r .cmdline "$work/service/service.json")
    [[ -n $cmdline && $cmdline != null && $cmdline != *"'"* ]] || die "no usable cmdline in $work/service/service.json"
    write_job
    if [[ $mode == native ]]; then
        run_native
    else
        "$repo/scripts/fetch-guest.sh" "$cache"
        run_nested
    fi
    local rc=0
    summarise || rc=1
    echo "qcow2      service: $(size_of service)"
    echo "qcow2      desktop: $(size_of desktop)"
    echo "bench/ready: results stream in $results"
    return "$rc"
}

main "$@"
