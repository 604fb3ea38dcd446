#!/usr/bin/env bash
# Native boot benchmark: shoji-vmm against QEMU (-M microvm and -M q35) on this
# host's /dev/kvm, with the same kernel, initrd, command line, memory and vCPUs
# and the same method for every program. bench/README.md says how to read it.
#
# Each round runs every program twice, in this order: shoji, microvm, q35
# (after --warmup untimed rounds):
#   strace run   under `strace -f -ttt --seccomp-bpf -e trace=execve,ioctl`:
#                startup = time of the first ioctl(..., KVM_RUN) - time of execve.
#                SETTLE seconds after that KVM_RUN, /proc/PID/smaps is read:
#                own memory = RSS - Rss of the guest RAM mapping (the anonymous
#                mapping whose size is --memory). Then the VMM is stopped.
#   preload run  no tracer: bash takes $EPOCHREALTIME and execs the VMM with
#                LD_PRELOAD=bench/boot/kvmrun-stamp.so, which stamps the first
#                ioctl(KVM_RUN) in-process. strace stops the tracee at every
#                ioctl, which costs a program with many ioctls (QEMU) more than
#                one with few; this run shows the startup without that cost.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${SHOJI_CACHE:-$repo/.cache}
benchcache=$cache/bench

runs=10
warmup=1
settle=1
memory=256M
cpus=2
cmdline="console=ttyS0 panic=-1"
programs="shoji,microvm,q35"
methods="strace,preload"
vmm=$repo/build/shoji-vmm
qemu="qemu-system-x86_64"
kernel=
initrd=
keep=
timeout_s=30

usage() {
    cat <<USAGE
Usage: bench/boot.sh [options]

Measures, natively on /dev/kvm, for shoji-vmm and QEMU (-M microvm, -M q35):
the time from exec to the first KVM_RUN ioctl, and the VMM's own resident
memory (RSS minus the guest RAM the guest touched). Prints every run, the
medians and the ratios shoji / QEMU.

Options:
  -n, --runs N        measured rounds (default $runs)
      --warmup N      untimed rounds before them (default $warmup)
      --settle SECS   read memory this long after the first KVM_RUN (default $settle)
      --memory SIZE   guest RAM, N (MiB), NM or NG (default $memory)
      --cpus N        vCPUs (default $cpus)
      --programs LIST comma-separated subset of shoji,microvm,q35 (default all)
      --methods LIST  strace, preload or both (default $methods); memory is
                      read in the strace run, or in the preload run if alone
      --kernel PATH   guest kernel (default \$CACHE/vmlinuz, fetched if missing)
      --initrd PATH   initrd (default \$CACHE/bench/initrd.cpio.gz, built if missing)
      --vmm PATH      shoji-vmm binary (default build/shoji-vmm)
      --qemu PATH     QEMU binary (default qemu-system-x86_64)
      --keep DIR      copy the strace logs, smaps and VMM output to DIR
  -h, --help          this text

CACHE is \${SHOJI_CACHE:-<repo>/.cache}. Needs read/write access to /dev/kvm,
strace, QEMU, awk and a C compiler (cc); cpio and gzip to build the initrd.
USAGE
}

die() { echo "bench/boot: $*" >&2; exit 1; }
note() { echo "bench/boot: $*" >&2; }
usage_error() { echo "bench/boot: $*" >&2; exit 2; }

need_value() { [[ $# -ge 2 && -n $2 ]] || usage_error "option $1 needs a value"; }

while [[ $# -gt 0 ]]; do
    case $1 in
        -n|--runs) need_value "$@"; runs=$2; shift 2 ;;
        --warmup) need_value "$@"; warmup=$2; shift 2 ;;
        --settle) need_value "$@"; settle=$2; shift 2 ;;
        --memory) need_value "$@"; memory=$2; shift 2 ;;
        --cpus) need_value "$@"; cpus=$2; shift 2 ;;
        --programs) need_value "$@"; programs=$2; shift 2 ;;
        --methods) need_value "$@"; methods=$2; shift 2 ;;
        --kernel) need_value "$@"; kernel=$2; shift 2 ;;
        --initrd) need_value "$@"; initrd=$2; shift 2 ;;
        --vmm) need_value "$@"; vmm=$2; shift 2 ;;
        --qemu) need_value "$@"; qemu=$2; shift 2 ;;
        --keep) need_value "$@"; keep=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; usage_error "unknown option '$1'" ;;
    esac
done

[[ $runs =~ ^[1-9][0-9]*$ ]] || usage_error "--runs must be a positive integer, not '$runs'"
[[ $warmup =~ ^[0-9]+$ ]] || usage_error "--warmup must be an integer >= 0, not '$warmup'"
[[ $settle =~ ^[0-9]+(\.[0-9]+)?$ ]] || usage_error "--settle must be a number of seconds, not '$settle'"
[[ $cpus =~ ^[1-9][0-9]*$ ]] || usage_error "--cpus must be a positive integer, not '$cpus'"
case $memory in
    *[Gg]) mem_mib=${memory%[Gg]}; [[ $mem_mib =~ ^[1-9][0-9]*$ ]] && mem_mib=$(( mem_mib * 1024 )) ;;
    *[Mm]) mem_mib=${memory%[Mm]} ;;
    *) mem_mib=$memory ;;
esac
[[ $mem_mib =~ ^[1-9][0-9]*$ ]] || usage_error "--memory must be N, NM or NG, not '$memory'"
mem_kib=$(( mem_mib * 1024 ))

declare -a progs=() wanted=()
IFS=, read -r -a wanted <<<"$programs"
for p in "${wanted[@]}"; do
    case $p in
        shoji|microvm|q35) progs+=("$p") ;;
        *) usage_error "unknown program '$p' in --programs (shoji, microvm, q35)" ;;
    esac
done
[[ ${#progs[@]} -gt 0 ]] || usage_error "--programs is empty"

use_strace=
use_preload=
IFS=, read -r -a wanted <<<"$methods"
for m in "${wanted[@]}"; do
    case $m in
        strace) use_strace=1 ;;
        preload) use_preload=1 ;;
        *) usage_error "unknown method '$m' in --methods (strace, preload)" ;;
    esac
done
[[ -n $use_strace$use_preload ]] || usage_error "--methods is empty"

# ---------------------------------------------------------------- tools ----
need_tool() {
    command -v "$1" >/dev/null 2>&1 || die "'$1' not found: $2"
}
need_tool awk "install it with 'apt-get install gawk' (or mawk)"
if [[ -n $use_strace ]]; then
    need_tool strace "install it with 'apt-get install strace'"
    strace -f --seccomp-bpf -e trace=execve -o /dev/null true 2>/dev/null ||
        die "this strace lacks --seccomp-bpf (need strace >= 5.3)"
fi
[[ -z $use_preload ]] || need_tool cc "install it with 'apt-get install gcc' (needed for bench/boot/kvmrun-stamp.c)"
for p in "${progs[@]}"; do
    case $p in
        shoji) [[ -x $vmm ]] || die "no shoji-vmm at $vmm: run 'make' first (or pass --vmm)" ;;
        *) need_tool "$qemu" "install it with 'apt-get install qemu-system-x86' (or pass --qemu)" ;;
    esac
done
[[ -c /dev/kvm ]] || die "/dev/kvm does not exist: this benchmark runs natively on KVM"
[[ -r /dev/kvm && -w /dev/kvm ]] || die "no read/write access to /dev/kvm (run as root or join group kvm)"

# ---------------------------------------------------------------- guest ----
# Kernel: --kernel, else $CACHE/vmlinuz (scripts/fetch-guest.sh puts it there),
# else this script's own copy in $CACHE/bench, fetched from Debian's archive.
fetch_deb() { # PKG DIR: apt-get download PKG and unpack it into DIR/root
    local pkg=$1 dir=$2 deb log
    log=$(cd "$dir" && apt-get download "$pkg" 2>&1) ||
        die "apt-get download $pkg failed (run 'apt-get update' first?): $(printf '%s\n' "$log" | tail -n1)"
    deb=$(find "$dir" -maxdepth 1 -name "${pkg}_*.deb" | head -n1)
    [[ -n $deb ]] || die "apt-get download $pkg produced no .deb"
    dpkg-deb -x "$deb" "$dir/root"
}

fetch_kernel() {
    local pkg tmp img
    need_tool apt-get "cannot fetch the Debian kernel; pass --kernel"
    pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
          awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
    [[ -n $pkg ]] || die "cannot resolve linux-image-cloud-amd64 with apt-cache (run 'apt-get update' first)"
    note "downloading $pkg into $benchcache"
    mkdir -p "$benchcache"
    tmp=$(mktemp -d "$benchcache/.kernel.XXXXXX")
    fetch_deb "$pkg" "$tmp"
    img=$(find "$tmp/root/boot" -maxdepth 1 -name 'vmlinuz-*' | head -n1)
    [[ -n $img ]] || die "$pkg has no boot/vmlinuz-*"
    mv "$img" "$benchcache/vmlinuz"
    rm -rf "$tmp"
}

find_kernel() {
    [[ -z $kernel ]] || { [[ -r $kernel ]] || die "cannot read --kernel $kernel"; return; }
    if [[ ! -f $cache/vmlinuz && ! -f $benchcache/vmlinuz && -x $repo/scripts/fetch-guest.sh ]]; then
        note "no kernel in $cache: running scripts/fetch-guest.sh"
        "$repo/scripts/fetch-guest.sh" "$cache" || note "scripts/fetch-guest.sh failed; fetching the kernel myself"
    fi
    if [[ -f $cache/vmlinuz ]]; then
        kernel=$cache/vmlinuz
    else
        [[ -f $benchcache/vmlinuz ]] || fetch_kernel
        kernel=$benchcache/vmlinuz
    fi
}

find_busybox() { # prints the path of a static busybox
    local tmp
    for b in "$cache/busybox" "$benchcache/busybox"; do
        [[ -x $b ]] && { echo "$b"; return; }
    done
    need_tool apt-get "cannot fetch busybox-static; pass --initrd"
    note "downloading busybox-static into $benchcache"
    mkdir -p "$benchcache"
    tmp=$(mktemp -d "$benchcache/.busybox.XXXXXX")
    fetch_deb busybox-static "$tmp"
    [[ -x $tmp/root/bin/busybox ]] || die "busybox-static has no bin/busybox"
    mv "$tmp/root/bin/busybox" "$benchcache/busybox"
    rm -rf "$tmp"
    echo "$benchcache/busybox"
}

# A gzip newc cpio: static busybox, its applet links, an /init that powers off.
# Its content barely matters here (the guest gets only ~1 s of emulated CPU
# on this host); it is the same file for every program.
build_initrd() {
    local out=$benchcache/initrd.cpio.gz busybox root applet
    need_tool cpio "install it with 'apt-get install cpio' (or pass --initrd)"
    need_tool gzip "install it with 'apt-get install gzip' (or pass --initrd)"
    busybox=$(find_busybox)
    mkdir -p "$benchcache"
    root=$(mktemp -d "$benchcache/.initrd.XXXXXX")
    mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev"
    install -m 0755 "$busybox" "$root/bin/busybox"
    for applet in $("$busybox" --list); do
        [[ $applet == busybox ]] || ln -s busybox "$root/bin/$applet"
    done
    cat >"$root/init" <<'EOF'
#!/bin/sh
# bench/boot initrd: say where we are, then power off.
mount -t proc proc /proc
echo "bench-init: up $(cut -d' ' -f1 /proc/uptime)s, $(grep -c ^processor /proc/cpuinfo) cpus"
poweroff -f
EOF
    chmod 0755 "$root/init"
    (cd "$root" && find . -print0 | LC_ALL=C sort -z |
        cpio --null -o -H newc -R 0:0 --quiet) | gzip -9 >"$out.tmp"
    mv "$out.tmp" "$out"
    rm -rf "$root"
}

find_initrd() {
    [[ -z $initrd ]] || { [[ -r $initrd ]] || die "cannot read --initrd $initrd"; return; }
    initrd=$benchcache/initrd.cpio.gz
    [[ -s $initrd ]] || { note "building $initrd"; build_initrd; }
}

find_kernel
find_initrd

# ------------------------------------------------------------- children ----
work=$(mktemp -d "${TMPDIR:-/tmp}/shoji-bench-boot.XXXXXX")
job_pid=    # the background job of the current run: strace, or the VMM itself
vmm_pid=    # the VMM of the current run, once known

stop_run() { # stop the VMM of the current run and reap its job
    local i
    if [[ -n $vmm_pid ]]; then
        kill -TERM "$vmm_pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$vmm_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$vmm_pid" 2>/dev/null || true
    fi
    if [[ -n $job_pid ]]; then
        for ((i = 0; i < 50; i++)); do
            kill -0 "$job_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$job_pid" 2>/dev/null || true
        wait "$job_pid" 2>/dev/null || true
    fi
    vmm_pid=
    job_pid=
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_run
    if [[ -n $keep ]]; then
        mkdir -p "$keep" && cp -a "$work/." "$keep/" && note "logs kept in $keep"
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

shim=
if [[ -n $use_preload ]]; then
    shim=$work/kvmrun-stamp.so
    cc -O2 -Wall -shared -fPIC -o "$shim" "$repo/bench/boot/kvmrun-stamp.c" -ldl ||
        die "cannot build bench/boot/kvmrun-stamp.c"
fi

# ------------------------------------------------------------------ runs ----
command_for() { # PROG: sets cmd=(...)
    case $1 in
        shoji)
            cmd=("$vmm" --kernel "$kernel" --initrd "$initrd" --cmdline "$cmdline"
                 --cpus "$cpus" --memory "${mem_mib}M" --serial off) ;;
        microvm|q35)
            cmd=("$(command -v "$qemu")" -M "$1" -enable-kvm -cpu host -smp "$cpus" -m "${mem_mib}M"
                 -kernel "$kernel" -initrd "$initrd" -append "$cmdline"
                 -nodefaults -no-user-config -display none -serial null) ;;
    esac
}

# strace log -> "pid t_exec t_kvm_run n_ioctl_before" once the first KVM_RUN
# is in it (the VMM's own execve is the first successful one).
parse_trace() {
    awk '
        !pid && / execve\(/ && !/ = -1 / { pid = $1; texec = $2; next }
        pid && / ioctl\([0-9]+, KVM_RUN/ { print pid, texec, $2, n; exit }
        pid && / ioctl\(/ { n++ }
    ' "$1"
}

# stamp file (and the VMM's output, where the helper writes if it must)
# -> "t_exec t_kvm_run" once the helper has written its line.
parse_stamp() { # STAMP LOG
    awk '$1 == "exec" { e = $2 } $1 == "kvm_run" { r = $2 } $1 == "bench/boot:" && $2 == "kvm_run" { r = $3 }
         END { if (e && r) print e, r }' "$1" "$2"
}

# /proc/PID/smaps -> KiB: "rss guest own_anon own_file images n_guest_maps".
# guest: Rss of the anonymous mapping (no path) whose Size is exactly the
# guest memory. own_anon/own_file: the rest of RSS, anonymous or not.
# images: Rss of mappings of the kernel or initrd file (part of own_file).
parse_smaps() { # SMAPS MEM_KIB
    awk -v mem="$2" -v k="$kernel" -v i="$initrd" '
        function flush() {
            if (!have) return
            rss += r
            if (path == "" && size == mem) { guest += r; ng++ } else { an += a; fl += r - a }
            if (path != "" && (path == k || path == i)) img += r
        }
        /^[0-9a-f]+-[0-9a-f]+ / {
            flush(); have = 1; size = r = a = 0; path = ""
            for (j = 6; j <= NF; j++) path = path (j > 6 ? " " : "") $j
            next
        }
        /^Size:/ { size = $2 }
        /^Rss:/ { r = $2 }
        /^Anonymous:/ { a = $2 }
        END { flush(); printf "%d %d %d %d %d %d\n", rss, guest, an, fl, img, ng }
    ' "$1"
}

vmm_output() { tail -n3 "$1" | tr '\n' ' '; }

# One run of PROG by METHOD (strace|preload); if SAMPLE is 1, also reads the
# memory. Sets run_ms, run_ioctls (or -) and run_mem ("own rss guest anon file
# images", or empty). Not called in a subshell, so that the EXIT trap sees the
# pids it starts.
run_ms='' run_ioctls='' run_mem=''
one_run() { # PROG METHOD SAMPLE TAG
    local prog=$1 method=$2 sample=$3 tag=$4.$2
    local log=$work/$tag.log smaps=$work/$tag.smaps out=$work/$tag.trace
    local info deadline t_exec t_run pid n wait_s mem rss guest anon file img ng
    local -a cmd
    command_for "$prog"
    : >"$out"
    : >"$log"
    if [[ $method == strace ]]; then
        strace -f -qq -ttt --seccomp-bpf -e trace=execve,ioctl -e signal=none -o "$out" \
            -- "${cmd[@]}" </dev/null >"$log" 2>&1 &
        job_pid=$!
    else
        (
            printf 'exec %s\n' "$EPOCHREALTIME" >"$out"
            BENCH_KVM_RUN_STAMP=$out LD_PRELOAD=$shim exec "${cmd[@]}"
        ) </dev/null >"$log" 2>&1 &
        job_pid=$!
        vmm_pid=$job_pid
    fi
    deadline=$(( ${EPOCHREALTIME%.*} + timeout_s ))
    while :; do
        if [[ $method == strace ]]; then info=$(parse_trace "$out"); else info=$(parse_stamp "$out" "$log"); fi
        [[ -z $info ]] || break
        kill -0 "$job_pid" 2>/dev/null ||
            die "$tag: ${cmd[0]} exited before its first KVM_RUN; its output: $(vmm_output "$log")"
        (( ${EPOCHREALTIME%.*} < deadline )) ||
            die "$tag: no KVM_RUN seen within ${timeout_s}s (see $out with --keep)"
        sleep 0.01
    done
    if [[ $method == strace ]]; then
        read -r pid t_exec t_run n <<<"$info"
        vmm_pid=$pid
        run_ioctls=$n
    else
        read -r t_exec t_run <<<"$info"
        pid=$vmm_pid
        run_ioctls=-
    fi
    run_ms=$(awk -v e="$t_exec" -v r="$t_run" 'BEGIN { printf "%.3f", (r - e) * 1000 }')
    run_mem=
    if [[ $sample == 1 ]]; then
        # SETTLE seconds after the first KVM_RUN: same clock as strace -ttt.
        wait_s=$(awk -v s="$settle" -v r="$t_run" -v n="$EPOCHREALTIME" \
            'BEGIN { w = s - (n - r); printf "%.3f", (w > 0 ? w : 0) }')
        sleep "$wait_s"
        kill -0 "$pid" 2>/dev/null ||
            die "$tag: ${cmd[0]} exited within ${settle}s of its first KVM_RUN; its output: $(vmm_output "$log")"
        cat "/proc/$pid/smaps" >"$smaps" 2>/dev/null || die "$tag: cannot read /proc/$pid/smaps"
        read -r rss guest anon file img ng <<<"$(parse_smaps "$smaps" "$mem_kib")"
        [[ $ng -eq 1 ]] ||
            die "$tag: expected one anonymous ${mem_mib} MiB guest RAM mapping in /proc/$pid/smaps, found $ng"
        run_mem="$(( rss - guest )) $rss $guest $anon $file $img"
    fi
    stop_run
}

label() {
    case $1 in
        shoji) echo "shoji-vmm" ;;
        microvm) echo "qemu -M microvm" ;;
        q35) echo "qemu -M q35" ;;
    esac
}

# One round: each program by each method, memory read in the first method.
# Appends "prog strace_ms preload_ms ioctls own rss guest anon file images"
# to $results (- where not measured) and prints it, unless this is a warm-up.
results=$work/results
: >"$results"
round() { # N (<= 0: warm-up)
    local n=$1 p s_ms p_ms nio mem line
    for p in "${progs[@]}"; do
        s_ms=- p_ms=- nio=- mem=''
        if [[ -n $use_strace ]]; then
            one_run "$p" strace 1 "$p.$n"
            s_ms=$run_ms nio=$run_ioctls mem=$run_mem
        fi
        if [[ -n $use_preload ]]; then
            one_run "$p" preload "$([[ -n $use_strace ]] && echo 0 || echo 1)" "$p.$n"
            p_ms=$run_ms
            [[ -n $mem ]] || mem=$run_mem
        fi
        (( n > 0 )) || continue
        line="$p $s_ms $p_ms $nio $mem"
        echo "$line" >>"$results"
        # shellcheck disable=SC2086 # split the fields on purpose
        set -- $line
        printf '%-16s %4d %10s %10s %7s %9s %9s %9s %9s %9s %9s\n' \
            "$(label "$p")" "$n" "$2" "$3" "$4" "$5" "$6" "$7" "$8" "$9" "${10}"
    done
}

# ---------------------------------------------------------------- header ----
qemu_version=
for p in "${progs[@]}"; do
    [[ $p == shoji ]] || { qemu_version=$("$qemu" --version | head -n1); break; }
done
echo "== bench/boot: native boot benchmark on this host's /dev/kvm =="
echo "host:    $(uname -r), $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
if [[ -d /sys/module/kvm_pvm ]]; then
    echo "kvm:     kvm_pvm (paravirtual: stock guests run by slow emulation here, so guest-side"
    echo "         boot speed on this host is NOT a performance figure; only VMM-side startup is)"
fi
echo "guest:   kernel $kernel ($(stat -c %s "$kernel") B)"
echo "         initrd $initrd ($(stat -c %s "$initrd") B)"
echo "         memory ${mem_mib} MiB, $cpus vCPUs, cmdline \"$cmdline\""
echo "shoji:   $vmm --serial off"
[[ -z $qemu_version ]] || echo "qemu:    $qemu_version, -enable-kvm -cpu host -nodefaults -display none -serial null"
echo "startup: exec -> first ioctl(KVM_RUN), in ms;"
[[ -z $use_strace ]] || echo "         strace:  strace -f -qq -ttt --seccomp-bpf -e trace=execve,ioctl -e signal=none (stops at every ioctl)"
[[ -z $use_preload ]] || echo "         preload: no tracer; \$EPOCHREALTIME before exec, LD_PRELOAD stamp at the first KVM_RUN"
echo "memory:  /proc/PID/smaps ${settle}s after the first KVM_RUN, in KiB; own = RSS - guest RAM mapping's Rss"
echo "rounds:  $runs (+$warmup warm-up), each running every program in turn"
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) at start (other work on this host adds noise)"
echo
printf '%-16s %4s %10s %10s %7s %9s %9s %9s %9s %9s %9s\n' program run "strace ms" "preload ms" ioctls \
    "own KiB" "RSS KiB" "guest KiB" "anon KiB" "file KiB" "image KiB"
for ((r = 1 - warmup; r <= runs; r++)); do
    round "$r"
done

# --------------------------------------------------------------- summary ----
median() { # PROG FIELD -> median of that column, or -
    awk -v p="$1" -v f="$2" '$1 == p && $f != "-" && $f != "" { print $f }' "$results" | sort -g |
        awk '{ v[NR] = $1 } END { if (!NR) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
range() { # PROG FIELD -> "min-max", or -
    awk -v p="$1" -v f="$2" '$1 == p && $f != "-" { print $f }' "$results" | sort -g |
        awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR) printf "%.1f-%.1f", lo, hi; else print "-" }'
}
minimum() { # PROG FIELD -> smallest value of that column, or -
    awk -v p="$1" -v f="$2" '$1 == p && $f != "-" { print $f }' "$results" | sort -g |
        awk 'NR == 1 { print; found = 1 } END { if (!found) print "-" }'
}
ms() { awk -v v="$1" 'BEGIN { if (v == "-") print "-"; else printf "%.1f", v }'; }
mib() { awk -v v="$1" 'BEGIN { if (v == "-") print "-"; else printf "%.2f", v / 1024 }'; }

declare -A med_s med_p med_own
echo
echo "== medians of $runs rounds (startup in ms, memory in MiB) =="
printf '%-16s %9s %13s %10s %13s %8s %8s %8s %8s %8s %8s\n' program strace "(min-max)" preload "(min-max)" \
    own RSS guest "own anon" "own file" images
for p in "${progs[@]}"; do
    med_s[$p]=$(median "$p" 2)
    med_p[$p]=$(median "$p" 3)
    med_own[$p]=$(median "$p" 5)
    printf '%-16s %9s %13s %10s %13s %8s %8s %8s %8s %8s %8s\n' "$(label "$p")" \
        "$(ms "${med_s[$p]}")" "($(range "$p" 2))" "$(ms "${med_p[$p]}")" "($(range "$p" 3))" \
        "$(mib "${med_own[$p]}")" "$(mib "$(median "$p" 6)")" "$(mib "$(median "$p" 7)")" \
        "$(mib "$(median "$p" 8)")" "$(mib "$(median "$p" 9)")" "$(mib "$(median "$p" 10)")"
done

ratio() { # SHOJI QEMU -> "0.15 (6.7x)" or -
    awk -v s="$1" -v q="$2" 'BEGIN { if (s == "-" || q == "-" || s <= 0 || q <= 0) print "-"; else printf "%.2f (QEMU %.1fx)", s / q, q / s }'
}
if [[ -n ${med_own[shoji]:-} ]]; then
    echo
    echo "== ratios shoji / QEMU, of the medians (below 1: shoji is faster or smaller) =="
    printf '%-20s %22s %22s %22s\n' "" "startup (strace)" "startup (preload)" "own memory"
    for p in microvm q35; do
        [[ -n ${med_own[$p]:-} ]] || continue
        printf '%-20s %22s %22s %22s\n' "vs $(label "$p")" "$(ratio "${med_s[shoji]}" "${med_s[$p]}")" \
            "$(ratio "${med_p[shoji]}" "${med_p[$p]}")" "$(ratio "${med_own[shoji]}" "${med_own[$p]}")"
    done
    echo "of the fastest runs (less disturbed by other load on the host):"
    for p in microvm q35; do
        [[ -n ${med_own[$p]:-} ]] || continue
        printf '%-20s %22s %22s\n' "vs $(label "$p")" "$(ratio "$(minimum shoji 2)" "$(minimum "$p" 2)")" \
            "$(ratio "$(minimum shoji 3)" "$(minimum "$p" 3)")"
    done
    echo
    echo "== goal: first KVM_RUN within 5 ms of exec, own memory under 5 MiB, both well ahead of QEMU =="
    verdict() { # VALUE LIMIT le|lt
        awk -v v="$1" -v lim="$2" -v op="$3" \
            'BEGIN { if (v == "-") print "-"; else print ((op == "le" ? v <= lim : v < lim) ? "MET" : "MISSED") }'
    }
    [[ ${med_s[shoji]} == - ]] || echo "startup (strace)   $(ms "${med_s[shoji]}") ms    goal <= 5 ms   $(verdict "${med_s[shoji]}" 5 le)"
    [[ ${med_p[shoji]} == - ]] || echo "startup (preload)  $(ms "${med_p[shoji]}") ms    goal <= 5 ms   $(verdict "${med_p[shoji]}" 5 le)"
    echo "own memory         $(mib "${med_own[shoji]}") MiB  goal < 5 MiB   $(verdict "${med_own[shoji]}" 5120 lt)"
fi
echo
echo "load:    $(cut -d' ' -f1-3 /proc/loadavg) at end"
echo "note: all timings are from this host only. The guest runs under emulation here (kvm_pvm),"
echo "      so guest-side boot speed is not a performance figure; exec -> first KVM_RUN and the"
echo "      VMM's own memory do not depend on guest speed."
