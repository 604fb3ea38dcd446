#!/usr/bin/env bash
# `make run`: boots Debian's stock cloud kernel in shoji-vmm (2 vCPUs, 512M)
# to an interactive busybox shell on this terminal.
#
# Usage: scripts/run-demo.sh BUILD_DIR
# On a host whose CPU has vmx/svm and a usable /dev/kvm, shoji-vmm runs
# directly. Otherwise it runs one level nested: an L1 Linux under QEMU's
# software CPU (which emulates AMD SVM) loads KVM and runs shoji-vmm with its
# console on this terminal; when shoji-vmm exits, L1 powers off.
# SHOJI_NESTED=0|1 forces either way; SHOJI_CACHE moves the download cache.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=nested-lib.sh
source "$here/nested-lib.sh"

build=${1:?usage: scripts/run-demo.sh BUILD_DIR}
build=$(cd "$build" && pwd)
cache=${SHOJI_CACHE:-$here/../.cache}
vmm=$build/shoji-vmm
demo=$build/demo
cpus=2
memory=512M

die() { echo "run-demo: $*" >&2; exit 1; }

# The guest's shell cannot ask a serial line for its size: hand it this
# terminal's, if there is one (guest-init.sh applies shoji.ttysize).
guest_cmdline() {
    local size cmdline="console=ttyS0 quiet panic=-1"
    if [[ -t 0 ]] && size=$(stty size 2>/dev/null) && [[ $size =~ ^([0-9]+)\ ([0-9]+)$ ]]; then
        cmdline+=" shoji.ttysize=${BASH_REMATCH[1]}x${BASH_REMATCH[2]}"
    fi
    echo "$cmdline"
}

use_nested() {
    case ${SHOJI_NESTED:-} in
        1) return 0 ;;
        0) return 1 ;;
        '') ! nested_native_kvm_ok ;;
        *) die "SHOJI_NESTED must be 0 or 1, not '$SHOJI_NESTED'" ;;
    esac
}

run_native() {
    exec "$vmm" --kernel "$cache/vmlinuz" --initrd "$demo/initrd.cpio.gz" \
        --cmdline "$(guest_cmdline)" --cpus "$cpus" --memory "$memory"
}

# L1's job: shoji-vmm on L1's console (a tty, so shoji-vmm puts it in raw
# mode and its Ctrl-a x works), then report how it ended; L1's init then
# powers off.
write_demo_job() {
    local cmdline=$1
    cat >"$demo/job.sh" <<EOF
\$L2_VMM --kernel /l2/vmlinuz --initrd /l2/initrd.cpio.gz --cmdline '$cmdline' \\
    --cpus $cpus --memory $memory </dev/ttyS0 >/dev/ttyS0 2>&1
say "shoji-vmm exited with status \$?; powering L1 off"
EOF
    echo "export L2_VMM=/bin/shoji-vmm" >"$demo/job-env.sh"
}

run_nested() {
    echo "run-demo: this host's KVM cannot run a stock Linux guest natively (no vmx/svm), so shoji-vmm runs nested under QEMU's software CPU (slow: about a minute to the shell)."
    # QEMU only for this case: `make run` on a host with KVM does without it.
    "$here/deps.sh" nested || exit 2
    command -v qemu-system-x86_64 >/dev/null ||
        die "qemu-system-x86_64 not found: install the Debian package qemu-system-x86"
    write_demo_job "$(guest_cmdline)"
    nested_build_l1 "$demo/l1.cpio" "$cache" "$demo/job.sh" "$demo/job-env.sh" \
        FILE "$cache/vmlinuz:/l2/vmlinuz" FILE "$demo/initrd.cpio.gz:/l2/initrd.cpio.gz" \
        EXE "$vmm:/bin/shoji-vmm"
    # loglevel=1: L1's own kernel messages (KVM's notes about the guest's
    # MSRs, say) would land in the middle of the user's shell.
    SHOJI_L1_APPEND="loglevel=1 ${SHOJI_L1_APPEND:-}" \
        nested_run_interactive "$cache" "$demo/l1.cpio" "$(nested_l1_cpus "$cpus")"
}

main() {
    [[ -x $vmm ]] || die "$vmm not found: run 'make' first"
    "$here/fetch-guest.sh" "$cache" || die "could not fetch the guest kernel (see above)"
    mkdir -p "$demo"
    "$here/guest-initramfs.sh" "$demo/initrd.cpio.gz" "$cache"
    if use_nested; then run_nested; else run_native; fi
}

main "$@"
