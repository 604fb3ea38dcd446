#!/usr/bin/env python3
"""The EDID block virtio-gpu offers, checked by an independent decoder:
edid-decode's conformity check (`edid-decode -c`, Debian `edid-decode`).

Usage: edid_decode.py EDID_DUMP

For each size below (the smallest and largest the host may offer, common
desktop sizes, odd ones) it requires "EDID conformity: PASS" and a first
detailed timing of exactly that size. Before trusting a clean result it
flips one byte and requires the decoder to notice. Skips (77) when
edid-decode is not installed.
"""
import re
import shutil
import subprocess
import sys

SIZES = ((640, 480), (800, 600), (1024, 768), (1280, 800), (1366, 768), (1920, 1080),
         (2560, 1440), (3840, 2160), (1023, 767), (4095, 4095))
DTD = re.compile(r"DTD 1:\s+(\d+)x(\d+)")


def decode(tool, data):
    p = subprocess.run([tool, "-c", "-"], input=data, capture_output=True)
    return p.returncode, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")


def main():
    tool = shutil.which("edid-decode")
    if not tool:
        print("SKIP: edid-decode is not installed")
        return 77
    bad = 0
    for w, h in SIZES:
        data = subprocess.run([sys.argv[1], str(w), str(h)], capture_output=True, check=True).stdout
        rc, out = decode(tool, data)
        m = DTD.search(out)
        if rc != 0 or "EDID conformity: PASS" not in out or not m or (int(m[1]), int(m[2])) != (w, h):
            print(f"{w}x{h}: edid-decode does not accept it:\n{out}")
            bad += 1
        corrupt = bytearray(data)
        corrupt[20] ^= 0x40
        rc, out = decode(tool, bytes(corrupt))
        if "EDID conformity: PASS" in out:
            print(f"{w}x{h}: a corrupted block passed, the check proves nothing")
            bad += 1
    print(f"{len(SIZES)} sizes checked, {bad} failures")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
