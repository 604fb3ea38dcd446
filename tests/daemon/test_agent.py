#!/usr/bin/env python3
"""shojid and shoji with a guest's agent (issue 18), without a guest.

tests/daemon/fake_vmm.py stands in for shoji-vmm and puts a real
shoji-agent (run on the host with --listen-unix) behind the VM's vsock
socket, as the VMM would for an agent in a guest. Checked: the VM becomes
ready and says so (event, vm show), `shoji exec` passes stdin, stdout,
stderr and the exit status through (16 MiB through sha256sum, 8 MiB through
cat both ways at once), `shoji cp` both ways byte-exact, the daemon's bounds
(operations per VM, frames it refuses), `vm stop` asking the agent first and
falling back to the power button, and a hostile agent failing only its own
VM's operations.

Usage: test_agent.py SHOJID SHOJI FAKE_VMM SHOJI_AGENT
"""
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

from harness import check, finish

SHOJID, SHOJI, FAKE, AGENT = sys.argv[1:5]
procs = []


class Daemon:
    def __init__(self, tmp):
        self.dir = tmp
        self.sock = os.path.join(tmp, "run", "shojid.sock")
        args = [SHOJID, "--state-dir", os.path.join(tmp, "state"), "--run-dir", os.path.join(tmp, "run"),
                "--jail", "off", "--stop-timeout", "4", "--vmm", FAKE]
        self.proc = subprocess.Popen(args, stderr=open(os.path.join(tmp, "shojid.log"), "a"))
        procs.append(self.proc)
        deadline = time.time() + 5
        while self.shoji("vm", "ls").returncode != 0:
            if time.time() > deadline:
                raise RuntimeError("shojid did not start")
            time.sleep(0.05)

    def shoji(self, *args, timeout=60, **kw):
        return subprocess.run([SHOJI, "--socket", self.sock, *args], capture_output=True, timeout=timeout, **kw)

    def vm(self, name):
        return json.loads(self.shoji("--json", "vm", "show", name).stdout)

    def create(self, name, behaviour, cid):
        k = os.path.join(self.dir, name + ".kernel")
        with open(k, "w") as f:
            f.write(json.dumps(behaviour))
        p = self.shoji("vm", "create", name, "--kernel", k, "--vsock", f"cid={cid}")
        assert p.returncode == 0, p.stderr
        return k

    def wait_ready(self, name, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.vm(name).get("ready"):
                return True
            time.sleep(0.1)
        return False

    def events(self):
        p = subprocess.Popen([SHOJI, "--socket", self.sock, "events", "--since", "0"], stdout=subprocess.PIPE)
        time.sleep(0.5)
        p.kill()
        return [json.loads(line) for line in p.stdout.read().splitlines() if line.strip()]


def upgrade(sock_path, name):
    """A raw client of POST /v1/vms/NAME/agent: the socket after the 101, or the status."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    s.sendall(f"POST /v1/vms/{name}/agent HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
              "Upgrade: shoji-agent\r\nContent-Length: 0\r\n\r\n".encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += s.recv(1)
    return s, int(head.split()[1])


def frame(t, payload):
    return bytes([t]) + len(payload).to_bytes(3, "big") + payload


def read_frame(s):
    head = b""
    while len(head) < 4:
        more = s.recv(4 - len(head))
        if not more:
            return None
        head += more
    n = int.from_bytes(head[1:], "big")
    body = b""
    while len(body) < n:
        more = s.recv(n - len(body))
        if not more:
            return None
        body += more
    return head[0], body


def test_exec_and_cp(d, tmp):
    d.create("g", {"agent": AGENT}, 3)
    check("start", d.shoji("vm", "start", "g").returncode == 0)
    check("the VM becomes ready", d.wait_ready("g"), d.vm("g"))
    st = d.vm("g")
    check("vm show carries the agent's info", st.get("agent", {}).get("agent") == "shoji-agent"
          and "kernel" in st["agent"] and "hostname" in st["agent"], st)
    check("a ready event", any(e["event"] == "ready" and e["vm"] == "g" for e in d.events()))

    p = d.shoji("exec", "g", "--", "echo", "hello")
    check("exec echo", p.returncode == 0 and p.stdout == b"hello\n", p)
    p = d.shoji("exec", "g", "--", "sh", "-c", "exit 42")
    check("exit status 42 passes through", p.returncode == 42, p.returncode)
    p = d.shoji("exec", "g", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    check("stdout and stderr apart", p.stdout == b"out\n" and p.stderr == b"err\n" and p.returncode == 3, p)
    p = d.shoji("exec", "g", "-e", "FOO=bar", "-w", "/tmp", "--", "sh", "-c", 'echo "$FOO $(pwd)"')
    check("env and workdir", p.stdout == b"bar /tmp\n", p)
    blob = os.urandom(16 << 20)
    p = d.shoji("exec", "g", "--", "sha256sum", input=blob)
    check("16 MiB through sha256sum", p.stdout.split()[0].decode() == hashlib.sha256(blob).hexdigest()
          if p.stdout else False, p.stderr)
    half = blob[: 8 << 20]
    p = d.shoji("exec", "g", "--", "cat", input=half)
    check("8 MiB through cat, both ways at once", p.returncode == 0 and p.stdout == half,
          (p.returncode, len(p.stdout), p.stderr))
    p = d.shoji("exec", "g", "--", "/nonexistent/program")
    check("a program that cannot run: 125, one line", p.returncode == 125 and p.stderr.count(b"\n") == 1,
          p)
    p = d.shoji("exec", "g", "-t", "--", "sh", "-c", "test -t 0 && stty size")
    check("-t gives a terminal", p.returncode == 0 and b"24 80" in p.stdout, p)

    src = os.path.join(tmp, "ten.bin")
    with open(src, "wb") as f:
        f.write(os.urandom(10 << 20))
    os.chmod(src, 0o640)
    inside = os.path.join(tmp, "inside.bin")  # the "guest" is this host here
    p = d.shoji("cp", src, "g:" + inside)
    check("cp in", p.returncode == 0 and open(inside, "rb").read() == open(src, "rb").read()
          and os.stat(inside).st_mode & 0o777 == 0o640, p)
    back = os.path.join(tmp, "back.bin")
    p = d.shoji("cp", "g:" + inside, back)
    check("cp out", p.returncode == 0 and open(back, "rb").read() == open(src, "rb").read()
          and os.stat(back).st_mode & 0o777 == 0o640, p)
    p = d.shoji("cp", "g:/nonexistent/file", back)
    check("cp of a missing file: 1, one line, the old copy kept",
          p.returncode == 1 and p.stderr.count(b"\n") == 1 and open(back, "rb").read() == open(src, "rb").read(),
          p)
    check("no temporary files left", not [n for n in os.listdir(tmp) if ".shoji-" in n or ".tmp" in n],
          os.listdir(tmp))


def test_bounds(d):
    sleepers = [subprocess.Popen([SHOJI, "--socket", d.sock, "exec", "g", "--", "sleep", "3"],
                                 stderr=subprocess.PIPE) for _ in range(8)]
    time.sleep(1)
    p = d.shoji("exec", "g", "--", "true")
    check("a ninth operation is refused with 125", p.returncode == 125 and b"agent operations" in p.stderr, p)
    ok = sum(s.wait() == 0 for s in sleepers)
    check("the eight (but for one meeting a heartbeat) ran", ok >= 7, ok)

    s, status = upgrade(d.sock, "g")
    s.sendall(frame(1, b'{"op":"shutdown"}'))
    f = read_frame(s)
    check("shutdown is the daemon's, not a client's", status == 101 and f and f[0] == 2 and b"daemon" in f[1], f)
    s.close()
    s, _ = upgrade(d.sock, "g")
    s.sendall(frame(1, b'{"op":"exec","argv":["sleep","5"]}'))
    read_frame(s)
    s.sendall(frame(4, b"stdout from a client"))
    check("a frame type a client may not send ends the operation", read_frame(s) is None)
    s.close()
    p = d.shoji("exec", "g", "--", "true")
    check("the VM's agent still serves", p.returncode == 0, p)


def test_hostile_agent(d):
    # An "agent" that answers every request with a frame claiming 16 MiB.
    evil = os.path.join(d.dir, "evil-agent.py")
    with open(evil, "w") as f:
        f.write("""import socket, sys, os, threading
path = sys.argv[2]
s = socket.socket(socket.AF_UNIX); s.bind(path); s.listen(16)
def serve(c):
    try:
        c.recv(65536); c.sendall(bytes([2, 0xff, 0xff, 0xff]) + b"x" * 65536)
    except OSError:
        pass
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
""")
    wrapper = os.path.join(d.dir, "evil-agent")
    with open(wrapper, "w") as f:
        f.write(f"#!/bin/sh\nexec {sys.executable} {evil} \"$@\"\n")
    os.chmod(wrapper, 0o755)
    d.create("bad", {"agent": wrapper}, 4)
    d.shoji("vm", "start", "bad")
    time.sleep(3)
    st = d.vm("bad")
    check("an agent speaking nonsense never becomes ready", st["state"] == "running" and not st.get("ready"), st)
    p = d.shoji("exec", "bad", "--", "true")
    check("exec on it fails with 125", p.returncode == 125, p)
    check("the good VM is untouched", d.shoji("exec", "g", "--", "true").returncode == 0)
    check("shojid is alive", d.proc.poll() is None)


def test_stop(d):
    p = d.shoji("vm", "stop", "g")
    k = os.path.join(d.dir, "g.kernel")
    ev = open(k + ".events").read().split() if os.path.exists(k + ".events") else []
    check("stop asks the agent, not the button", p.returncode == 0 and ev == ["agent-shutdown"], (p, ev))
    stopping = [e for e in d.events() if e["event"] == "stopping" and e["vm"] == "g"]
    check("the stopping event says via agent", stopping and stopping[-1].get("via") == "agent", stopping)
    check("the stopped VM is not ready", not d.vm("g").get("ready"), d.vm("g"))

    d.create("deaf", {"agent": AGENT, "on_agent_shutdown": "ignore"}, 5)
    d.shoji("vm", "start", "deaf")
    d.wait_ready("deaf")
    t0 = time.time()
    p = d.shoji("vm", "stop", "deaf")
    k = os.path.join(d.dir, "deaf.kernel")
    ev = open(k + ".events").read().split()
    check("an agent that does not shut down: the button after half the timeout",
          p.returncode == 0 and ev == ["agent-shutdown", "power-button"] and 1.5 < time.time() - t0 < 4,
          (p, ev, time.time() - t0))


def test_pause(d):
    """vm pause and resume: the state says so, events, the agent left alone
    while paused, and a stop of a paused VM resumes it to press the button."""
    d.create("p", {"agent": AGENT}, 8)
    d.shoji("vm", "start", "p")
    check("a VM to pause becomes ready", d.wait_ready("p"))
    p = d.shoji("vm", "pause", "p")
    check("vm pause", p.returncode == 0 and p.stdout == b"p: paused\n" and d.vm("p")["state"] == "paused",
          (p, d.vm("p")))
    p = d.shoji("vm", "pause", "p")
    check("pausing a paused VM: refused in one line", p.returncode == 1 and b"paused already" in p.stderr, p)
    p = d.shoji("exec", "p", "--", "true")
    check("exec on a paused VM: 125, saying it is paused", p.returncode == 125 and b"paused" in p.stderr, p)
    p = d.shoji("vm", "resume", "p")
    check("vm resume", p.returncode == 0 and d.vm("p")["state"] == "running", (p, d.vm("p")))
    check("exec after resume", d.shoji("exec", "p", "--", "true").returncode == 0)
    ev = [e["event"] for e in d.events() if e["vm"] == "p" and e["event"] in ("paused", "resumed")]
    check("paused and resumed events", ev == ["paused", "resumed"], ev)
    p = d.shoji("vm", "resume", "p")
    check("resuming a running VM: refused", p.returncode == 1 and b"running already" in p.stderr, p)
    d.shoji("vm", "pause", "p")
    p = d.shoji("vm", "stop", "p")
    k = os.path.join(d.dir, "p.kernel")
    check("a paused VM's stop resumes it and presses the button (its agent cannot answer)",
          p.returncode == 0 and open(k + ".events").read().split() ==
          ["pause", "resume", "pause", "resume", "power-button"], (p, open(k + ".events").read()))
    p = d.shoji("vm", "pause", "p")
    check("pausing a stopped VM: refused", p.returncode == 1 and b"stopped, not running" in p.stderr, p)
    # A VMM whose status says paused (one adopted after shojid restarted) is shown so.
    d.create("q", {"paused": True}, 9)
    d.shoji("vm", "start", "q")
    check("a VMM found paused is shown paused", d.vm("q")["state"] == "paused", d.vm("q"))
    d.shoji("vm", "kill", "q")


def test_clock(d):
    """A guest clock 300 s behind (a VM that was paused, a host that slept)
    is set from the host's, once, and the event says how far off it was; a
    clock that stays wrong (an agent that lies) is not set at every heartbeat."""
    d.create("late", {"agent": AGENT, "clock_offset": -300}, 6)
    d.create("liar", {"agent": AGENT, "clock_offset": 500, "clock_stuck": True}, 7)
    d.shoji("vm", "start", "late")
    d.shoji("vm", "start", "liar")
    check("VMs with wrong clocks become ready", d.wait_ready("late") and d.wait_ready("liar"))
    ev = []
    deadline = time.time() + 8
    while time.time() < deadline and not ev:
        ev = [e for e in d.events() if e["event"] == "clock-set" and e["vm"] == "late"]
    check("a clock-set event saying it was 300 s off", len(ev) == 1 and abs(ev[0]["off_by_s"] + 300) < 5, ev)
    time.sleep(11)  # two more heartbeats
    sets = lambda vm: open(os.path.join(d.dir, vm + ".kernel.events")).read().split()
    check("the agent was asked to set the time once", sets("late") == ["set-time"], sets("late"))
    check("a clock that stays wrong is set again at most once a minute", sets("liar") == ["set-time"],
          sets("liar"))
    check("no clock-set for a VM whose clock is right",
          not [e for e in d.events() if e["event"] == "clock-set" and e["vm"] not in ("late", "liar")])
    d.shoji("vm", "kill", "late")
    d.shoji("vm", "kill", "liar")


def test_usage(d):
    """Mistakes get one line naming the problem and a non-zero status."""
    cases = [
        (("exec",), 2, b"exec"),
        (("exec", "g"), 2, b"command"),
        (("exec", "g", "--bogus", "--", "true"), 2, b"--bogus"),
        (("exec", "nosuch", "--", "true"), 125, b"nosuch"),
        (("cp", "a"), 2, b"cp"),
        (("cp", "/tmp/a", "/tmp/b"), 2, b"VM:"),
        (("cp", "g:/a", "g:/b"), 2, b"VM:"),
        (("cp", "-m", "999", "/etc/hostname", "g:/tmp/x"), 2, b"999"),
    ]
    for args, status, word in cases:
        p = d.shoji(*args)
        check(f"shoji {' '.join(args)}: status {status}, one line naming the problem",
              p.returncode == status and p.stderr.count(b"\n") == 1 and word in p.stderr,
              (p.returncode, p.stderr))


def test_image(d):
    """shoji vm create --image OUT: the bundle's kernel, initrd and command
    line, an overlay of its disk as the first disk, the master untouched."""
    bundle = os.path.join(d.dir, "images")
    os.makedirs(bundle)
    out = os.path.join(bundle, "svc")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", out + ".qcow2", "64M"], check=True)
    with open(out + ".vmlinuz", "w") as f:
        f.write("{}")  # the stand-in VMM's behaviour: run until stopped
    with open(out + ".initrd", "w") as f:
        f.write("initrd")
    with open(out + ".json", "w") as f:
        json.dump({"bundle-format": 1, "cmdline": "root=/dev/vda rw console=ttyS0"}, f)
    master = hashlib.sha256(open(out + ".qcow2", "rb").read()).hexdigest()
    p = d.shoji("vm", "create", "img", "--image", out)
    check("vm create --image", p.returncode == 0, p)
    p = d.shoji("vm", "start", "img")
    argv = json.loads(open(out + ".vmlinuz.argv").read().splitlines()[-1]) if p.returncode == 0 else []
    overlay = os.path.join(d.dir, "state", "disks", "img.qcow2")
    arg = lambda k: argv[argv.index(k) + 1] if k in argv else None
    check("the VMM boots the bundle's kernel, initrd and command line",
          arg("--kernel") == out + ".vmlinuz" and arg("--initrd") == out + ".initrd"
          and arg("--cmdline") == "root=/dev/vda rw console=ttyS0", argv)
    check("its first disk is the VM's overlay, backing files only from the bundle's folder",
          arg("--disk") == f"path={overlay},format=qcow2,backing-dir={bundle}", argv)
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", overlay],
                                     capture_output=True, text=True).stdout or "{}")
    check("the overlay's backing file is the master", info.get("full-backing-filename") == out + ".qcow2"
          and info.get("virtual-size") == 64 << 20, info)
    d.shoji("vm", "kill", "img")
    time.sleep(1)
    check("the master is never written", hashlib.sha256(open(out + ".qcow2", "rb").read()).hexdigest() == master)
    p = d.shoji("vm", "rm", "img")
    check("vm rm removes the overlay", p.returncode == 0 and not os.path.exists(overlay), p)
    os.unlink(out + ".initrd")
    p = d.shoji("vm", "create", "img2", "--image", out)
    check("a bundle missing a file: refused in one line naming it",
          p.returncode == 1 and p.stderr.count(b"\n") == 1 and b"svc.initrd" in p.stderr, p)
    p = d.shoji("vm", "create", "img3")
    check("neither image nor kernel: refused, saying so", p.returncode == 1 and b"'image'" in p.stderr, p)


def main():
    tmp = tempfile.mkdtemp(prefix="shoji-agent-test-")
    os.chmod(tmp, 0o700)
    d = Daemon(tmp)
    try:
        test_exec_and_cp(d, tmp)
        test_bounds(d)
        test_hostile_agent(d)
        test_stop(d)
        test_pause(d)
        test_clock(d)
        test_usage(d)
        test_image(d)
    finally:
        finish(tmp, procs)


main()
