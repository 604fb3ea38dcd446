#!/usr/bin/env bash
# Boot-time comparison where stock guests only run nested: the time from
# exec of the VMM to the guest's /init (its first console line,
# SHOJI-INIT-REACHED) for shoji-vmm and for QEMU (-enable-kvm -M microvm),
# same kernel, initrd, command line, memory and vCPUs, alternated within ONE
# L1 boot so both see the same conditions.
#
# Usage: bench/boot-nested.sh [BUILD_DIR] [-n RUNS] [--cpus N] [--memory SIZE]
#   BUILD_DIR defaults to build. SHOJI_BENCH_MODE=native|nested forces the
#   mode (default: native when the host CPU has vmx/svm and /dev/kvm works).
#
# Inside L1 the CPU is QEMU's TCG: absolute numbers say little about real
# hardware. Read the ratio shoji/QEMU, and re-run natively for real figures
# (bench/boot.sh measures startup natively). The timestamps come from
# /proc/uptime (10 ms steps). QEMU is started through scripts/
# nested-qemu-standin.sh (one busybox sh exec more than shoji-vmm).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../scripts/nested-lib.sh
source "$repo/scripts/nested-lib.sh"

build=$repo/build
runs=3
cpus=2
memory=512M
cache=${SHOJI_CACHE:-$repo/.cache}
marker=SHOJI-INIT-REACHED
limit=300

die() { echo "bench/boot-nested: $*" >&2; exit 1; }
usage_error() { echo "bench/boot-nested: $*" >&2; exit 2; }

parse_args() {
    while (($#)); do
        case $1 in
            -n|--runs) runs=${2:?}; shift 2 ;;
            --cpus) cpus=${2:?}; shift 2 ;;
            --memory) memory=${2:?}; shift 2 ;;
            -h|--help) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
            -*) usage_error "unknown option '$1'" ;;
            *) build=$1; shift ;;
        esac
    done
    [[ $runs =~ ^[1-9][0-9]*$ ]] || usage_error "-n needs a positive integer, not '$runs'"
    [[ $cpus =~ ^[1-9][0-9]*$ ]] || usage_error "--cpus needs a positive integer, not '$cpus'"
    [[ $memory =~ ^[1-9][0-9]*[MG]$ ]] || usage_error "--memory needs NM or NG, not '$memory'"
}

pick_mode() {
    case ${SHOJI_BENCH_MODE:-} in
        native|nested) mode=$SHOJI_BENCH_MODE ;;
        '') if nested_native_kvm_ok; then mode=native; else mode=nested; fi ;;
        *) usage_error "SHOJI_BENCH_MODE must be native or nested" ;;
    esac
}

# Writes the job: RUNS rounds of shoji then QEMU, each a time_boot record.
# KERNEL INITRD SHOJI QEMU are the paths as the job will see them.
write_job() {
    local job=$1 kernel=$2 initrd=$3 shoji=$4 qemu=$5 i args
    args="--kernel $kernel --initrd $initrd --cmdline 'console=ttyS0 quiet panic=-1 shoji.action=poweroff' --cpus $cpus --memory $memory"
    : >"$job"
    for ((i = 1; i <= runs; i++)); do
        echo "time_boot shoji-$i $limit $marker $shoji $args" >>"$job"
        echo "time_boot qemu-$i $limit $marker $qemu $args" >>"$job"
    done
}

# good_ms WHO: the times of WHO's clean runs, from @@BOOTTIME records on stdin.
good_ms() { awk -v who="$1" '$2 ~ "^" who "-" && / rc=0 / && $3 ~ /^ms=[0-9]+$/ { sub(/^ms=/, "", $3); print $3 }'; }

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print -1; else if (NR % 2) print v[(NR + 1) / 2]; else print int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

# Prints every run and the medians; fails if a run never reached /init.
summarise() {
    local file=$1 who ms rc line records bad=0 med_shoji med_qemu
    records=$(grep -a '^@@BOOTTIME ' "$file" | tr -d '\r' || true)
    [[ -n $records ]] || { echo "bench/boot-nested: no measurements in $file" >&2; return 1; }
    echo "run         exec->/init   exit"
    while read -r line; do
        who=$(awk '{ print $2 }' <<<"$line")
        ms=$(grep -o 'ms=[-0-9]*' <<<"$line" | cut -d= -f2)
        rc=$(grep -o 'rc=[0-9]*' <<<"$line" | cut -d= -f2)
        printf '%-10s %9s ms   %s\n' "$who" "$ms" "$rc"
        if [[ $ms == -1 || $rc != 0 ]]; then bad=1; fi
    done <<<"$records"
    # Medians over the runs that reached /init and powered off cleanly.
    med_shoji=$(good_ms shoji <<<"$records" | median)
    med_qemu=$(good_ms qemu <<<"$records" | median)
    echo "median      shoji-vmm ${med_shoji} ms, qemu microvm ${med_qemu} ms ($mode, $cpus vCPU, $memory)"
    if ((med_shoji > 0 && med_qemu > 0)); then
        awk -v s="$med_shoji" -v q="$med_qemu" 'BEGIN { printf "ratio       shoji/qemu = %.2f\n", s / q }'
    fi
    ((bad == 0)) && return 0
    echo "bench/boot-nested: some runs did not reach /init or did not power off cleanly:" >&2
    grep -a -E '^(out|err)-[a-z]+-[0-9]+\|' "$file" | tr -d '\r' | sed 's/^/    /' >&2
    return 1
}

main() {
    parse_args "$@"
    build=$(cd "$build" && pwd)
    [[ -x $build/shoji-vmm ]] || die "no $build/shoji-vmm: run 'make' first"
    command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found (Debian package qemu-system-x86)"
    pick_mode
    "$repo/scripts/fetch-guest.sh" "$cache"
    local work=$build/bench-nested
    mkdir -p "$work/runner"
    "$repo/scripts/guest-initramfs.sh" "$work/initrd.cpio.gz" "$cache"
    local results=$work/results.log
    echo "bench/boot-nested: mode $mode, $runs runs each"
    if [[ $mode == native ]]; then
        write_job "$work/job.sh" "$cache/vmlinuz" "$work/initrd.cpio.gz" "$build/shoji-vmm" "$repo/scripts/nested-qemu-standin.sh"
        nested_bench_here "$work"
    else
        write_job "$work/job.sh" /l2/vmlinuz /l2/initrd.cpio.gz /bin/shoji-vmm /bin/qemu-standin
        nested_bench_l1 bench/boot-nested "$cache" "$work" "$(nested_l1_cpus "$cpus")" \
            "$((limit + 60))" "$((2 * runs))" EXE "$build/shoji-vmm:/bin/shoji-vmm" QEMU ||
            die "L1 did not finish"
    fi
    summarise "$results"
}

main "$@"
