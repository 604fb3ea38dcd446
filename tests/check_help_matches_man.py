#!/usr/bin/env python3
"""--help and the man page describe the same options: every long option in
one must appear in the other. Usage: check_help_matches_man.py BINARY MANPAGE"""
import re
import subprocess
import sys

binary, manpage = sys.argv[1], sys.argv[2]
help_text = subprocess.run([binary, "--help"], capture_output=True, text=True, check=True).stdout
man_text = open(manpage, encoding="utf-8").read().replace("\\-", "-")

option = re.compile(r"(?<![\w-])--[a-z][a-z-]*")
in_help = set(option.findall(help_text))
in_man = set(option.findall(man_text))

problems = [f"{o} is in --help but not in {manpage}" for o in sorted(in_help - in_man)]
problems += [f"{o} is in {manpage} but not in --help" for o in sorted(in_man - in_help)]
for p in problems:
    print(p)
print(f"{len(in_help)} options in --help, {len(in_man)} in the man page, {len(problems)} mismatch(es)")
sys.exit(1 if problems else 0)
