#!/usr/bin/env python3
"""Summarises a Meson testlog.json: skip reasons, then 'N passed, N failed'."""
import json
import sys

passed, failed, skipped = [], [], []
with open(sys.argv[1]) as log:
    for number, line in enumerate(log, 1):
        try:
            t = json.loads(line)
        except json.JSONDecodeError:
            # Meson rewrites the log of a build directory at every run.
            failed.append((f"{sys.argv[1]} line {number}",
                           "not JSON: did another 'meson test' run on this build directory at the same time?"))
            continue
        result = t.get("result")
        if result == "OK" or result == "EXPECTEDFAIL":
            passed.append(t["name"])
        elif result == "SKIP":
            reason = "no reason given"
            for out in (t.get("stdout") or "", t.get("stderr") or ""):
                for l in out.splitlines():
                    if l.startswith("SKIP:"):
                        reason = l[5:].strip()
            skipped.append((t["name"], reason))
        else:
            failed.append((t["name"], result))

for name, reason in skipped:
    print(f"skipped: {name}: {reason}")
for name, result in failed:
    print(f"FAILED: {name} ({result})")
summary = f"{len(passed)} passed, {len(failed)} failed"
if skipped:
    summary += f", {len(skipped)} skipped"
print(summary)
sys.exit(1 if failed else 0)
