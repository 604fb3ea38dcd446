#!/usr/bin/env python3
"""Crash-consistency loop for the qcow2 driver.

A writer (crashwriter.c) does random writes, zero writes, discards and
flushes on one qcow2 image and is killed with SIGKILL at a random moment;
then qemu-img check must report no errors (leaked clusters are allowed and
are repaired with shoji-img check -r leaks), and every sector must hold
either the value it had at the last completed flush or the value of a
request issued after it. Repeats until the time budget is spent; the seed is
printed so a failing run can be replayed.

usage: crashtest.py CRASHWRITER SHOJI_IMG SECONDS [SEED]
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

SIZE = 32 << 20
SECT = 512


def skip(reason):
    print(f"SKIP: {reason}")
    sys.exit(77)


def read_raw(img, out):
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", img, out], check=True)
    with open(out, "rb") as f:
        return f.read()


def sector_value(data, s):
    """The request id a sector holds, 0 for zeros, None when torn/garbage."""
    chunk = data[s * SECT:(s + 1) * SECT]
    if chunk.count(0) == SECT:
        return 0
    rid, idx = struct.unpack_from("<QQ", chunk)
    if idx != s or chunk[16:] != bytes([rid & 0xff]) * (SECT - 16):
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


def main():
    if len(sys.argv) < 4:
        print(__doc__)
        return 2
    writer, shoji_img, budget = sys.argv[1], sys.argv[2], float(sys.argv[3])
    if not shutil.which("qemu-img"):
        skip("qemu-img not installed")
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else random.randrange(1 << 31)
    print(f"seed {seed}")
    rng = random.Random(seed)
    tmp = tempfile.mkdtemp()
    try:
        img = os.path.join(tmp, "crash.qcow2")
        cs = rng.choice(["4K", "64K"])
        subprocess.run([shoji_img, "create", "-f", "qcow2", "-o", f"cluster_size={cs}", img,
                        str(SIZE)], check=True)
        print(f"cluster size {cs}")
        base, next_id, rounds, leaky = {}, 1, 0, 0
        end = time.time() + budget
        while time.time() < end or rounds == 0:
            log = os.path.join(tmp, "log")
            open(log, "w").close()
            w = subprocess.Popen([writer, img, log, str(rng.randrange(1 << 62)), str(next_id)])
            time.sleep(rng.uniform(0.02, 0.6))
            w.send_signal(signal.SIGKILL)
            w.wait()
            if w.returncode != -signal.SIGKILL:
                print(f"FAIL: writer exited with {w.returncode} (seed {seed})")
                return 1
            chk = subprocess.run(["qemu-img", "check", "-f", "qcow2", img],
                                 capture_output=True, text=True)
            if chk.returncode not in (0, 3):
                print(chk.stdout + chk.stderr)
                print(f"FAIL: qemu-img check after kill in round {rounds} (seed {seed})")
                return 1
            if chk.returncode == 3:
                leaky += 1
                subprocess.run([shoji_img, "check", "-r", "leaks", "-f", "qcow2", img],
                               check=True, capture_output=True)
                if subprocess.run(["qemu-img", "check", "-f", "qcow2", img],
                                  capture_output=True).returncode != 0:
                    print(f"FAIL: shoji-img check -r leaks did not repair (seed {seed})")
                    return 1
            data = read_raw(img, os.path.join(tmp, "now.raw"))
            with open(log) as f:
                text = f.read()
            err = verify(text, base, data)
            if err:
                print(f"FAIL: round {rounds}: {err} (seed {seed})")
                return 1
            base = {s: v for s in range(SIZE // SECT) if (v := sector_value(data, s))}
            ids = [int(l.split()[1]) for l in text.splitlines() if l[:1] in "WZ"]
            next_id = (max(ids) + 1) if ids else next_id
            rounds += 1
        print(f"{rounds} kills survived, {leaky} left leaks (repaired), seed {seed}")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
