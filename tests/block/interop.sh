#!/bin/sh
# Interchangeability with qemu-img in both directions:
#  - images written by QEMU (cluster sizes 512 B..2 MiB, v2 and v3, zero
#    clusters, discards, zlib and zstd compression, internal snapshots, a
#    chain of three overlays over a raw base with relative names) must read
#    byte-identically through shoji's block layer (shoji-img convert -O raw
#    against qemu-img convert -O raw);
#  - images written by shoji-img (create, convert, convert -c, snapshot,
#    resize, rebase, commit) must pass qemu-img check and compare equal.
# usage: interop.sh SHOJI_IMG
set -u
S=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
command -v qemu-img >/dev/null && command -v qemu-io >/dev/null ||
	{ echo "SKIP: qemu-img/qemu-io not installed"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
fails=0
pass() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# same_read IMG FMT [qemu-img convert options]: shoji reads what QEMU reads
same_read() {
	img=$1 fmt=$2; shift 2
	rm -f s.raw q.raw
	if ! "$S" convert -f "$fmt" -O raw "$img" s.raw; then fail "shoji cannot read $img"; return; fi
	qemu-img convert -f "$fmt" -O raw "$@" "$img" q.raw
	if cmp -s s.raw q.raw; then pass "read $img $*"; else fail "content differs: $img"; fi
}

qcheck() {
	if qemu-img check -f qcow2 "$1" >check.log 2>&1; then pass "qemu-img check $1"
	else cat check.log; fail "qemu-img check $1"; fi
}

qio_writes() {
	qemu-io -f qcow2 -c "write -P 0x11 0 100k" -c "write -P 0x22 3M 64k" \
		-c "write -P 0x33 5000k 1537k" -c "write -z 3M 4k" -c "discard 0 8k" \
		-c "write -P 0x44 31M 1M" "$1" >/dev/null
}

# 1. QEMU-written images, several cluster sizes, v3 and v2
for cs in 512 4K 64K 2M; do
	qemu-img create -q -f qcow2 -o cluster_size=$cs img-$cs.qcow2 32M
	qio_writes img-$cs.qcow2
	same_read img-$cs.qcow2 qcow2
done
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 32M
qio_writes v2.qcow2
same_read v2.qcow2 qcow2

# 2. compressed clusters, zlib and zstd
for ct in zlib zstd; do
	qemu-img convert -c -O qcow2 -o compression_type=$ct img-64K.qcow2 c-$ct.qcow2
	same_read c-$ct.qcow2 qcow2
done

# 3. internal snapshots: current state and each snapshot's content
qemu-img create -q -f qcow2 snap.qcow2 32M
qemu-io -f qcow2 -c "write -P 0x55 0 2M" snap.qcow2 >/dev/null
qemu-img snapshot -c one snap.qcow2
qemu-io -f qcow2 -c "write -P 0x66 1M 2M" snap.qcow2 >/dev/null
qemu-img snapshot -c two snap.qcow2
qemu-io -f qcow2 -c "write -P 0x77 512k 64k" snap.qcow2 >/dev/null
same_read snap.qcow2 qcow2
for sn in one two; do
	cp snap.qcow2 snap-$sn.qcow2
	"$S" snapshot -a $sn snap-$sn.qcow2 || fail "shoji snapshot -a $sn"
	qcheck snap-$sn.qcow2
	rm -f q.raw s.raw
	qemu-img convert -f qcow2 -O raw -l snapshot.name=$sn snap.qcow2 q.raw
	"$S" convert -f qcow2 -O raw snap-$sn.qcow2 s.raw
	cmp -s q.raw s.raw && pass "apply snapshot $sn" || fail "snapshot $sn content"
done

# 4. a chain of three overlays over a raw base, relative backing names
mkdir -p chain/sub
qemu-img create -q -f raw chain/base.raw 32M
qemu-io -f raw -c "write -P 0x01 0 32M" chain/base.raw >/dev/null
qemu-img create -q -f qcow2 -b base.raw -F raw chain/l1.qcow2
qemu-io -f qcow2 -c "write -P 0x02 1M 1M" chain/l1.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b ../l1.qcow2 -F qcow2 chain/sub/l2.qcow2
qemu-io -f qcow2 -c "write -P 0x03 1536k 1M" -c "write -z 8M 64k" chain/sub/l2.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b l2.qcow2 -F qcow2 chain/sub/l3.qcow2 40M
qemu-io -f qcow2 -c "write -P 0x04 2M 100k" -c "write -P 0x05 39M 64k" chain/sub/l3.qcow2 >/dev/null
same_read chain/sub/l3.qcow2 qcow2

# 5. shoji-written images pass qemu-img check and compare equal
"$S" create -f qcow2 new.qcow2 64M >/dev/null && qcheck new.qcow2
for cs in 512 64K 2M; do
	"$S" convert -f qcow2 -O qcow2 -o cluster_size=$cs chain/sub/l3.qcow2 flat-$cs.qcow2 &&
		qcheck flat-$cs.qcow2
	qemu-img compare -q flat-$cs.qcow2 chain/sub/l3.qcow2 && pass "flatten $cs" || fail "flatten $cs"
done
for ct in zlib zstd; do
	"$S" convert -c -f qcow2 -O qcow2 -o compression_type=$ct img-64K.qcow2 sc-$ct.qcow2 &&
		qcheck sc-$ct.qcow2
	qemu-img compare -q sc-$ct.qcow2 img-64K.qcow2 && pass "convert -c $ct" || fail "convert -c $ct"
	qemu-img info sc-$ct.qcow2 | grep -q "compression type: $ct" || fail "compression type $ct"
done
"$S" convert -f qcow2 -O raw img-4K.qcow2 out.raw && qemu-img compare -q -f raw -F qcow2 out.raw img-4K.qcow2 &&
	pass "convert to raw" || fail "convert to raw"

# 6. resize, rebase (safe and -u), commit
cp img-64K.qcow2 rs.qcow2
"$S" resize rs.qcow2 +16M >/dev/null && qcheck rs.qcow2
[ "$(qemu-img info --output json rs.qcow2 | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')" = 50331648 ] &&
	pass "resize grow" || fail "resize grow"
"$S" resize --shrink rs.qcow2 4M >/dev/null && qcheck rs.qcow2
"$S" resize rs.qcow2 32M >/dev/null
qemu-img convert -O raw rs.qcow2 rs.raw
qemu-img convert -O raw img-64K.qcow2 ref.raw
truncate -s 4M ref.raw && truncate -s 32M ref.raw
cmp -s rs.raw ref.raw && pass "shrink then grow reads zeros" || fail "shrink then grow"

cp -r chain chain2
qemu-img convert -O raw chain2/sub/l3.qcow2 before.raw
"$S" rebase -b ../base.raw -F raw chain2/sub/l3.qcow2 && qcheck chain2/sub/l3.qcow2
qemu-img info chain2/sub/l3.qcow2 | grep -q "backing file: ../base.raw" || fail "rebase name"
qemu-img compare -q -F raw chain2/sub/l3.qcow2 before.raw && pass "safe rebase keeps content" ||
	fail "safe rebase content"
"$S" rebase -u -b l2.qcow2 -F qcow2 chain2/sub/l3.qcow2 &&
	qemu-img info chain2/sub/l3.qcow2 | grep -q "backing file: l2.qcow2" && pass "rebase -u" || fail "rebase -u"

cp -r chain chain3
qemu-img convert -O raw chain3/sub/l3.qcow2 top.raw
"$S" commit chain3/sub/l3.qcow2 >/dev/null && qcheck chain3/sub/l2.qcow2
qemu-img compare -q -F raw chain3/sub/l2.qcow2 top.raw && pass "commit" || fail "commit content"
qcheck chain3/sub/l3.qcow2
qemu-img compare -q -F raw chain3/sub/l3.qcow2 top.raw && pass "top after commit" || fail "top after commit"
[ "$(qemu-img map --output=json chain3/sub/l3.qcow2 | grep -c '"depth": 0')" = 0 ] &&
	pass "commit empties the top" || fail "commit left data in the top"

# 7. snapshots made by shoji, read back by QEMU
cp img-64K.qcow2 ss.qcow2
"$S" snapshot -c base ss.qcow2 && qemu-io -f qcow2 -c "write -P 0x99 0 4M" ss.qcow2 >/dev/null
qcheck ss.qcow2
qemu-img snapshot -l ss.qcow2 | grep -q base && pass "snapshot listed by qemu" || fail "snapshot list"
qemu-img convert -O raw -l snapshot.name=base ss.qcow2 snap.raw
qemu-img compare -q -F qcow2 snap.raw img-64K.qcow2 && pass "shoji snapshot read by qemu" ||
	fail "snapshot content"
"$S" snapshot -d base ss.qcow2 && qcheck ss.qcow2

# 8. compare and info
"$S" compare -f qcow2 -F qcow2 flat-64K.qcow2 chain/sub/l3.qcow2 >/dev/null; [ $? = 0 ] || fail "compare equal"
"$S" compare -f qcow2 -F qcow2 img-64K.qcow2 img-4K.qcow2 >/dev/null; rc=$?
qemu-io -f qcow2 -c "write -P 0x12 7M 512" img-4K.qcow2 >/dev/null
"$S" compare -f qcow2 -F qcow2 img-64K.qcow2 img-4K.qcow2 >/dev/null; [ $? = 1 ] && pass "compare differs" || fail "compare differs"
"$S" info --output json chain/sub/l3.qcow2 | python3 -c '
import json, sys
j = json.load(sys.stdin)
assert j["format"] == "qcow2" and j["virtual-size"] == 41943040, j
assert j["backing-filename"] == "l2.qcow2" and j["backing-filename-format"] == "qcow2", j
' && pass "info json" || fail "info json"

# 9. check: a refcount that is too low is found (exit 2) and -r all fixes it;
#    a leak is found (exit 3) and -r leaks fixes it
"$S" convert -f qcow2 -O qcow2 img-64K.qcow2 rc.qcow2
python3 - rc.qcow2 <<'PY'
import json, struct, subprocess, sys
p = sys.argv[1]
m = json.loads(subprocess.run(["qemu-img", "map", "--output=json", p], capture_output=True, text=True).stdout)
data = [e["offset"] for e in m if e.get("data") and "offset" in e][0]
with open(p, "r+b") as f:
    f.seek(48); rt = struct.unpack(">Q", f.read(8))[0]
    f.seek(rt); rb = struct.unpack(">Q", f.read(8))[0]
    f.seek(rb + 2 * (data >> 16)); f.write(struct.pack(">H", 0))      # too low
    f.seek(0, 2); end = f.tell()
    f.seek(rb + 2 * ((end >> 16) + 3)); f.write(struct.pack(">H", 1)) # leak past the end
PY
"$S" check -f qcow2 rc.qcow2 >/dev/null 2>&1; [ $? = 2 ] && pass "check finds low refcount" || fail "check exit code"
"$S" check -f qcow2 -r all rc.qcow2 >/dev/null 2>&1 && qcheck rc.qcow2
cp img-64K.qcow2 lk.qcow2
python3 - lk.qcow2 <<'PY'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(48); rt = struct.unpack(">Q", f.read(8))[0]
    f.seek(rt); rb = struct.unpack(">Q", f.read(8))[0]
    f.seek(0, 2); end = f.tell()
    f.truncate(end + 3 * 65536)  # qemu-img only counts leaks inside the file
    f.seek(rb + 2 * ((end >> 16) + 1)); f.write(struct.pack(">H", 1))
PY
"$S" check -f qcow2 lk.qcow2 >/dev/null 2>&1; [ $? = 3 ] && pass "check finds leak" || fail "leak exit code"
qemu-img check lk.qcow2 >/dev/null 2>&1; [ $? = 3 ] || fail "qemu-img sees the leak too"
"$S" check -f qcow2 -r leaks lk.qcow2 >/dev/null 2>&1 && qcheck lk.qcow2

# 10. an image left dirty (lazy refcounts) is refused for writing until
#     check -r all has rebuilt its refcounts
qemu-img create -q -f qcow2 -o lazy_refcounts=on lazy.qcow2 16M
qemu-io -f qcow2 -c "write -P 0x21 0 1M" lazy.qcow2 >/dev/null
printf '\001' | dd of=lazy.qcow2 bs=1 seek=79 conv=notrunc 2>/dev/null
"$S" resize lazy.qcow2 32M >/dev/null 2>&1 && fail "dirty image opened for writing"
"$S" check -r all lazy.qcow2 >/dev/null 2>&1 && qcheck lazy.qcow2
qemu-img info lazy.qcow2 | grep -q "corrupt: false" && "$S" resize lazy.qcow2 32M >/dev/null &&
	pass "check -r all clears the dirty bit" || fail "dirty bit"

# 11. image locks, QEMU's lock bytes both ways (issue 16 item 5): a QEMU
#     writer keeps shoji-img out (but -U looks), a shoji writer keeps
#     qemu-img out, readers of both share; convert never overwrites its
#     own source or the source's backing file.
# Waits until the holder started in the background (pid $2) holds QEMU's
# write-permission lock byte (101) on the image, up to 60 s. It watches
# /proc/locks rather than asking qemu-img info: info takes lock bytes of its
# own for a moment, and a writer starting during that moment fails to open
# (that race killed the holder on a loaded CI machine). A holder that dies
# is reported with what it said, at once.
wait_until_held() {
	local ino
	ino=$(stat -c %i "$1")
	for _ in $(seq 600); do
		awk -v ino=":$ino" 'index($6, ino) == length($6) - length(ino) + 1 &&
			$7 <= 101 && ($8 == "EOF" || $8 >= 101) { found = 1 }
			END { exit !found }' /proc/locks && return 0
		kill -0 "$2" 2>/dev/null || { cat holder.err; fail "the holder of $1 died"; return; }
		sleep 0.1
	done
	fail "the holder of $1 did not lock it within 60 s"
}
# Waits until some process holds a lock on the file (/proc/locks names it
# by inode), up to 60 s: for a reader, which qemu-img info cannot see.
wait_until_locked() {
	local ino
	ino=$(stat -c %i "$1")
	for _ in $(seq 600); do
		grep -q ":$ino " /proc/locks && return 0
		sleep 0.1
	done
	fail "nobody locked $1 within 60 s"
}
qemu-img create -q -f qcow2 held.qcow2 16M
qemu-io -f qcow2 -c "write -P 0x5a 0 1M" held.qcow2 >/dev/null
sum0=$(sha256sum held.qcow2)
qemu-io -f qcow2 -c "sleep 600000" held.qcow2 >/dev/null 2>holder.err & holder=$!
wait_until_held held.qcow2 $holder
"$S" info held.qcow2 >/dev/null 2>lock.err && fail "info while QEMU writes"
grep -q "held.qcow2: is in use" lock.err && [ "$(wc -l <lock.err)" = 1 ] &&
	pass "QEMU's write lock refuses shoji-img info in one line" || { cat lock.err; fail "lock message"; }
"$S" info -U held.qcow2 >/dev/null 2>&1 && pass "info -U while QEMU writes" || fail "info -U"
"$S" check -r all held.qcow2 >/dev/null 2>&1 && fail "check -r all while QEMU writes"
"$S" convert -O qcow2 held.qcow2 held.qcow2 >/dev/null 2>&1 && fail "convert onto a busy image"
"$S" create -f qcow2 held.qcow2 1M >/dev/null 2>&1 && fail "create over a busy image"
kill $holder; wait $holder 2>/dev/null
[ "$(sha256sum held.qcow2)" = "$sum0" ] && pass "nothing written while QEMU held it" ||
	fail "the held image changed"
"$S" bench -w -c 100000000 -d 1 held.qcow2 >/dev/null 2>holder.err & holder=$!
wait_until_held held.qcow2 $holder
qemu-img info held.qcow2 >lock.err 2>&1 && fail "qemu-img info while shoji writes"
grep -q 'Failed to get shared "write" lock' lock.err && pass "shoji's write lock refuses qemu-img" ||
	{ cat lock.err; fail "QEMU does not see shoji's lock"; }
qemu-img info -U held.qcow2 >/dev/null 2>&1 && pass "qemu-img info -U while shoji writes" ||
	fail "qemu-img -U"
kill $holder; wait $holder 2>/dev/null
"$S" bench -c 100000000 -d 1 held.qcow2 >/dev/null 2>&1 & holder=$!
wait_until_locked held.qcow2
qemu-img info held.qcow2 >/dev/null 2>&1 && pass "a shoji reader shares with qemu-img info" ||
	fail "reader locks do not share"
qemu-io -c "write 0 4k" held.qcow2 >lock.err 2>&1 && fail "qemu-io wrote under a shoji reader"
grep -q 'Failed to get "write" lock' lock.err && pass "a shoji reader refuses a QEMU writer" ||
	{ cat lock.err; fail "writer message"; }
kill $holder; wait $holder 2>/dev/null
qemu-img check held.qcow2 >/dev/null 2>&1 && qcheck held.qcow2
sum0=$(sha256sum held.qcow2)
"$S" convert -O qcow2 held.qcow2 held.qcow2 2>lock.err; st=$?
[ $st = 1 ] && grep -q "is the image being converted" lock.err &&
	[ "$(sha256sum held.qcow2)" = "$sum0" ] && pass "convert onto itself refused, image intact" ||
	{ cat lock.err; fail "convert onto itself (status $st)"; }
ln -f held.qcow2 alias.qcow2
"$S" convert -O raw held.qcow2 alias.qcow2 >/dev/null 2>&1 && fail "convert onto a hard link of itself"
qemu-img create -q -f qcow2 -b held.qcow2 -F qcow2 over.qcow2
"$S" convert -O raw over.qcow2 held.qcow2 2>lock.err; st=$?
[ $st = 1 ] && grep -q "backing file of the image being converted" lock.err &&
	[ "$(sha256sum held.qcow2)" = "$sum0" ] && pass "convert onto its backing file refused" ||
	{ cat lock.err; fail "convert onto the backing file (status $st)"; }

echo "$fails failures"
[ $fails = 0 ]
