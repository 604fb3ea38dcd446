#!/usr/bin/env python3
"""Crash-consistency loop for the qcow2 driver.

A writer (crashwriter.c) does random writes, zero writes, discards and
flushes on one qcow2 image and is killed with SIGKILL at a random moment;
then qemu-img check must report no errors (leaked clusters are allowed and
are repaired with shoji-img check -r leaks), and every sector must hold
either the value it had at the last completed flush or the value of a
request issued after it. Three cases, each for KILLS kills:

  plain      a lone qcow2 image;
  backing    an overlay over a raw base that holds data of its own: sectors
             the overlay never wrote read the base's data, and the base is
             byte-identical after every kill;
  snapshots  internal snapshots taken, applied and deleted with shoji-img
             between kills: every snapshot still holds exactly what the image
             held when it was taken (read back with qemu-img), after every
             kill.

The seed is printed so a failing run can be replayed.

usage: crashtest.py CRASHWRITER SHOJI_IMG KILLS [SEED]
"""
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

SIZE = 16 << 20
SECT = 512


def skip(reason):
    print(f"SKIP: {reason}")
    sys.exit(77)


def read_raw(img, out):
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", img, out], check=True)
    with open(out, "rb") as f:
        return f.read()


ZERO = bytes(SECT)
FILLS = [bytes([b]) * (SECT - 16) for b in range(256)]


def sector_value(data, s):
    """The request id a sector holds, 0 for zeros, None when torn/garbage."""
    chunk = data[s * SECT:(s + 1) * SECT]
    if chunk == ZERO:
        return 0
    rid, idx = struct.unpack_from("<QQ", chunk)
    if idx != s or chunk[16:] != FILLS[rid & 0xff]:
        return None
    return rid


def verify(log, base, data):
    """base: sector -> value before this round. Returns an error or None."""
    ops, flushed = [], 0
    for line in log.splitlines():
        p = line.split()
        if not p:
            continue
        if p[0] == "F":
            flushed = len(ops)
        elif len(p) == 4:
            ops.append((p[0], int(p[1]), int(p[2]) // SECT, int(p[3]) // SECT))
    durable = dict(base)
    for kind, rid, s0, n in ops[:flushed]:
        for s in range(s0, s0 + n):
            durable[s] = rid if kind == "W" else 0
    allowed = {}
    for kind, rid, s0, n in ops[flushed:]:
        for s in range(s0, s0 + n):
            allowed.setdefault(s, set()).add(rid if kind == "W" else 0)
    for s in range(SIZE // SECT):
        v = sector_value(data, s)
        want = durable.get(s, 0)
        if v == want or v in allowed.get(s, ()):
            continue
        return (f"sector {s}: holds {v}, expected {want} "
                f"(or one of {sorted(allowed.get(s, ()))}); {flushed} of {len(ops)} requests flushed")
    return None


def qemu_check(img, shoji_img, seed):
    """None, or why qemu-img check failed; leaks are repaired with shoji-img."""
    chk = subprocess.run(["qemu-img", "check", "-f", "qcow2", img], capture_output=True, text=True)
    if chk.returncode not in (0, 3):
        return chk.stdout + chk.stderr + f"qemu-img check failed (seed {seed})"
    if chk.returncode == 3:
        subprocess.run([shoji_img, "check", "-r", "leaks", "-f", "qcow2", img],
                       check=True, capture_output=True)
        if subprocess.run(["qemu-img", "check", "-f", "qcow2", img], capture_output=True).returncode:
            return f"shoji-img check -r leaks did not repair (seed {seed})"
        return "leaks"
    return None


def sectors_of(data):
    return {s: v for s in range(SIZE // SECT) if (v := sector_value(data, s))}


def make_base(path, rng):
    """A raw base where every 5th sector holds data of a request id of its own."""
    data = bytearray(SIZE)
    first = 1 << 40
    for s in range(0, SIZE // SECT, 5):
        rid = first + s
        chunk = struct.pack("<QQ", rid, s) + bytes([rid & 0xff]) * (SECT - 16)
        data[s * SECT:(s + 1) * SECT] = chunk
    with open(path, "wb") as f:
        f.write(data)
    return sectors_of(bytes(data))


class Case:
    """One image and what its sectors must hold; subclasses add a base or snapshots."""

    def __init__(self, tmp, shoji_img, rng, seed):
        self.tmp, self.shoji_img, self.rng, self.seed = tmp, shoji_img, rng, seed
        self.img = os.path.join(tmp, "crash.qcow2")
        self.base = {}
        cs = rng.choice(["4K", "64K"])
        self.create(["-o", f"cluster_size={cs}"])
        print(f"  cluster size {cs}")

    def create(self, opts):
        subprocess.run([self.shoji_img, "create", "-f", "qcow2", *opts, self.img, str(SIZE)],
                       check=True, capture_output=True)

    def between_kills(self, rounds):
        return None

    def after_kill(self):
        return None


class BackingCase(Case):
    def create(self, opts):
        raw = os.path.join(self.tmp, "base.raw")
        self.base = make_base(raw, self.rng)
        with open(raw, "rb") as f:
            self.base_sum = hash(f.read())
        self.raw = raw
        subprocess.run([self.shoji_img, "create", "-f", "qcow2", *opts, "-b", "base.raw", "-F", "raw",
                        self.img], check=True, capture_output=True, cwd=self.tmp)

    def after_kill(self):
        with open(self.raw, "rb") as f:
            if hash(f.read()) != self.base_sum:
                return "the backing file changed"
        return None


class SnapshotCase(Case):
    def __init__(self, *a):
        super().__init__(*a)
        self.snaps, self.serial = {}, 0

    def snapshot_data(self, name):
        out = os.path.join(self.tmp, "snap.raw")
        subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", "-l",
                        f"snapshot.name={name}", self.img, out], check=True, capture_output=True)
        with open(out, "rb") as f:
            return f.read()

    def between_kills(self, rounds):
        """Every few kills, with no writer running: take, apply or delete a snapshot."""
        if rounds % 4:
            return None
        op = self.rng.choice(["c", "c", "a", "d"]) if self.snaps else "c"
        if op == "c" and len(self.snaps) == 3:  # each one is read back after every kill
            op = "d"
        name = self.rng.choice(sorted(self.snaps)) if op in "ad" else f"s{self.serial}"
        arg = {"c": "-c", "a": "-a", "d": "-d"}[op]
        r = subprocess.run([self.shoji_img, "snapshot", arg, name, self.img], capture_output=True,
                           text=True)
        if r.returncode:
            return f"shoji-img snapshot {arg} {name}: {r.stderr.strip()}"
        if op == "c":
            self.snaps[name] = dict(self.base)
            self.serial += 1
        elif op == "a":
            self.base = dict(self.snaps[name])
        else:
            del self.snaps[name]
        print(f"  round {rounds}: snapshot {arg} {name} ({len(self.snaps)} kept)")
        return None

    def after_kill(self):
        for name, want in self.snaps.items():
            got = sectors_of(self.snapshot_data(name))
            if got != want:
                bad = sorted(set(got.items()) ^ set(want.items()))[:3]
                return f"snapshot {name} changed: first differences {bad}"
        return None


CASES = {"plain": Case, "backing": BackingCase, "snapshots": SnapshotCase}


def run_case(name, writer, shoji_img, kills, seed):
    rng = random.Random(f"{seed}-{name}")
    tmp = tempfile.mkdtemp()
    try:
        print(f"case {name}:")
        case = CASES[name](tmp, shoji_img, rng, seed)
        next_id, leaky = 1, 0
        for rounds in range(kills):
            err = case.between_kills(rounds)
            if err:
                return f"{name}: round {rounds}: {err}"
            log = os.path.join(tmp, "log")
            open(log, "w").close()
            w = subprocess.Popen([writer, case.img, log, str(rng.randrange(1 << 62)), str(next_id)])
            time.sleep(rng.uniform(0.01, 0.3))
            w.send_signal(signal.SIGKILL)
            w.wait()
            if w.returncode != -signal.SIGKILL:
                return f"{name}: writer exited with {w.returncode} in round {rounds}"
            err = qemu_check(case.img, shoji_img, seed)
            if err == "leaks":
                leaky, err = leaky + 1, None
            if err:
                return f"{name}: round {rounds}: {err}"
            data = read_raw(case.img, os.path.join(tmp, "now.raw"))
            with open(log) as f:
                text = f.read()
            err = verify(text, case.base, data) or case.after_kill()
            if err:
                return f"{name}: round {rounds}: {err}"
            case.base = sectors_of(data)
            ids = [int(l.split()[1]) for l in text.splitlines() if l[:1] in "WZ"]
            next_id = (max(ids) + 1) if ids else next_id
        print(f"  {kills} kills survived, {leaky} left leaks (repaired)")
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    if len(sys.argv) < 4:
        print(__doc__)
        return 2
    writer, shoji_img, kills = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if not shutil.which("qemu-img"):
        skip("qemu-img not installed")
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else random.randrange(1 << 31)
    print(f"seed {seed}")
    for name in CASES:
        err = run_case(name, writer, shoji_img, kills, seed)
        if err:
            print(f"FAIL: {err} (seed {seed})")
            return 1
    print(f"{kills * len(CASES)} kills in {len(CASES)} cases survived, seed {seed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
