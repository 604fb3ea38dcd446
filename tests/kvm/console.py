#!/usr/bin/env python3
"""Console tests with tiny guests:
  stdin:  bytes piped into shoji-vmm reach the guest (echo guest), stdout gets them back;
  socket: --serial socket=PATH is mode 0600 and carries input and output, and the
          running VMM has its seccomp filter and no-new-privileges;
  slow:   a reader slower than the guest loses nothing: 128 KiB through a
          4 KiB pipe whose reader starts late, compared byte for byte.
Usage: console.py VMM ECHO_ELF FLOOD_ELF"""
import fcntl
import os
import pty
import termios
import socket
import stat
import subprocess
import sys
import tempfile
import time

VMM, ECHO, FLOOD = sys.argv[1:4]
F_SETPIPE_SZ = 1031
failures = []


def check(name, ok, detail=""):
    print(("ok: " if ok else "FAIL: ") + name + ("" if ok else f": {detail}"))
    if not ok:
        failures.append(name)


def flood_expected():
    out, letter = bytearray(), 0
    while len(out) < 131072:
        if len(out) % 64 == 63:
            out += b"\n"
        else:
            out.append(ord("a") + letter)
            letter = (letter + 1) % 26
    return bytes(out)


def test_stdin():
    p = subprocess.run([VMM, "--kernel", ECHO, "--memory", "64M"], input=b"hello q",
                       capture_output=True, timeout=60)
    check("stdin reaches the guest", p.stdout == b"echo ready\nhello q" and p.returncode == 0,
          f"status {p.returncode}, stdout {p.stdout!r}, stderr {p.stderr!r}")


def test_terminal():
    """On a terminal: raw while the VM runs, restored afterwards, status 0."""
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    p = subprocess.Popen([VMM, "--kernel", ECHO, "--memory", "64M"], stdin=slave, stdout=slave,
                         stderr=subprocess.PIPE)
    got = b""
    while b"echo ready" not in got:
        got += os.read(master, 4096)
    os.write(master, b"xyq")
    status = p.wait(timeout=60)
    after = termios.tcgetattr(slave)
    os.close(master)
    os.close(slave)
    check("terminal console exits cleanly", status == 0, f"status {status}, stderr {p.stderr.read()!r}")
    check("terminal settings restored", before == after, f"before {before}, after {after}")


def test_socket(tmp):
    path = os.path.join(tmp, "console.sock")
    vmm = subprocess.Popen([VMM, "--kernel", ECHO, "--memory", "64M", "--serial", f"socket={path}"],
                           stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(300):
        if os.path.exists(path):
            break
        time.sleep(0.1)
    mode = stat.S_IMODE(os.stat(path).st_mode) if os.path.exists(path) else None
    check("console socket is mode 0600", mode == 0o600, f"mode {mode and oct(mode)}")
    with open(f"/proc/{vmm.pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    sanitized = b"libasan" in subprocess.run(["ldd", VMM], capture_output=True).stdout
    check("running VMM has no new privileges", fields.get("NoNewPrivs", "").strip() == "1",
          f"NoNewPrivs {fields.get('NoNewPrivs')!r}")
    if sanitized:
        print("skipped: seccomp check (sanitizer build: LeakSanitizer needs ptrace, no filter there)")
    else:
        check("running VMM is confined by its seccomp filter", fields.get("Seccomp", "").strip() == "2",
              f"Seccomp {fields.get('Seccomp')!r}")
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        s.sendall(b"abcq")
        s.settimeout(60)
        got = b""
        while not got.endswith(b"abcq"):
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    status = vmm.wait(timeout=60)
    check("socket carries input and output", got.endswith(b"abcq") and status == 0,
          f"status {status}, got {got!r}, stderr {vmm.stderr.read()!r}")
    check("console socket removed at exit", not os.path.exists(path))


def test_slow_reader():
    r, w = os.pipe()
    fcntl.fcntl(w, F_SETPIPE_SZ, 4096)
    vmm = subprocess.Popen([VMM, "--kernel", FLOOD, "--memory", "64M"], stdin=subprocess.DEVNULL,
                           stdout=w, stderr=subprocess.PIPE)
    os.close(w)
    time.sleep(3)  # the guest fills the console queue and the pipe, then must wait
    got = bytearray()
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        got += chunk
    os.close(r)
    status = vmm.wait(timeout=300)
    want = flood_expected()
    first_diff = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
    check("slow reader loses nothing", bytes(got) == want and status == 0,
          f"status {status}, got {len(got)} of {len(want)} bytes, first difference at {first_diff}")


if not os.access("/dev/kvm", os.R_OK | os.W_OK):
    print("SKIP: /dev/kvm is not usable")
    sys.exit(77)
with tempfile.TemporaryDirectory() as tmp:
    test_stdin()
    test_terminal()
    test_socket(tmp)
    test_slow_reader()
sys.exit(1 if failures else 0)
