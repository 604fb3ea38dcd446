#!/usr/bin/env bash
# `make run`: the product's main job. Builds the two default master images
# once (images/service.recipe and images/desktop.recipe, with shoji-img
# build, cached in .cache/images and rebuilt only when a recipe or the agent
# changed), starts shojid with a service VM ("svc") and a client VM ("desk",
# which waits for svc) made from them, and attaches this terminal to the
# client's serial console at its login prompt. One line says how to reach
# each VM. Detaching (Ctrl-] or Ctrl-a d) stops both VMs and shojid.
#
# Usage: scripts/run-demo.sh BUILD_DIR
# Needs root: mmdebstrap builds the images, shojid runs the VMs.
# On a host whose CPU has vmx/svm and a usable /dev/kvm, shojid runs here.
# Otherwise everything runs one level nested: an L1 Linux under QEMU's
# software CPU (which emulates AMD SVM) runs shojid and both VMs, with the
# console on this terminal (slow: minutes to the login prompt).
# SHOJI_NESTED=0|1 forces either way; SHOJI_CACHE moves the cache.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=nested-lib.sh
source "$here/nested-lib.sh"

build=${1:?usage: scripts/run-demo.sh BUILD_DIR}
build=$(cd "$build" && pwd)
cache=${SHOJI_CACHE:-$repo/.cache}
images=$cache/images
demo=$build/demo

die() { echo "run-demo: $*" >&2; exit 1; }

use_nested() {
    case ${SHOJI_NESTED:-} in
        1) return 0 ;;
        0) return 1 ;;
        '') ! nested_native_kvm_ok ;;
        *) die "SHOJI_NESTED must be 0 or 1, not '$SHOJI_NESTED'" ;;
    esac
}

# build_image NAME: images/NAME.recipe into $images/NAME, unless built since
# the recipe and the agent last changed.
build_image() {
    local name=$1 out=$images/$1 recipe=$repo/images/$1.recipe
    if [[ -f $out.json && ! $recipe -nt $out.json && ! $build/shoji-agent -nt $out.json ]]; then
        return 0
    fi
    echo "run-demo: building the $name image from $recipe (once; a few minutes)"
    rm -f "$out".{qcow2,vmlinuz,initrd,json}
    "$build/shoji-img" build -c --agent "$build/shoji-agent" "$recipe" "$out" ||
        die "building the $name image failed (see above)"
}

# The job, in shell that runs as it is natively and in L1's busybox:
# shojid, the two VMs, the console, and everything stopped afterwards.
# $1: the folder of the images as the job sees it; $2: the binaries' folder;
# $3: a scratch folder; $4: where the console reads and writes ("" for this
# terminal, a device in L1).
write_job() {
    local img=$1 bin=$2 dw=$3 tty=${4:-}
    local reach="reach them with: shoji --socket \$dw/run/shojid.sock exec svc -- CMD (or desk), vm ls, vm console svc; Ctrl-] here stops both"
    # Nested, shojid and its socket live inside L1, where no other shell runs.
    [ -z "$tty" ] || reach="desk's console is here and svc runs beside it; shojid runs inside L1 (nested), so its socket is not on this host: run make run on a host with VT-x/AMD-V to reach both with shoji; Ctrl-] here stops both"
    local redirect=${tty:+" <$tty >$tty 2>&1"}
    cat <<EOF
dw=$dw
rm -rf "\$dw" && mkdir -p "\$dw"
shoji() { "$bin/shoji" --socket "\$dw/run/shojid.sock" "\$@"; }
"$bin/shojid" --state-dir "\$dw/state" --run-dir "\$dw/run" --vmm "$bin/shoji-vmm" 2>"\$dw/shojid.log" &
shojid_pid=\$!
i=0
until shoji vm ls >/dev/null 2>&1; do
    i=\$((i + 1)); [ \$i -lt 100 ] || { echo "run-demo: shojid did not start: \$(tail -n 3 "\$dw/shojid.log")"; exit 1; }
    sleep 0.2
done
shoji vm create svc --role service --image "$img/service" --memory 512M --cpus 1 --vsock cid=3 >/dev/null &&
    shoji vm create desk --role client --depends-on svc --image "$img/desktop" --memory 1G --cpus 2 \\
        --vsock cid=4 >/dev/null || exit 1
shoji vm start svc --no-wait >/dev/null
shoji vm start desk --no-wait >/dev/null
echo "run-demo: svc (service) and desk (client) start under shojid; this terminal is desk's console."
echo "run-demo: $reach"
until [ "\$(shoji --json vm show desk 2>/dev/null | grep -c '"state":"running"')" = 1 ]; do sleep 1; done
shoji vm console desk$redirect
echo "run-demo: stopping desk and svc"
shoji vm stop desk >/dev/null 2>&1
shoji vm stop svc >/dev/null 2>&1
kill -TERM "\$shojid_pid" 2>/dev/null
EOF
}

run_native() {
    write_job "$images" "$build" "$demo/native" >"$demo/job.sh"
    sh "$demo/job.sh"
}

run_nested() {
    echo "run-demo: this host's KVM cannot run a stock Linux guest natively (no vmx/svm), so shojid and its VMs run nested under QEMU's software CPU (slow: minutes to the login prompt)."
    "$here/deps.sh" nested || exit 2
    command -v qemu-system-x86_64 >/dev/null ||
        die "qemu-system-x86_64 not found: install the Debian package qemu-system-x86"
    "$here/fetch-guest.sh" "$cache" || die "could not fetch the L1 kernel (see above)"
    write_job /img /bin /tmp/demo /dev/ttyS0 >"$demo/job.sh"
    echo "export L2_VMM=/bin/shoji-vmm" >"$demo/job-env.sh"
    local -a files=()
    local name part
    for name in service desktop; do
        for part in qcow2 vmlinuz initrd json; do
            files+=(FILE "$images/$name.$part:/img/$name.$part")
        done
    done
    nested_build_l1 "$demo/l1.cpio" "$cache" "$demo/job.sh" "$demo/job-env.sh" "${files[@]}" \
        EXE "$build/shojid:/bin/shojid" EXE "$build/shoji:/bin/shoji" EXE "$build/shoji-vmm:/bin/shoji-vmm"
    # L1 holds both images in RAM and runs 1.5G of guests. loglevel=1: L1's
    # own kernel messages would land in the middle of the console.
    SHOJI_L1_MEMORY=${SHOJI_L1_MEMORY:-6144} SHOJI_L1_APPEND="loglevel=1 ${SHOJI_L1_APPEND:-}" \
        nested_run_interactive "$cache" "$demo/l1.cpio" "$(nested_l1_cpus 2)"
}

main() {
    for bin in shojid shoji shoji-vmm shoji-img shoji-agent; do
        [[ -x $build/$bin ]] || die "$build/$bin not found: run 'make' first"
    done
    [[ $(id -u) == 0 ]] ||
        die "make run builds master images (mmdebstrap) and runs shojid: run it as root, e.g. sudo make run"
    mkdir -p "$images" "$demo"
    build_image service
    build_image desktop
    if use_nested; then run_nested; else run_native; fi
}

main "$@"
