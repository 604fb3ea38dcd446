#!/usr/bin/env bash
# End-to-end test of a real guest (issue 18): a master image built from
# Debian packages by `shoji-img build` (tests/e2e/image.recipe: cloud
# kernel, systemd, shoji-agent), booted under shojid as a client VM through
# an overlay of its own. The steps are in image-steps.sh:
#   boot    shoji vm create --image, start; systemd reaches multi-user.target
#           and the agent makes the VM ready
#   exec    shoji exec: /etc/os-release says Debian 12, exit status 42 and
#           stderr pass through, 16 MiB through sha256sum match the host's
#   cp      10 MiB into the guest and back, byte-exact
#   stop    shoji vm stop goes through the agent, the guest powers off, and
#           e2fsck -fn of the overlay's file system finds it clean
#
# Usage: tests/e2e/image.sh BUILD_DIR [full|quick]
# quick (the sanitizer build) skips: CI runs the image build and the boot
# once, in the plain build. Exit: 0 passed, 1 a check failed, 77 skipped.
# Mode: native where KVM runs stock guests, else nested in one L1 boot under
# QEMU TCG (scripts/nested-lib.sh); SHOJI_E2E_MODE forces either.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=../../scripts/nested-lib.sh
source "$repo/scripts/nested-lib.sh"

build=${1:?usage: tests/e2e/image.sh BUILD_DIR [full|quick]}
build=$(cd "$build" && pwd)
cache=${SHOJI_CACHE:-$repo/.cache}
work=$build/e2e-image

skip() { echo "SKIP: $*"; exit 77; }
die() { echo "e2e-image: $*" >&2; exit 1; }

[[ ${2:-full} == full ]] ||
    skip "the image build and boot run once per CI run, in the plain build (this is the sanitizer build)"
[[ ${SHOJI_E2E_IMAGE:-1} == 0 ]] && skip "SHOJI_E2E_IMAGE=0 in the environment turns this test off"
[[ $(id -u) == 0 ]] || skip "building an image needs root (mmdebstrap)"
for tool in mmdebstrap mke2fs e2fsck cpio; do
    command -v "$tool" >/dev/null || skip "$tool not installed (scripts/deps.sh build test)"
done

checks=(
    boot:image-define boot:image-boots boot:image-ready
    exec:image-exec exec:image-exit-status exec:image-exec-16mib
    cp:image-cp
    pause:image-pause pause:image-resume pause:image-clock
    cid:image-agent-cid
    stop:image-stop stop:image-fs-clean
)
steps=(boot exec cp pause cid stop teardown)

nested_pick_mode || die "$NESTED_WHY"
mode=$NESTED_MODE
echo "e2e-image: mode $mode ($NESTED_WHY)"
if [[ $mode == nested ]]; then boot_s=${SHOJI_E2E_IMAGE_BOOT_S:-900}; else boot_s=${SHOJI_E2E_IMAGE_BOOT_S:-120}; fi
step_limit() {
    case $1 in
        boot) echo $((boot_s + 240)) ;;
        exec) echo 600 ;;
        cp) echo 600 ;;
        pause) echo 400 ;;
        cid) echo 300 ;;
        stop) echo 400 ;;
        *) echo 60 ;;
    esac
}

for bin in shojid shoji shoji-vmm shoji-img shoji-agent; do
    [[ -x $build/$bin ]] || die "$build/$bin not built (run 'make' first)"
done
if [[ $mode == native ]]; then
    [[ -r /dev/kvm && -w /dev/kvm ]] || skip "native mode needs read/write access to /dev/kvm"
else
    command -v qemu-system-x86_64 >/dev/null ||
        skip "nested mode needs qemu-system-x86_64 (Debian package qemu-system-x86)"
    log=$("$repo/scripts/fetch-guest.sh" "$cache" 2>&1) ||
        skip "cannot fetch the L1 kernel: $(tail -n1 <<<"$log")"
fi

# The bundle, built once per build directory: again only when the recipe or
# the agent changed since.
mkdir -p "$work"
image=$work/bundle/e2e
# SHOJI_E2E_IMAGE_BUNDLE=OUT: a bundle built before (for working on the steps).
if [[ -n ${SHOJI_E2E_IMAGE_BUNDLE:-} ]]; then
    image=$SHOJI_E2E_IMAGE_BUNDLE
elif [[ ! -f $image.json || $here/image.recipe -nt $image.json || $build/shoji-agent -nt $image.json ]]; then
    mkdir -p "$work/bundle"
    t0=$SECONDS
    # Compressed clusters: the bundle travels inside L1's initramfs.
    "$build/shoji-img" build -c --agent "$build/shoji-agent" "$here/image.recipe" "$image" ||
        die "shoji-img build of $here/image.recipe failed (see above)"
    echo "e2e-image: built the image in $((SECONDS - t0)) s: $(du -h "$image.qcow2" | cut -f1) qcow2"
fi

job=$work/job.sh results=$work/results.log
for s in "${steps[@]}"; do printf 'host_step image:%s im_%s\n' "$s" "$s"; done >"$job"

run_native() {
    local iw
    iw=$(mktemp -d "${TMPDIR:-/tmp}/shoji-im.XXXXXX")
    : >"$results"
    SHOJID=$build/shojid SHOJI=$build/shoji VMM=$build/shoji-vmm SHOJI_IMG=$build/shoji-img \
        E2FSCK=$(command -v e2fsck) IMAGE=$image IW=$iw IM_BOOT_S=$boot_s \
        RESULTS=$results RUNNER_WORK=$work/runner \
        bash -c 'mkdir -p "$RUNNER_WORK"; source "$1"; source "$2"; source "$3"' _ \
        "$repo/scripts/nested-runner.sh" "$here/image-steps.sh" "$job"
    rm -rf "$iw"
}

run_nested() {
    local env=$work/job-env.sh cpio=$work/l1.cpio rc=0 t0 s
    local -a limits=()
    cat >"$env" <<EOF2
export SHOJID=/bin/shojid SHOJI=/bin/shoji VMM=/bin/shoji-vmm SHOJI_IMG=/bin/shoji-img E2FSCK=/bin/e2fsck
export IMAGE=/img/e2e IW=/tmp/im IM_BOOT_S=$boot_s L2_VMM=/bin/shoji-vmm
. /lib/shoji/image-steps.sh
EOF2
    nested_build_l1 "$cpio" "$cache" "$job" "$env" \
        FILE "$image.qcow2:/img/e2e.qcow2" FILE "$image.vmlinuz:/img/e2e.vmlinuz" \
        FILE "$image.initrd:/img/e2e.initrd" FILE "$image.json:/img/e2e.json" \
        FILE "$here/image-steps.sh:/lib/shoji/image-steps.sh" \
        EXE "$build/shojid:/bin/shojid" EXE "$build/shoji:/bin/shoji" \
        EXE "$build/shoji-vmm:/bin/shoji-vmm" EXE "$build/shoji-img:/bin/shoji-img" \
        EXE "$(command -v e2fsck):/bin/e2fsck"
    for s in "${steps[@]}"; do limits+=("$(step_limit "$s"):step $s to finish"); done
    echo "e2e-image: booting L1 (QEMU TCG, $(nested_l1_cpus 2) vCPUs); console in $work/l1-console.log"
    t0=$SECONDS
    # L1 holds the image (in its initramfs, unpacked to RAM) and a 512M guest.
    SHOJI_L1_MEMORY=${SHOJI_L1_MEMORY:-3072} \
        nested_run_batch "$cache" "$cpio" "$(nested_l1_cpus 2)" "$work/l1-console.log" "$results" \
        "${SHOJI_E2E_L1_BOOT_TIMEOUT:-300}" "${limits[@]}" || rc=$?
    echo "e2e-image: L1 ran $((SECONDS - t0)) s, QEMU exit $rc"
    if ((rc != 0)) || ! grep -a -q '^@@L1-DONE' "$results"; then
        l1_problem="L1 did not finish its job (QEMU exit $rc${NESTED_HANG_REASON:+: $NESTED_HANG_REASON})"
    fi
}

l1_problem=''
t_all=$SECONDS
if [[ $mode == native ]]; then run_native; else run_nested; fi

failed=0
nested_report_checks image "$results" "$l1_problem" "${checks[@]}" || failed=1
if [[ -n $l1_problem ]]; then
    echo "FAIL L1: $l1_problem; last lines of its console ($work/l1-console.log):"
    tail -n 20 "$work/l1-console.log" | tr -d '\r' | sed 's/^/       | /'
    failed=1
fi
echo "e2e-image: $((SECONDS - t_all)) s in all; results stream in $results"
exit "$failed"
