#!/usr/bin/env python3
"""ACPI tables checked by an independent decoder: acpica-tools' iasl.

Usage: acpi_iasl.py ACPI_DUMP

acpi-dump (acpi_dump.c) writes the tables shoji-vmm builds, one file per
signature. For each table this test runs `iasl -d` and fails, naming the
table, on a non-zero exit or any error, warning or remark in iasl's output
or in the disassembly (iasl reports a bad checksum only as a "Firmware
Warning" and still exits 0). It then compiles the disassembly back and
requires the same bytes, apart from the checksum and the compiler id and
revision that iasl puts in: every field decoded as written.

iasl cannot load an RSDP ("Loading an RSDP is not supported", acfileio.c),
so the RSDP is checked here directly: signature, revision, length and both
checksums. unit-acpi checks where every pointer leads.

Before trusting a clean result, the test corrupts one byte of each table
that has a checksum and requires the check to flag it.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

CPU_COUNTS = (1, 4, 254)
TABLES = ("XSDT", "FACP", "FACS", "DSDT", "APIC", "MCFG")
CORRUPTIBLE = ("RSDP", "XSDT", "FACP", "DSDT", "APIC", "MCFG")  # FACS has no checksum

OUTPUT_PROBLEM = re.compile(r"(?i)\b(error|warning|remark)s?\b")
# iasl's compile summary names the counters; zero of each is not a problem.
CLEAN_SUMMARY = re.compile(r"(?i)\b0 errors, 0 warnings(, 0 remarks)?")
DSL_PROBLEM = re.compile(r"(?i)(incorrect|invalid|unknown|\*\*\*\*)")
# Bytes iasl rewrites when compiling: checksum, compiler id and revision.
REWRITTEN = set([9]) | set(range(28, 36))


def run_iasl(iasl, args, cwd):
    p = subprocess.run([iasl] + args, cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, errors="replace")
    return p.returncode, p.stdout


def output_problems(text):
    return [line.strip() for line in text.splitlines()
            if OUTPUT_PROBLEM.search(CLEAN_SUMMARY.sub("", line))]


def rsdp_problems(path):
    with open(path, "rb") as f:
        r = f.read()
    problems = []
    if len(r) != 36:
        return ["RSDP file is %d bytes, want 36" % len(r)]
    if r[:8] != b"RSD PTR ":
        problems.append("RSDP signature is %r" % r[:8])
    if sum(r[:20]) & 0xff:
        problems.append("RSDP checksum (first 20 bytes) does not sum to 0")
    if r[15] < 2:
        problems.append("RSDP revision %d has no XSDT" % r[15])
    if int.from_bytes(r[20:24], "little") != 36:
        problems.append("RSDP length field is not 36")
    if sum(r) & 0xff:
        problems.append("RSDP extended checksum does not sum to 0")
    return problems


def table_problems(iasl, workdir, sig):
    dat = sig + ".dat"
    rc, out = run_iasl(iasl, ["-d", dat], workdir)
    problems = ["iasl -d: " + line for line in output_problems(out)]
    if rc != 0:
        problems.append("iasl -d exited with status %d" % rc)
    dsl = os.path.join(workdir, sig + ".dsl")
    if not os.path.exists(dsl):
        return problems + ["iasl -d wrote no disassembly"]
    with open(dsl, errors="replace") as f:
        for line in f:
            if DSL_PROBLEM.search(line):
                problems.append("disassembly: " + line.strip())

    rc, out = run_iasl(iasl, ["-p", "rt_" + sig, sig + ".dsl"], workdir)
    problems += ["iasl (recompile): " + line for line in output_problems(out)]
    aml = os.path.join(workdir, "rt_" + sig + ".aml")
    if rc != 0 or not os.path.exists(aml):
        return problems + ["the disassembly does not compile back (status %d)" % rc]
    with open(os.path.join(workdir, dat), "rb") as f:
        original = f.read()
    with open(aml, "rb") as f:
        again = f.read()
    if len(again) != len(original):
        problems.append("recompiled table is %d bytes, original %d" % (len(again), len(original)))
    else:
        diff = [i for i in range(len(original))
                if original[i] != again[i] and i not in REWRITTEN]
        if diff:
            problems.append("recompiled table differs at offsets %s" %
                            ", ".join("0x%x" % i for i in diff[:8]))
    return problems


def check(dump, iasl, ncpus, corrupt=None):
    """Returns {table: [problems]} for the tables of one build."""
    with tempfile.TemporaryDirectory(prefix="shoji-acpi-") as workdir:
        args = [dump, workdir, str(ncpus)]
        if corrupt:
            args.append("corrupt=" + corrupt)
        p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if p.returncode != 0:
            return {"acpi-dump": ["exited with status %d: %s" % (p.returncode, p.stdout.strip())]}
        found = {}
        missing = [s for s in ("RSDP",) + TABLES
                   if not os.path.exists(os.path.join(workdir, s + ".dat"))]
        if missing:
            found["acpi-dump"] = ["no table " + ", ".join(missing)]
        if os.path.exists(os.path.join(workdir, "RSDP.dat")):
            problems = rsdp_problems(os.path.join(workdir, "RSDP.dat"))
            if problems:
                found["RSDP"] = problems
        for name in sorted(os.listdir(workdir)):
            sig, ext = os.path.splitext(name)
            if ext != ".dat" or sig == "RSDP":
                continue
            problems = table_problems(iasl, workdir, sig)
            if problems:
                found[sig] = problems
        return found


def main():
    if len(sys.argv) != 2:
        print("usage: acpi_iasl.py ACPI_DUMP", file=sys.stderr)
        return 2
    dump = sys.argv[1]
    iasl = shutil.which("iasl")
    if not iasl:
        print("SKIP: iasl not found (Debian package acpica-tools)")
        return 77

    failed = False
    # The check must notice a broken table, or a clean result means nothing.
    for sig in CORRUPTIBLE:
        found = check(dump, iasl, 4, corrupt=sig)
        if sig not in found:
            print("FAIL: a corrupted %s was not detected (the check is blind)" % sig)
            failed = True
        else:
            print("ok: corrupted %s detected: %s" % (sig, found[sig][0]))

    for ncpus in CPU_COUNTS:
        found = check(dump, iasl, ncpus)
        for sig, problems in sorted(found.items()):
            failed = True
            for problem in problems:
                print("FAIL: %u vCPUs: %s: %s" % (ncpus, sig, problem))
        if not found:
            print("ok: %u vCPUs: RSDP checked, %s disassembled by iasl and compiled back"
                  % (ncpus, ", ".join(TABLES)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
