#!/usr/bin/env bash
# Manual probe for the nested daemon e2e's flakiness (docs/testing.md):
# boots one L1 and runs ROUNDS rounds of two plain shoji-vmm guests at
# once in it, without shojid (tests/e2e/daemon-pair-steps.sh). Prints the
# ROUND lines and whether L1 itself finished. To see an L1 triple fault
# named, put a qemu-system-x86_64 wrapper first in PATH that adds
# "-d cpu_reset,guest_errors -D FILE" (QEMU logs "Triple fault" there).
# Usage: tests/e2e/daemon-pair.sh BUILD_DIR [ROUNDS] [file=|socket=]
# SHOJI_PAIR_THP=never|always|madvise sets L1's transparent huge pages.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=../../scripts/nested-lib.sh
source "$repo/scripts/nested-lib.sh"
build=$(cd "${1:?usage: tests/e2e/daemon-pair.sh BUILD_DIR [ROUNDS] [file=|socket=]}" && pwd)
rounds=${2:-8} serial=${3:-file=}
cache=${SHOJI_CACHE:-$repo/.cache} work=$build/e2e-daemon-pair
mkdir -p "$work"
"$repo/scripts/fetch-guest.sh" "$cache" >/dev/null
"$repo/scripts/guest-initramfs.sh" "$work/l2-initrd.cpio.gz" "$cache" "$build/vsock-test"
printf 'host_step pair pair_all\n' >"$work/job.sh"
cat >"$work/env.sh" <<E2
export VMM=/bin/shoji-vmm L2_VMM=/bin/shoji-vmm L2_KERNEL=/l2/vmlinuz L2_INITRD=/l2/initrd.cpio.gz
export ROUNDS=$rounds PAIR_SERIAL=$serial PAIR_THP=${SHOJI_PAIR_THP:-}
. /lib/shoji/daemon-pair-steps.sh
E2
nested_build_l1 "$work/l1.cpio" "$cache" "$work/job.sh" "$work/env.sh" \
    FILE "$cache/vmlinuz:/l2/vmlinuz" FILE "$work/l2-initrd.cpio.gz:/l2/initrd.cpio.gz" \
    FILE "$here/daemon-pair-steps.sh:/lib/shoji/daemon-pair-steps.sh" \
    EXE "$build/shoji-vmm:/bin/shoji-vmm" EXE "$build/vsock-test:/bin/vsock-test"
rc=0
nested_run_batch "$cache" "$work/l1.cpio" "$(nested_l1_cpus 2)" "$work/l1-console.log" "$work/results.log" \
    180 "$((rounds * 200)):the pair rounds" || rc=$?
tr -d '\r' <"$work/results.log" | grep -a -v '^out|' || true
if grep -a -q '^@@L1-DONE' "$work/results.log"; then l1=finished
elif ((rc == 0)) && ! grep -a -q 'reboot: Power down' "$work/l1-console.log"; then l1="reset itself (QEMU exit 0, no poweroff)"
else l1="did not finish (QEMU exit $rc)"; fi
echo "daemon-pair: L1 $l1"
