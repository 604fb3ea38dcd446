#!/bin/sh
# meson install: the example configuration (packaging/shojid.conf) goes to
# /etc/shoji/shojid.conf, the path shojid reads, unless a file is there: a
# reinstall must not undo an administrator's edits.
set -e
[ -z "$MESON_INSTALL_DRY_RUN" ] || exit 0
dst="${DESTDIR}/etc/shoji/shojid.conf"
if [ -e "$dst" ]; then
	echo "Keeping $dst"
	exit 0
fi
install -D -m 0644 "$1" "$dst"
echo "Installing $1 to $dst"
