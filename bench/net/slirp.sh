#!/usr/bin/env bash
# bench/net/slirp.sh: the user-mode network (--net user, libslirp) as a
# guest sees it, with iperf3. A stock guest (Debian's cloud kernel, the test
# initramfs with iperf3 in it) takes an address over DHCP and runs iperf3
# against a server on the VMM host's loopback (10.0.2.2), guest to host (tx)
# and host to guest (rx, -R), under shoji-vmm and under QEMU (-enable-kvm -M
# microvm,pcie=on, virtio-net-pci on QEMU's own libslirp), same kernel,
# initrd, vCPUs and memory, alternating per round; and iperf3 over the host's
# own loopback in the same rounds (what no VM costs).
#
# Usage: bench/net/slirp.sh [BUILD_DIR] [-n ROUNDS] [-t SECONDS] [--cpus N]
#   BUILD_DIR defaults to build; 3 rounds; 10 s per direction and run; 1
#   vCPU. SHOJI_BENCH_MODE=native|nested forces the mode (default: native
#   when the host CPU has vmx/svm and /dev/kvm works, else nested: everything
#   runs inside one L1 Linux under QEMU's software CPU).
#
# Prints, per direction, the median Mbit/s of each side and the ratios
# shoji/QEMU and shoji/loopback (median of the rounds' own ratios, with
# their range). Nested, the CPU is TCG's: read the shoji/QEMU ratio (both
# VMMs pay the same emulation), not the Mbit/s. Needs iperf3 and
# qemu-system-x86_64 (Debian packages iperf3, qemu-system-x86).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=../../scripts/nested-lib.sh
source "$repo/scripts/nested-lib.sh"

build=$repo/build
rounds=3
seconds=10
cpus=1
memory=512M
cache=${SHOJI_CACHE:-$repo/.cache}

die() { echo "bench/net/slirp: $*" >&2; exit 1; }
usage_error() { echo "bench/net/slirp: $*" >&2; exit 2; }

parse_args() {
    while (($#)); do
        case $1 in
            -n|--rounds) rounds=${2:?}; shift 2 ;;
            -t|--time) seconds=${2:?}; shift 2 ;;
            --cpus) cpus=${2:?}; shift 2 ;;
            -h|--help) sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
            -*) usage_error "unknown option '$1' (see --help)" ;;
            *) build=$1; shift ;;
        esac
    done
    [[ $rounds =~ ^[1-9][0-9]*$ ]] || usage_error "-n needs a positive integer, not '$rounds'"
    [[ $seconds =~ ^[1-9][0-9]*$ ]] || usage_error "-t needs a positive integer of seconds, not '$seconds'"
    [[ $cpus =~ ^[1-9][0-9]*$ ]] || usage_error "--cpus needs a positive integer, not '$cpus'"
}

pick_mode() {
    case ${SHOJI_BENCH_MODE:-} in
        native|nested) mode=$SHOJI_BENCH_MODE ;;
        '') if nested_native_kvm_ok; then mode=native; else mode=nested; fi ;;
        *) usage_error "SHOJI_BENCH_MODE must be native or nested, not '$SHOJI_BENCH_MODE'" ;;
    esac
}

# The seconds a guest run may take: a nested boot, DHCP and two iperf3 runs.
case_limit() { echo $((180 + 3 * seconds)); }

# Writes the job (POSIX sh, sourced after scripts/nested-runner.sh): an
# iperf3 server on the loopback, then per round a loopback measurement
# (@@IPERF record) and one guest under each VMM, the first VMM alternating.
# KERNEL INITRD SHOJI QEMU IPERF are the paths as the job will see them.
write_job() {
    local job=$1 kernel=$2 initrd=$3 shoji=$4 qemu=$5 iperf=$6 i order who vmm args
    args="--kernel $kernel --initrd $initrd --cmdline 'console=ttyS0 quiet panic=-1 shoji.action=iperf shoji.iperf=$seconds' --cpus $cpus --memory $memory --net user,host-loopback=on"
    cat >"$job" <<EOF
$iperf -s -B 127.0.0.1 >"\$RUNNER_WORK/iperf-server.log" 2>&1 &
iperf_server=\$!
sleep 1
loopback_mbits() {
    $iperf -c 127.0.0.1 -t $seconds -f m "\$@" 2>&1 |
        awk '/receiver/ { for (i = 2; i <= NF; i++) if (\$i == "Mbits/sec") print \$(i - 1) }'
}
EOF
    for ((i = 1; i <= rounds; i++)); do
        echo "emit \"@@IPERF loopback-$i tx=\$(loopback_mbits) rx=\$(loopback_mbits -R)\"" >>"$job"
        order="shoji qemu"
        ((i % 2 == 0)) && order="qemu shoji"
        for who in $order; do
            vmm=$shoji
            [[ $who == qemu ]] && vmm=$qemu
            echo "L2_VMM=$vmm; run_case $who-$i $(case_limit) $args" >>"$job"
        done
    done
    echo "kill \"\$iperf_server\" 2>/dev/null" >>"$job"
}

# report_value FILE CASE KEY: the SHOJI-REPORT KEY=value lines of CASE's
# console in the results stream.
report_value() {
    tr -d '\r' <"$1" | awk -v c="$2" -v k="SHOJI-REPORT $3=" '
        $0 == "@@CASE " c { on = 1; next }
        /^@@END / { on = 0 }
        on && index($0, k) { v = substr($0, index($0, k) + length(k)) }
        END { print v }'
}

loopback_value() {
    tr -d '\r' <"$1" | awk -v c="loopback-$2" -v k="$3=" '$1 == "@@IPERF" && $2 == c {
        for (i = 3; i <= NF; i++) if (index($i, k) == 1) print substr($i, length(k) + 1) }'
}

is_number() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]] && [[ ! $1 =~ ^0+(\.0+)?$ ]]; }

# Prints median (low-high) of the numbers on stdin, or "-".
median_range() {
    sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "-"; exit }
        m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%.2f (%.2f-%.2f)\n", m, v[1], v[NR] }'
}
median() { median_range | awk '{ print $1 }'; }

# Prints the table; fails if any guest run did not give both figures.
summarise() {
    local file=$1 dir i s q l bad=0
    local -a shoji_v qemu_v loop_v sq sl
    printf '%-18s %12s %12s %12s  %-20s %-20s\n' direction "shoji Mb/s" "QEMU Mb/s" "loopback" "shoji/QEMU" "shoji/loopback"
    for dir in tx rx; do
        shoji_v=() qemu_v=() loop_v=() sq=() sl=()
        for ((i = 1; i <= rounds; i++)); do
            s=$(report_value "$file" "shoji-$i" "iperf-$dir")
            q=$(report_value "$file" "qemu-$i" "iperf-$dir")
            l=$(loopback_value "$file" "$i" "$dir")
            is_number "$s" || { echo "bench/net/slirp: shoji round $i $dir: '${s:-no report}'" >&2; bad=1; }
            is_number "$q" || { echo "bench/net/slirp: QEMU round $i $dir: '${q:-no report}'" >&2; bad=1; }
            is_number "$l" || { echo "bench/net/slirp: loopback round $i $dir: '${l:-no figure}'" >&2; bad=1; }
            is_number "$s" && shoji_v+=("$s")
            is_number "$q" && qemu_v+=("$q")
            is_number "$l" && loop_v+=("$l")
            is_number "$s" && is_number "$q" && sq+=("$(awk -v a="$s" -v b="$q" 'BEGIN { print a / b }')")
            is_number "$s" && is_number "$l" && sl+=("$(awk -v a="$s" -v b="$l" 'BEGIN { print a / b }')")
        done
        printf '%-18s %12s %12s %12s  %-20s %-20s\n' \
            "$([[ $dir == tx ]] && echo "tx guest->host" || echo "rx host->guest")" \
            "$(printf '%s\n' "${shoji_v[@]}" | grep . | median)" \
            "$(printf '%s\n' "${qemu_v[@]}" | grep . | median)" \
            "$(printf '%s\n' "${loop_v[@]}" | grep . | median)" \
            "$(printf '%s\n' "${sq[@]}" | grep . | median_range)" \
            "$(printf '%s\n' "${sl[@]}" | grep . | median_range)"
    done
    ((bad == 0)) && return 0
    echo "bench/net/slirp: some runs gave no figure; the consoles are in $file" >&2
    return 1
}

main() {
    parse_args "$@"
    [[ -d $build ]] || die "no build folder '$build': run 'make' first"
    build=$(cd "$build" && pwd)
    [[ -x $build/shoji-vmm ]] || die "no $build/shoji-vmm: run 'make' first"
    command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"
    local iperf
    iperf=$(command -v iperf3) || die "iperf3 not found (apt-get install iperf3)"
    pick_mode
    "$repo/scripts/fetch-guest.sh" "$cache"
    local work=$build/bench-slirp
    mkdir -p "$work/runner"
    "$repo/scripts/guest-initramfs.sh" "$work/initrd.cpio.gz" "$cache" "$iperf"
    local results=$work/results.log
    echo "bench/net/slirp: mode $mode, $rounds rounds of $seconds s per direction, $cpus vCPU, $memory"
    if [[ $mode == native ]]; then
        write_job "$work/job.sh" "$cache/vmlinuz" "$work/initrd.cpio.gz" "$build/shoji-vmm" \
            "$repo/scripts/nested-qemu-standin.sh" "$iperf"
        nested_bench_here "$work"
    else
        write_job "$work/job.sh" /l2/vmlinuz /l2/initrd.cpio.gz /bin/shoji-vmm /bin/qemu-standin /bin/iperf3
        nested_bench_l1 bench/net/slirp "$cache" "$work" "$(nested_l1_cpus "$cpus")" \
            "$(($(case_limit) + 2 * seconds + 60))" "$((2 * rounds))" \
            EXE "$build/shoji-vmm:/bin/shoji-vmm" EXE "$iperf:/bin/iperf3" QEMU ||
            die "L1 did not finish"
    fi
    summarise "$results"
}

main "$@"
