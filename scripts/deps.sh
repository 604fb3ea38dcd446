#!/bin/sh
# Makes sure the Debian packages a make target needs are installed, so that
# `make run` and `make check` work on a fresh Debian 12 (or Ubuntu 24.04).
#
# Usage: scripts/deps.sh LIST...   (build, run, nested, test: the files
#                                   packaging/deps/LIST.txt)
# Checks each package with dpkg-query. Missing ones are installed with
# apt-get when run as root; otherwise it prints the one `sudo apt-get
# install` line to run and exits 2. Exit 0: everything is there.
# SHOJI_DEPS=skip skips the check (a system whose packages have other
# names: then meson names what it cannot find).
set -eu

lists=$(cd "$(dirname "$0")/../packaging/deps" && pwd)
[ "${SHOJI_DEPS:-}" = skip ] && exit 0
[ $# -gt 0 ] || { echo "usage: scripts/deps.sh LIST... (the files in $lists)" >&2; exit 2; }

missing=
for list in "$@"; do
	[ -f "$lists/$list.txt" ] || { echo "deps: no package list '$list' in $lists" >&2; exit 2; }
	# shellcheck disable=SC2013 # a package name is one word
	for pkg in $(sed 's/#.*//' "$lists/$list.txt"); do
		case " $missing " in *" $pkg "*) continue ;; esac
		# dpkg-query fails for a package it never heard of: that is missing too.
		status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null) || status=
		[ "$status" = "install ok installed" ] || missing="$missing $pkg"
	done
done
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then
	echo "deps: this is not a Debian-like system; install the equivalents of:$missing" >&2
	echo "deps: (then run with SHOJI_DEPS=skip)" >&2
	exit 2
fi
if [ "$(id -u)" != 0 ]; then
	echo "deps: missing Debian packages ($*):$missing; install them with" >&2
	echo "  sudo apt-get install --no-install-recommends$missing" >&2
	exit 2
fi
echo "deps: installing ($*):$missing"
export DEBIAN_FRONTEND=noninteractive
# A fresh system (a container, a chroot) often has no package lists yet.
apt-get update -q || echo "deps: apt-get update failed; trying the package lists there are" >&2
# shellcheck disable=SC2086 # one word per package
apt-get install -y -q --no-install-recommends $missing
