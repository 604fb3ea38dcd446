#!/usr/bin/env python3
"""`shoji vm start|stop|restart` wait for the outcome (issue 25).

A real shojid supervises tests/daemon/fake_vmm.py: the commands return once
the VM runs or is stopped, exit 1 with the VMM's last error line when its
start fails, --no-wait answers at once, --json prints the deciding event.
Then a shojid with the real shoji-vmm on a host without /dev/kvm: `shoji vm
start` must fail with shoji-vmm's own message, not say "starting" and exit 0.

Usage: test_cli_wait.py SHOJID SHOJI FAKE_VMM
"""
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time

from harness import check, finish

SHOJID, SHOJI, FAKE = sys.argv[1:4]
procs = []



class Daemon:
    def __init__(self, tmp, vmm=None):
        os.makedirs(tmp, mode=0o700, exist_ok=True)
        self.dir = tmp
        self.sock = os.path.join(tmp, "run", "shojid.sock")
        args = [SHOJID, "--state-dir", os.path.join(tmp, "state"), "--run-dir", os.path.join(tmp, "run"),
                "--jail", "off", "--stop-timeout", "1", "--backoff-ms", "200"]
        self.proc = subprocess.Popen(args + (["--vmm", vmm] if vmm else []),
                                     stderr=open(os.path.join(tmp, "shojid.log"), "a"))
        procs.append(self.proc)
        deadline = time.time() + 5
        while self.shoji("vm", "ls").returncode != 0:
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("shojid did not start; see " + os.path.join(tmp, "shojid.log"))
            time.sleep(0.05)

    def shoji(self, *args, timeout=20):
        return subprocess.run([SHOJI, "--socket", self.sock, *args], capture_output=True, text=True,
                              timeout=timeout)

    def popen(self, *args):
        return subprocess.Popen([SHOJI, "--socket", self.sock, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def vm(self, name):
        return json.loads(self.shoji("--json", "vm", "show", name).stdout)

    def create(self, name, behaviour, *extra):
        k = os.path.join(self.dir, name + ".kernel")
        with open(k, "w") as f:
            f.write(json.dumps(behaviour) if isinstance(behaviour, dict) else behaviour)
        p = self.shoji("vm", "create", name, "--kernel", k, *extra)
        assert p.returncode == 0, p.stderr

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)


def one_line(p):
    return p.stderr.count("\n") == 1


def test_fake_vmm(tmp):
    d = Daemon(tmp, FAKE)
    d.create("ok", {})
    p = d.shoji("vm", "start", "ok")
    check("start waits until the VM runs", p.returncode == 0 and p.stdout == "ok: running\n"
          and d.vm("ok")["state"] == "running", (p.returncode, p.stdout, p.stderr))
    pid = d.vm("ok")["pid"]
    p = d.shoji("vm", "restart", "ok")
    st = d.vm("ok")
    check("restart of a running VM waits for the new VMM to run", p.returncode == 0 and p.stdout == "ok: running\n"
          and st["state"] == "running" and st["pid"] != pid, (p.returncode, p.stdout, p.stderr, st))
    p = d.shoji("vm", "stop", "ok")
    check("stop waits until the VM is stopped", p.returncode == 0 and p.stdout == "ok: stopped\n"
          and d.vm("ok")["state"] == "stopped" and d.vm("ok")["last_exit"] == "poweroff",
          (p.returncode, p.stdout, p.stderr, d.vm("ok")))
    p = d.shoji("vm", "restart", "ok")
    check("restart of a stopped VM starts it", p.returncode == 0 and d.vm("ok")["state"] == "running",
          (p.returncode, p.stdout, p.stderr))
    p = d.shoji("--json", "vm", "stop", "ok")
    ev = json.loads(p.stdout) if p.returncode == 0 else {}
    check("--json prints the deciding event", ev.get("event") == "exited" and ev.get("reason") == "poweroff", p.stdout)

    d.create("deaf", {"on_power_button": "ignore"})
    d.shoji("vm", "start", "deaf")
    p = d.shoji("vm", "stop", "deaf")
    check("stop of a guest that ignores the button: stopped (killed after --stop-timeout), status 0",
          p.returncode == 0 and p.stdout.startswith("deaf: stopped (killed") and d.vm("deaf")["state"] == "stopped",
          (p.returncode, p.stdout, p.stderr))

    msg = "shoji-vmm: error: cannot open /dev/kvm: No such file or directory"
    d.create("nokvm", {"exit_at_once": 1, "stderr": msg})
    p = d.shoji("vm", "start", "nokvm")
    check("a failed start: exit 1 and the VMM's message in one line",
          p.returncode == 1 and p.stdout == "" and p.stderr == f"shoji: nokvm did not start: {msg}\n",
          (p.returncode, p.stdout, p.stderr))
    p = d.shoji("vm", "restart", "nokvm")
    check("restart: the same failure", p.returncode == 1 and msg in p.stderr and one_line(p), (p.returncode, p.stderr))
    p = d.shoji("vm", "start", "nokvm", "--no-wait")
    check("--no-wait answers at once with the state then (today's behaviour)",
          p.returncode == 0 and p.stdout == "nokvm: starting\n", (p.returncode, p.stdout, p.stderr))
    p = d.shoji("vm", "stop", "--no-wait", "nope")
    check("--no-wait before the name", p.returncode == 1 and p.stderr == "shoji: no VM named 'nope'\n", p.stderr)

    # A start shojid refuses at once (the disk is gone) says why.
    disk = os.path.join(tmp, "gone.img")
    open(disk, "w").close()
    d.create("nodisk", {}, "--disk", "path=" + disk)
    os.unlink(disk)
    p = d.shoji("vm", "start", "nodisk")
    check("a start refused at once names the disk", p.returncode == 1 and "nodisk: disk " + disk in p.stderr,
          (p.returncode, p.stderr))

    # A client VM waits for its service VM, and says so.
    d.create("svc", {}, "--role", "service", "--autostart", "off")
    d.create("desk", {}, "--depends-on", "svc")
    w = d.popen("vm", "start", "desk")
    time.sleep(0.5)
    early = w.poll()
    d.shoji("vm", "start", "svc")
    out, err = w.communicate(timeout=20)
    check("start of a client waits for its service VM, then for itself",
          early is None and w.returncode == 0 and out == "desk: waiting for svc to run\ndesk: running\n",
          (early, w.returncode, out, err))
    for name in ("desk", "svc", "deaf"):
        d.shoji("vm", "kill", name)
    d.stop()


def tiny_elf():
    """The smallest kernel shoji-vmm accepts (an ELF at 1 MiB whose code is
    `hlt`): enough to get past its checks of the image to /dev/kvm."""
    base, ehsize, phsize = 0x100000, 64, 56
    code = b"\xf4"
    size = ehsize + phsize + len(code)
    eh = struct.pack("<4sBBBBB7xHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, 2, 62, 1,
                     base + ehsize + phsize, ehsize, 0, 0, ehsize, phsize, 1, 0, 0, 0)
    ph = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    return eh + ph + code


def test_real_vmm_without_kvm(tmp):
    if os.path.exists("/dev/kvm"):
        print("skip (this part): /dev/kvm exists here, a real start would succeed")
        return
    vmm = os.path.join(os.path.dirname(SHOJID), "shoji-vmm")
    d = Daemon(tmp, vmm)
    k = os.path.join(tmp, "tiny.elf")
    with open(k, "wb") as f:
        f.write(tiny_elf())
    p = d.shoji("vm", "create", "desk", "--kernel", k)
    assert p.returncode == 0, p.stderr
    p = d.shoji("vm", "start", "desk")
    check("no /dev/kvm: shoji vm start exits 1 with shoji-vmm's message",
          p.returncode == 1 and p.stdout == "" and one_line(p) and p.stderr.startswith("shoji: desk did not start: ")
          and "/dev/kvm" in p.stderr, (p.returncode, p.stdout, p.stderr))
    st = d.vm("desk")
    check("... and the VM is stopped, last_exit start-failed", st["state"] == "stopped"
          and st["last_exit"] == "start-failed", st)
    p = d.shoji("vm", "start", "desk", "--no-wait")
    check("... while --no-wait still exits 0", p.returncode == 0, (p.returncode, p.stderr))
    d.stop()


def main():
    tmp = tempfile.mkdtemp(prefix="shoji-cli-wait-")
    try:
        test_fake_vmm(os.path.join(tmp, "fake"))
        test_real_vmm_without_kvm(os.path.join(tmp, "real"))
    finally:
        finish(tmp, procs)


main()
