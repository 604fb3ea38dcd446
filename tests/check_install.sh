#!/bin/sh
# `meson install` into a scratch DESTDIR puts in place what a package needs:
# the five binaries (runnable), a man page for every page in docs/, and
# shojid.service pointing at the installed shojid (checked with
# systemd-analyze when it is there).
# Usage: check_install.sh BUILD_DIR SOURCE_DIR BINDIR MANDIR UNITDIR
# (absolute install paths, as meson.build passes them).
set -eu
build=$1 src=$2 bindir=$3 mandir=$4 unitdir=$5
dest=$(mktemp -d "${TMPDIR:-/tmp}/shoji-install.XXXXXX")
trap 'rm -rf "$dest"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

if ! out=$(meson install -C "$build" --no-rebuild --destdir "$dest" 2>&1); then
	printf '%s\n' "$out"
	echo "FAIL: meson install --destdir $dest failed"
	exit 1
fi
installed=$(cd "$dest" && find . ! -type d | sort | tr '\n' ' ')
for b in shoji-vmm shojid shoji shoji-img shoji-agent; do
	if [ ! -x "$dest$bindir/$b" ]; then
		fail "$bindir/$b not installed"
	elif ! "$dest$bindir/$b" --version >/dev/null 2>&1; then
		fail "$bindir/$b --version failed"
	fi
done
for page in "$src"/docs/*.[18]; do
	name=$(basename "$page")
	[ -f "$dest$mandir/man${name##*.}/$name" ] || fail "man page $name not installed in $mandir/man${name##*.}"
done
unit=$dest$unitdir/shojid.service
if [ ! -f "$unit" ]; then
	fail "$unitdir/shojid.service not installed"
else
	grep -qx "ExecStart=$bindir/shojid" "$unit" || fail "shojid.service: $(grep ExecStart "$unit") (want $bindir/shojid)"
	for key in Type=notify KillMode=process RuntimeDirectoryPreserve=yes; do
		grep -qx "$key" "$unit" || fail "shojid.service has no $key"
	done
	# systemd-analyze checks the unit's syntax and that ExecStart exists:
	# the installed shojid is under DESTDIR, so the unit is checked with it.
	if command -v systemd-analyze >/dev/null 2>&1; then
		sed "s|^ExecStart=|ExecStart=$dest|" "$unit" >"$dest/shojid.service"
		v=$(systemd-analyze verify --man=no "$dest/shojid.service" 2>&1 | grep -v "KillMode=process\|^$") &&
			fail "systemd-analyze verify: $v"
	fi
fi
[ "$fails" = 0 ] || exit 1
echo "installed: $installed"
