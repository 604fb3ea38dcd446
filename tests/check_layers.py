#!/usr/bin/env python3
"""The layer rule of DESIGN.md: a source file may include project headers
only from its own layer or a lower one. Prints each offending include as
file:line and exits 1 when there is any."""
import os
import re
import sys

LAYERS = {
    "base": 0,
    "hv": 1,
    "dev": 2, "block": 2, "net": 2,
    "vmm": 3,
    "daemon": 4, "image": 4,
    "cli": 5, "agent": 5, "server": 5,
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"/]+)/[^"]+"')


def check(src_root):
    bad = []
    for folder in sorted(os.listdir(src_root)):
        path = os.path.join(src_root, folder)
        if not os.path.isdir(path):
            continue
        if folder not in LAYERS:
            bad.append(f"src/{folder}: folder has no layer; add it to DESIGN.md and {sys.argv[0]}")
            continue
        own = LAYERS[folder]
        for dirpath, _, files in os.walk(path):
            for name in sorted(files):
                if not name.endswith((".c", ".h")):
                    continue
                file = os.path.join(dirpath, name)
                rel = os.path.relpath(file, os.path.dirname(src_root))
                with open(file, encoding="utf-8", errors="replace") as f:
                    for lineno, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        target = m.group(1)
                        if target not in LAYERS:
                            bad.append(f"{rel}:{lineno}: includes \"{target}/...\", a folder with no layer")
                        elif LAYERS[target] > own:
                            bad.append(f"{rel}:{lineno}: layer {own} ({folder}) includes "
                                       f"\"{m.group(1)}/...\" from higher layer {LAYERS[target]}")
    return bad


if __name__ == "__main__":
    problems = check(sys.argv[1])
    for p in problems:
        print(p)
    print(f"layer rule: {len(problems)} violation(s)")
    sys.exit(1 if problems else 0)
