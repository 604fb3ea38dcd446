#!/usr/bin/env bash
# Fetches the stock guest used by the demo and the end-to-end tests: Debian's
# cloud kernel (vmlinuz + its modules tree) and a static busybox, all from the
# Debian archive through apt, so nothing outside the package registry is used.
#
# Usage: scripts/fetch-guest.sh [CACHE]
#   CACHE defaults to ${SHOJI_CACHE:-<repo>/.cache} (gitignored).
# Leaves stable paths: CACHE/vmlinuz, CACHE/modules/ (lib/modules/<ver>
# contents), CACHE/busybox, CACHE/kernel-version. Idempotent: a second run with
# the same kernel package does nothing.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${1:-${SHOJI_CACHE:-$repo/.cache}}

die() { echo "fetch-guest: $*" >&2; exit 1; }

# The meta package linux-image-cloud-amd64 only depends on the real, versioned
# kernel package; resolve it so the cache records which kernel it holds.
resolve_kernel_pkg() {
    local pkg
    pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
          awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
    [[ -n $pkg ]] || die "cannot resolve linux-image-cloud-amd64 with apt-cache (run 'apt-get update' as root first)"
    echo "$pkg"
}

# apt-get download writes into the current directory; it works without root.
download() {
    local pkg=$1 dir=$2 log
    log=$(cd "$dir" && apt-get download "$pkg" 2>&1) ||
        die "apt-get download $pkg failed: $(printf '%s\n' "$log" | grep -m1 -E '^(E|W):' || printf '%s\n' "$log" | tail -n1)"
}

fetch_kernel() {
    local pkg=$1 tmp deb kver
    tmp=$(mktemp -d "$cache/.kernel.XXXXXX")
    download "$pkg" "$tmp"
    deb=$(find "$tmp" -maxdepth 1 -name "${pkg}_*.deb" | head -n1)
    [[ -n $deb ]] || die "apt-get download $pkg produced no .deb"
    dpkg-deb -x "$deb" "$tmp/root"
    kver=$(find "$tmp/root/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | head -n1)
    [[ -n $kver && -f $tmp/root/boot/vmlinuz-$kver ]] || die "$pkg has no boot/vmlinuz-<version>"
    # Replace the old copy only once the new one is complete, so an
    # interrupted run never leaves a half-extracted kernel behind.
    rm -rf "$cache/modules" "$cache/vmlinuz"
    mv "$tmp/root/boot/vmlinuz-$kver" "$cache/vmlinuz"
    mv "$tmp/root/lib/modules/$kver" "$cache/modules"
    echo "$kver" >"$cache/kernel-version"
    echo "$pkg" >"$cache/kernel-package"
    rm -rf "$tmp"
}

fetch_busybox() {
    local tmp deb
    tmp=$(mktemp -d "$cache/.busybox.XXXXXX")
    download busybox-static "$tmp"
    deb=$(find "$tmp" -maxdepth 1 -name 'busybox-static_*.deb' | head -n1)
    [[ -n $deb ]] || die "apt-get download busybox-static produced no .deb"
    dpkg-deb -x "$deb" "$tmp/root"
    [[ -x $tmp/root/bin/busybox ]] || die "busybox-static has no bin/busybox"
    mv -f "$tmp/root/bin/busybox" "$cache/busybox"
    rm -rf "$tmp"
}

have_guest() { [[ -f $cache/vmlinuz && -d $cache/modules && -x $cache/busybox ]]; }

main() {
    mkdir -p "$cache" || die "cannot create the cache folder $cache"
    local pkg
    # Offline (or apt lists missing) with a complete cache: keep what is there
    # rather than failing; only a new kernel version needs apt.
    if ! pkg=$(resolve_kernel_pkg 2>/dev/null) && have_guest; then
        echo "fetch-guest: apt cannot resolve linux-image-cloud-amd64; using the cached $(cat "$cache/kernel-package" 2>/dev/null || echo kernel)" >&2
        return 0
    fi
    pkg=$(resolve_kernel_pkg)
    if [[ -f $cache/vmlinuz && -d $cache/modules && "$(cat "$cache/kernel-package" 2>/dev/null)" == "$pkg" ]]; then
        : # up to date
    else
        echo "fetch-guest: downloading $pkg" >&2
        fetch_kernel "$pkg"
    fi
    if [[ ! -x $cache/busybox ]]; then
        echo "fetch-guest: downloading busybox-static" >&2
        fetch_busybox
    fi
}

main "$@"
