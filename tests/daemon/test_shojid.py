#!/usr/bin/env python3
"""Integration test of shojid's API and its supervisor: a real shojid on a
temporary state directory and socket, with tests/daemon/fake_vmm.py in place
of shoji-vmm (--vmm). This tests the supervisor and the API, not the VMM.

Usage: test_shojid.py SHOJID FAKE_VMM
"""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from harness import check, finish

SHOJID, FAKE = sys.argv[1], sys.argv[2]
daemons = []  # every shojid started, killed at the end even if a test hung


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("shojid", timeout=10)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(self.path)


class Daemon:
    """A shojid. Jailed VMMs only where a test asks (jail=True, as root): the
    fake VMM, as pid 1 of its own PID namespace, could not signal itself."""

    def __init__(self, tmp, extra=(), jail=False):
        self.tmp = tmp
        extra = (*extra, "--jail", "on" if jail else "off")
        self.sock = os.path.join(tmp, "run", "shojid.sock")
        self.proc = subprocess.Popen(
            [SHOJID, "--state-dir", os.path.join(tmp, "state"), "--run-dir", os.path.join(tmp, "run"),
             "--vmm", FAKE, "--backoff-ms", "200", "--stop-timeout", "1", *extra],
            stderr=open(os.path.join(tmp, "shojid.log"), "a"))
        daemons.append(self.proc)
        deadline = time.time() + 5
        while not self.answers():  # a killed daemon's stale socket file may be there
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("shojid did not start; see " + os.path.join(tmp, "shojid.log"))
            time.sleep(0.02)

    def answers(self):
        try:
            return self.req("GET", "/v1/version")[0] == 200
        except OSError:
            return False

    def req(self, method, path, body=None):
        c = UnixHTTP(self.sock)
        c.request(method, path, body=body if body is None or isinstance(body, bytes) else json.dumps(body))
        r = c.getresponse()
        data = r.read()
        c.close()
        try:
            return r.status, json.loads(data) if data else None
        except ValueError:
            return r.status, data

    def state(self, name):
        return self.req("GET", "/v1/vms/" + name)[1]

    def wait_state(self, name, want, timeout=8):
        deadline = time.time() + timeout
        while time.time() < deadline:
            st = self.state(name)
            if st and st.get("state") == want:
                return st
            time.sleep(0.05)
        return self.state(name)

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        self.proc.wait(10)



def kernel(tmp, name, behaviour):
    path = os.path.join(tmp, name + ".kernel")
    with open(path, "w") as f:
        json.dump(behaviour, f)
    return path


def jail_id(name):
    """daemon/jail-id.c: FNV-1a of the name in 24 bits above 0x70000000."""
    h = 2166136261
    for b in name.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return 0x70000000 + (h & 0xFFFFFF)


def definition(name, role, k, **extra):
    d = {"name": name, "role": role, "kernel": k}
    d.update(extra)
    return d


class Events:
    """Collects /v1/events lines in a thread."""

    def __init__(self, d, since=None):
        self.lines = []
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(d.sock)
        path = "/v1/events" if since is None else f"/v1/events?since={since}"
        self.sock.sendall(b"GET %s HTTP/1.0\r\nHost: x\r\n\r\n" % path.encode())
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        buf = b""
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            if not data:
                return
            buf += data
            if b"\r\n\r\n" in buf and not self.lines and not hasattr(self, "body"):
                self.body = True
                buf = buf.split(b"\r\n\r\n", 1)[1]
            while b"\n" in buf and hasattr(self, "body"):
                line, buf = buf.split(b"\n", 1)
                if line.strip():
                    self.lines.append(json.loads(line))

    def find(self, vm, event, timeout=8, **fields):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for e in self.lines:
                if e["vm"] == vm and e["event"] == event and all(e.get(k) == v for k, v in fields.items()):
                    return e
            time.sleep(0.05)
        return None


def test_api_validation(tmp, d):
    k = kernel(tmp, "plain", {"on_power_button": "exit"})
    st, body = d.req("POST", "/v1/vms", definition("alpha", "client", k))
    check("create answers 201 with the VM", st == 201 and body["name"] == "alpha", (st, body))
    st, body = d.req("POST", "/v1/vms", definition("alpha", "client", k))
    check("a duplicate name is refused with 409", st == 409 and "exists already" in body["error"], (st, body))
    st, body = d.req("POST", "/v1/vms", b'{"name": "b", "role": "client",\n "kernel": "%s",\n "cpu": 2}' % k.encode())
    check("an unknown key is refused naming line and key",
          st == 400 and body["error"].startswith("request:3: key 'cpu': unknown key"), (st, body))
    st, body = d.req("POST", "/v1/vms", definition("c", "client", "/nonexistent"))
    check("a missing kernel is refused", st == 400 and "No such file" in body["error"], (st, body))
    st, body = d.req("POST", "/v1/vms", definition("d", "client", k, depends_on="alpha"))
    check("depends_on a client VM is refused", st == 400 and "client VM" in body["error"], (st, body))
    for bad in [b"", b"{", b"\x00", b"[]", b"x" * 70000]:
        st, body = d.req("POST", "/v1/vms", bad)
        check(f"garbage body {bad[:8]!r} gets a 4xx JSON error", 400 <= st < 500 and "error" in body, (st, body))
    for method, path, want in [("GET", "/v1/vms/NOPE", 400), ("GET", "/v1/vms/nope", 404), ("GET", "/v2/vms", 404),
                               ("POST", "/v1/vms/alpha/explode", 404), ("PATCH", "/v1/vms", 405),
                               ("GET", "/v1/vms/alpha/start", 405), ("GET", "/v1/vms/a/b/c", 404),
                               ("GET", "/v1/vms/../../etc", 404), ("POST", "/v1/vms/nope/start", 404)]:
        st, body = d.req(method, path)
        check(f"{method} {path} -> {want}", st == want and "error" in body, (st, body))
    st, body = d.req("GET", "/v1/vms/alpha/definition")
    check("the stored definition is readable JSON", st == 200 and body["name"] == "alpha", (st, body))
    body["cpus"] = 0
    st, err = d.req("PUT", "/v1/vms/alpha", body)
    check("an edit with a bad value is refused", st == 400 and "key 'cpus'" in err["error"], (st, err))
    body["cpus"] = 3
    st, new = d.req("PUT", "/v1/vms/alpha", body)
    check("a valid edit is stored", st == 200 and new["definition"]["cpus"] == 3, (st, new))
    path = os.path.join(tmp, "state", "vms", "alpha.json")
    check("the definition file is mode 0600", os.stat(path).st_mode & 0o777 == 0o600)
    mode = os.stat(d.sock).st_mode & 0o777
    check("the API socket is mode 0600", mode == 0o600, oct(mode))
    st, _ = d.req("DELETE", "/v1/vms/alpha")
    check("rm of a stopped VM works", st == 200 and not os.path.exists(path), st)


def test_concurrent_clients(tmp, d):
    k = kernel(tmp, "conc", {})
    results = []

    def worker(i):
        ok = True
        name = f"c{i}"
        st, _ = d.req("POST", "/v1/vms", definition(name, "client", k))
        ok &= st == 201
        for _ in range(20):
            st, body = d.req("GET", "/v1/vms")
            ok &= st == 200 and any(v["name"] == name for v in body["vms"])
        st, _ = d.req("DELETE", "/v1/vms/" + name)
        ok &= st == 200
        results.append(ok)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    check("8 concurrent clients each see their own VM and all requests succeed",
          len(results) == 8 and all(results), results)


def test_lifecycle(tmp):
    d = Daemon(tmp, jail=os.geteuid() == 0)
    ev = Events(d)
    time.sleep(0.2)
    svc_k = kernel(tmp, "svc", {"on_power_button": "exit"})
    d.req("POST", "/v1/vms", definition("svc", "service", svc_k, vsock={"cid": 3}))
    d.req("POST", "/v1/vms", definition("desk", "client", kernel(tmp, "desk", {"on_power_button": "ignore"}),
                                        depends_on="svc", autostart=True))
    d.req("POST", "/v1/vms", definition("panicky", "service", kernel(tmp, "panicky", {"exit_after": 0.3, "status": 5})))
    d.req("POST", "/v1/vms", definition("off", "service", kernel(tmp, "off", {"exit_after": 0.3, "status": 0})))
    d.stop()

    # A new daemon autostarts the service VMs; the client waits for svc.
    d = Daemon(tmp, jail=os.geteuid() == 0)
    ev = Events(d, since=0)
    e = ev.find("svc", "starting")
    check("events?since=0 replays the autostart that came before any client could connect",
          e is not None and ev.lines[0]["seq"] == 0, ev.lines[:3])
    for bad in ["x", "-1", "", "1x"]:
        st, body = d.req("GET", "/v1/events?since=" + bad)
        check(f"events?since={bad!r} is refused with 400", st == 400 and "since" in body["error"], (st, body))
    svc = d.wait_state("svc", "running")
    check("a service VM autostarts and runs", svc["state"] == "running", svc)
    desk = d.wait_state("desk", "running")
    check("a client VM with depends_on runs after its service VM", desk["state"] == "running", desk)
    with open(svc_k + ".argv") as f:
        argv = json.loads(f.readline())
    check("the VMM gets exactly the definition's devices",
          "--vsock" in argv and "--disk" not in argv and "--net" not in argv and "--rng" not in argv
          and "--api-socket" in argv, argv)
    rundir = os.path.join(tmp, "run", "vms", "svc")
    jailed = os.geteuid() == 0
    check("the per-VM run directory is private (0700, or 0710 for the jailed VMM's group)",
          os.stat(rundir).st_mode & 0o777 == (0o710 if jailed else 0o700), oct(os.stat(rundir).st_mode))
    if os.geteuid() == 0:
        jid = jail_id("svc")
        check("as root, the VMM is jailed as the VM's own user",
              argv[argv.index("--jail") + 1] == f"uid={jid},gid={jid}" if "--jail" in argv else False, argv)
        check("the run directory stays root's; only the jailed VMM's group may enter it",
              os.stat(rundir).st_uid == 0 and os.stat(rundir).st_gid == jid, os.stat(rundir))
        with open(svc_k + ".nspid") as f:
            nspid = int(f.read())
        with open(svc_k + ".pids") as f:
            hostpid = int(f.readline())
        check("the jailed VMM is pid 1 of its own PID namespace; the daemon knows its host pid",
              nspid == 1 and svc["pid"] == hostpid, (nspid, hostpid, svc))

    e = ev.find("panicky", "exited", reason="panic")
    check("exit status 5 is reported as a panic", e is not None)
    e = ev.find("panicky", "restarting")
    check("a panicked service VM is restarted with back-off", e is not None and e["in_ms"] >= 200, e)
    e = ev.find("panicky", "failed", timeout=15)
    check("after 5 failures it is 'failed'", e is not None and d.state("panicky")["state"] == "failed",
          d.state("panicky"))
    delays = [x["in_ms"] for x in ev.lines if x["vm"] == "panicky" and x["event"] == "restarting"]
    check("the back-off doubles", delays == [200, 400, 800, 1600], delays)

    off = d.wait_state("off", "stopped")
    check("a service VM that powered off is not restarted",
          off["last_exit"] == "poweroff" and off["restarts"] == 0, off)

    # kill -9 of the daemon: the VMMs survive, a new daemon re-adopts them.
    pids = {n: d.state(n)["pid"] for n in ("svc", "desk")}
    d.stop(signal.SIGKILL)
    time.sleep(0.3)
    alive = all(os.path.exists(f"/proc/{p}") for p in pids.values())
    check("kill -9 of shojid leaves the VMMs running", alive, pids)
    d = Daemon(tmp, jail=os.geteuid() == 0)
    ev = Events(d)
    svc = d.wait_state("svc", "running")
    desk = d.wait_state("desk", "running")
    check("a new shojid re-adopts them as running with the same pids",
          svc.get("pid") == pids["svc"] and desk.get("pid") == pids["desk"], (svc, desk))
    with open(svc_k + ".argv") as f:
        check("re-adoption did not start svc a second time", len(f.readlines()) == 1)

    # stop: the power button over the VMM's control socket; kill at the timeout.
    st, _ = d.req("POST", "/v1/vms/desk/stop")
    e = ev.find("desk", "stop-timeout", timeout=5)
    with open(os.path.join(tmp, "desk.kernel.events")) as f:
        pressed = f.read()
    check("stop presses the power button over the control socket", st == 202 and "power-button" in pressed)
    desk = d.wait_state("desk", "stopped")
    check("a guest that ignores the button is killed after the timeout",
          e is not None and desk["last_exit"] == "killed", desk)
    st, _ = d.req("POST", "/v1/vms/svc/stop")
    svc = d.wait_state("svc", "stopped")
    check("a guest that powers off on the button stops cleanly", svc["last_exit"] == "poweroff", svc)

    # kill -9 of a VMM: reported as killed, and a service VM comes back.
    d.req("POST", "/v1/vms/svc/start")
    svc = d.wait_state("svc", "running")
    os.kill(svc["pid"], signal.SIGKILL)
    e = ev.find("svc", "exited", reason="killed")
    check("kill -9 of a VMM is reported as 'killed'", e is not None)
    svc = d.wait_state("svc", "running")
    check("and the service VM is restarted", svc["state"] == "running" and svc["restarts"] >= 1, svc)

    # the console log
    st, log = d.req("GET", "/v1/vms/svc/logs")
    check("the console log holds the guest's output", st == 200 and b"fake-vmm: console up" in log, log)
    d.req("POST", "/v1/vms/svc/kill")
    d.wait_state("svc", "stopped")
    d.stop()


def timed_req(d, method, path):
    t = time.time()
    st, body = d.req(method, path)
    return st, body, time.time() - t


def alive(pid):
    """A process that exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def run_state(tmp, name):
    with open(os.path.join(tmp, "run", "vms", name, "state.json")) as f:
        return json.load(f)


def test_keeper_killed(tmp):
    """1.2: kill -9 of a VMM's keeper must not leave that VMM running beside
    the one the daemon starts next."""
    d = Daemon(tmp)
    k = kernel(tmp, "kept", {"on_power_button": "exit"})
    d.req("POST", "/v1/vms", definition("kept", "service", k))
    d.req("POST", "/v1/vms/kept/start")
    first = d.wait_state("kept", "running")
    keeper = run_state(tmp, "kept")["keeper_pid"]
    with open(f"/proc/{keeper}/comm") as f:
        comm = f.read().strip()
    check("the keeper is named shojid-keeper", comm == "shojid-keeper", comm)
    os.kill(keeper, signal.SIGKILL)
    deadline = time.time() + 8
    second = first
    while time.time() < deadline and second.get("pid") in (None, first["pid"]):
        time.sleep(0.05)
        second = d.state("kept")
    second = d.wait_state("kept", "running")
    time.sleep(0.3)
    pids = [int(p) for p in open(k + ".pids").read().split()]
    live = [p for p in pids if alive(p)]
    check("a killed keeper's VMM is gone and exactly one VMM runs after the restart",
          not alive(first["pid"]) and live == [second.get("pid")], (first.get("pid"), live, second))
    d.req("POST", "/v1/vms/kept/kill")
    d.wait_state("kept", "stopped")
    d.stop()


def test_exit_reasons(tmp):
    """1.3: a crash signal is vmm-crash, not killed; exit 1/2/127 before the
    control socket answers is start-failed; a service VM is not restarted
    after exit 2 (bad usage) and says what the VMM printed."""
    d = Daemon(tmp)
    ev = Events(d)
    d.req("POST", "/v1/vms", definition("segv", "client", kernel(tmp, "segv", {"signal_after": 0.5})))
    d.req("POST", "/v1/vms", definition("abrt", "client", kernel(tmp, "abrt", {"signal_after": 0.5, "signal": "ABRT"})))
    d.req("POST", "/v1/vms", definition("term", "client", kernel(tmp, "term", {"signal_after": 0.5, "signal": "TERM"})))
    d.req("POST", "/v1/vms", definition("usage", "service", kernel(
        tmp, "usage", {"exit_at_once": 2, "stderr": "shoji-vmm: --frob: unknown option"})))
    d.req("POST", "/v1/vms", definition("exit1", "service", kernel(tmp, "exit1", {"exit_at_once": 1, "stderr": "no kvm"})))
    for name in ("segv", "abrt", "term", "usage", "exit1"):
        d.req("POST", f"/v1/vms/{name}/start")
    e = ev.find("segv", "exited")
    check("SIGSEGV of a VMM is vmm-crash", e is not None and e["reason"] == "vmm-crash" and e.get("signal") == 11, e)
    e = ev.find("abrt", "exited")
    check("SIGABRT of a VMM is vmm-crash", e is not None and e["reason"] == "vmm-crash", e)
    e = ev.find("term", "exited")
    check("SIGTERM of a VMM is killed", e is not None and e["reason"] == "killed", e)
    e = ev.find("usage", "exited")
    f = ev.find("usage", "failed")
    time.sleep(0.5)
    st = d.state("usage")
    check("exit 2 at start is start-failed and a service VM is failed at once, not restarted",
          e is not None and e["reason"] == "start-failed" and e.get("status") == 2 and f is not None
          and st["state"] == "failed" and st["restarts"] == 0
          and not any(x["vm"] == "usage" and x["event"] == "restarting" for x in ev.lines), (e, f, st))
    check("the VMM's last stderr line is in the state and the events",
          st.get("error") == "shoji-vmm: --frob: unknown option" and f.get("error") == st.get("error"), (st, f))
    e = ev.find("exit1", "exited")
    r = ev.find("exit1", "restarting")
    check("exit 1 at start is start-failed and a service VM retries with back-off",
          e is not None and e["reason"] == "start-failed" and e.get("error") == "no kvm" and r is not None, (e, r))
    d.req("POST", "/v1/vms/exit1/stop")
    d.stop()


def test_unconfirmed_vmm(tmp):
    """1.8: a re-adopted VM whose VMM pid could not be confirmed (no pidfd)
    can still be killed: through its keeper, which takes the VMM along."""
    d = Daemon(tmp)
    k = kernel(tmp, "unconf", {"on_power_button": "ignore"})
    d.req("POST", "/v1/vms", definition("unconf", "client", k))
    d.req("POST", "/v1/vms/unconf/start")
    vmm = d.wait_state("unconf", "running")["pid"]
    d.stop(signal.SIGKILL)
    path = os.path.join(tmp, "run", "vms", "unconf", "state.json")
    st = run_state(tmp, "unconf")
    st["vmm_start"] += 1  # as if the pid named another process now
    with open(path, "w") as f:
        json.dump(st, f)
    d = Daemon(tmp)
    d.wait_state("unconf", "running")
    code, body = d.req("POST", "/v1/vms/unconf/kill")
    un = d.wait_state("unconf", "stopped")
    time.sleep(0.2)
    check("kill of a VM without a VMM pidfd ends it through the keeper",
          code == 202 and un["state"] == "stopped" and un.get("last_exit") == "killed" and not alive(vmm),
          (code, body, un, alive(vmm)))
    d.stop()


def test_load_and_rm(tmp):
    """1.10: a hand-edited depends_on is checked at load; rm removes the logs."""
    vms = os.path.join(tmp, "state", "vms")
    os.makedirs(vms, exist_ok=True)
    k = kernel(tmp, "plain2", {"on_power_button": "exit"})
    with open(os.path.join(vms, "orphan.json"), "w") as f:
        json.dump(definition("orphan", "client", k, depends_on="ghost"), f)
    d = Daemon(tmp)
    st, body = d.req("GET", "/v1/vms")
    inv = [i for i in body["invalid"] if i["file"].endswith("orphan.json")]
    check("a hand-edited depends_on on a missing VM is refused at load, naming file and key",
          inv and "key 'depends_on'" in inv[0]["error"] and "ghost" in inv[0]["error"]
          and not any(v["name"] == "orphan" for v in body["vms"]), body)
    os.unlink(os.path.join(vms, "orphan.json"))
    d.req("POST", "/v1/vms", definition("reborn", "client", k))
    d.req("POST", "/v1/vms/reborn/start")
    d.wait_state("reborn", "running")
    deadline = time.time() + 5
    while time.time() < deadline and b"console up" not in (d.req("GET", "/v1/vms/reborn/logs")[1] or b""):
        time.sleep(0.05)
    d.req("POST", "/v1/vms/reborn/kill")
    d.wait_state("reborn", "stopped")
    d.req("DELETE", "/v1/vms/reborn")
    logs = os.path.join(tmp, "state", "logs")
    left = [n for n in os.listdir(logs) if n.startswith("reborn.")]
    d.req("POST", "/v1/vms", definition("reborn", "client", k))
    st, log = d.req("GET", "/v1/vms/reborn/logs")
    check("rm removes the console and VMM logs; a new VM of that name starts with none",
          left == [] and log in (b"", None), (left, log))
    d.req("DELETE", "/v1/vms/reborn")
    d.stop()


def threads(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(l for l in f if l.startswith("Threads:")).split()[1])


def raw_get(d, path):
    """A streaming GET left open: the socket, and the status line's code."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(d.sock)
    s.sendall(b"GET %s HTTP/1.0\r\nHost: x\r\n\r\n" % path.encode())
    head = b""
    while b"\r\n" not in head:
        data = s.recv(1)
        if not data:
            break
        head += data
    return s, int(head.split()[1]) if head.startswith(b"HTTP/") else 0


def console_attach(d, name):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(d.sock)
    s.sendall(b"POST /v1/vms/%s/console HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
              b"Upgrade: shoji-console\r\nContent-Length: 0\r\n\r\n" % name.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    return s, head


def test_streams(tmp):
    """1.4-1.6: a console client that reads slowly keeps its console; logs -f
    readers that left are cleaned up; streams cannot take every connection."""
    d = Daemon(tmp)
    k = kernel(tmp, "chatty", {"console_flood": 4 << 20, "flood_after": 1.0})
    d.req("POST", "/v1/vms", definition("chatty", "client", k))
    d.req("POST", "/v1/vms/chatty/start")
    d.wait_state("chatty", "running")
    s, head = console_attach(d, "chatty")
    time.sleep(3)  # not reading while 4 MiB arrive: the relay's sends meet EAGAIN
    got = 0
    s.settimeout(1)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                break
            got += len(data)
    except socket.timeout:
        data = b"still open"
    echo = b""
    try:
        s.sendall(b"hello\n")
        while b"echo:hello" not in echo:
            more = s.recv(65536)
            if not more:
                break
            echo = (echo + more)[-4096:]
    except OSError:  # a timeout, or the old relay's closed console
        pass
    check("a console client that reads slower than the guest writes keeps its console",
          head.startswith(b"HTTP/1.1 101") and data and b"echo:hello" in echo, (head[:20], got, echo[-40:]))
    s.close()
    time.sleep(0.5)  # the console's relay thread ends

    base = threads(d.proc.pid)
    followers = [raw_get(d, "/v1/vms/chatty/logs?follow=1")[0] for _ in range(6)]
    time.sleep(0.5)
    during = threads(d.proc.pid)
    for f in followers:
        f.close()
    deadline = time.time() + 5
    while time.time() < deadline and threads(d.proc.pid) > base:
        time.sleep(0.1)
    after = threads(d.proc.pid)
    check("logs -f readers that left are cleaned up", during >= base + 6 and after <= base, (base, during, after))

    held = []
    for _ in range(32):
        sock, code = raw_get(d, "/v1/events")
        held.append((sock, code))
    extra, code = raw_get(d, "/v1/events")
    st, _ = d.req("GET", "/v1/version")
    check("32 streams are served, the 33rd gets 503 and requests still work",
          all(c == 200 for _, c in held) and code == 503 and st == 200, ([c for _, c in held], code, st))
    extra.close()
    for sock, _ in held:
        sock.close()
    time.sleep(2.5)
    sock, code = raw_get(d, "/v1/events")
    check("closed event streams give their places back", code == 200, code)
    sock.close()
    d.req("POST", "/v1/vms/chatty/kill")
    d.wait_state("chatty", "stopped")
    d.stop()


def test_dir_checks(tmp):
    """2.1: a run or state directory others may write to is refused; a
    definition file that is a symlink is not followed."""
    bad = os.path.join(tmp, "open-run")
    os.mkdir(bad)
    os.chmod(bad, 0o777)
    p = subprocess.run([SHOJID, "--state-dir", os.path.join(tmp, "state"), "--run-dir", bad, "--vmm", FAKE],
                       capture_output=True, text=True, timeout=10)
    check("a run directory writable by others is refused with one line",
          p.returncode == 1 and "writable by group or others" in p.stderr, (p.returncode, p.stderr))
    os.chmod(bad, 0o700)
    link = os.path.join(tmp, "state", "vms", "linked.json")
    target = os.path.join(tmp, "elsewhere.json")
    with open(target, "w") as f:
        json.dump(definition("linked", "client", kernel(tmp, "linked", {})), f)
    os.symlink(target, link)
    d = Daemon(tmp)
    st, body = d.req("GET", "/v1/vms")
    inv = [i for i in body["invalid"] if i["file"].endswith("linked.json")]
    check("a definition file that is a symlink is not followed",
          inv and not any(v["name"] == "linked" for v in body["vms"]), body)
    os.unlink(link)
    d.stop()


def test_backing_confined(tmp):
    """Issue 16 item 1: a qcow2 disk whose backing file lies outside the
    daemon's image directories (or is no regular file) is not started: the
    VMM never runs, the log names the file, start-failed gives a reason; a
    disk whose chain stays inside starts, and the VMM is told the
    directories (backing-dir=)."""
    img = os.path.join(os.path.dirname(SHOJID), "shoji-img")
    images = os.path.join(tmp, "images")
    private = os.path.join(tmp, "private")
    os.makedirs(images)
    os.makedirs(private)
    with open(os.path.join(private, "secret"), "wb") as f:
        f.write(b"secret".ljust(65536, b"\0"))
    with open(os.path.join(images, "base.raw"), "wb") as f:
        f.truncate(1 << 20)
    for name, backing in (("hostile", os.path.join(private, "secret")), ("dotdot", "../private/secret"),
                          ("device", "/dev/zero"), ("good", "base.raw")):
        subprocess.run([img, "create", "-f", "qcow2", "-b", backing, "-F", "raw",
                        os.path.join(images, name + ".qcow2"), "1M"], check=True, capture_output=True)
    d = Daemon(tmp, extra=("--image-dir", images))
    ev = Events(d, since=0)  # from the first event, however late the stream connects
    for name in ("hostile", "dotdot", "device", "good"):
        d.req("POST", "/v1/vms", definition(name, "client", kernel(tmp, "bk-" + name, {}),
                                            disks=[{"path": os.path.join(images, name + ".qcow2"),
                                                    "format": "qcow2"}]))
        d.req("POST", f"/v1/vms/{name}/start")
    for name in ("hostile", "dotdot", "device"):
        e = ev.find(name, "start-failed")
        check(f"a disk backed by {name} is refused before any VMM runs",
              e is not None and name + ".qcow2" in e.get("reason", "")
              and not os.path.exists(os.path.join(tmp, "bk-" + name + ".kernel.argv")), e)
    log = open(os.path.join(tmp, "shojid.log")).read()
    check("the log names the backing file and the fix",
          "private/secret' lies outside the directories allowed" in log and "--image-dir" in log
          and "'/dev/zero' lies outside the directories allowed" in log, log[-2000:])
    good = d.wait_state("good", "running")
    check("a disk whose chain stays in the image directory starts", good["state"] == "running", good)
    with open(os.path.join(tmp, "bk-good.kernel.argv")) as f:
        argv = json.loads(f.readline())
    check("the VMM is given the image directory as backing-dir",
          any(a.endswith(",backing-dir=" + images) for a in argv), argv)
    bad = subprocess.run([SHOJID, "--image-dir", os.path.join(tmp, "nowhere")], capture_output=True,
                         text=True, timeout=10)
    check("--image-dir of a missing directory is refused in one line",
          bad.returncode == 2 and "nowhere" in bad.stderr and bad.stderr.count("\n") == 1, bad.stderr)
    d.req("POST", "/v1/vms/good/kill")
    d.wait_state("good", "stopped")
    d.stop()


def shoji(d, *args):
    cli = os.path.join(os.path.dirname(SHOJID), "shoji")
    return subprocess.run([cli, "--socket", d.sock, *args], capture_output=True, text=True, timeout=10)


def test_cli_errors(tmp):
    """3: the CLI's errors are one line each, names are checked before any request."""
    d = Daemon(tmp)
    cli = os.path.join(os.path.dirname(SHOJID), "shoji")
    p = subprocess.run([cli, "--socket"], capture_output=True, text=True, timeout=10)
    check("--socket without a value says so", p.returncode == 2 and "'--socket' needs a value" in p.stderr, p.stderr)
    for args in (("vm", "kill", "x/kill"), ("vm", "show", "../etc"), ("vm", "create", "Bad", "--kernel", "/k")):
        p = shoji(d, *args)
        check(f"shoji {' '.join(args)}: bad name refused by the CLI",
              p.returncode == 2 and p.stderr.startswith("shoji: bad VM name") and p.stderr.count("\n") == 1, p.stderr)
    for args in (("vm", "logs", "nope"), ("vm", "logs", "nope", "-f"), ("vm", "console", "nope"),
                 ("vm", "show", "nope")):
        p = shoji(d, *args)
        check(f"shoji {' '.join(args)}: the error is one plain line, not JSON",
              p.returncode == 1 and p.stderr == "shoji: no VM named 'nope'\n", (p.returncode, p.stderr))
    d.stop()


def test_hung_vmm(tmp):
    """1.1: a VMM whose control socket never accepts (its backlog full) must
    not freeze the daemon, and is killed as a failed start at --start-timeout."""
    d = Daemon(tmp, extra=("--start-timeout", "2"))
    ev = Events(d)
    d.req("POST", "/v1/vms", definition("hung", "client", kernel(tmp, "hung", {"api_never_accept": True})))
    st, _ = d.req("POST", "/v1/vms/hung/start")
    time.sleep(0.6)  # several pings: the backlog is full after the first
    worst = max(timed_req(d, "GET", "/v1/vms")[2] for _ in range(5))
    check("a VMM that never accepts does not hold up the API", st == 202 and worst < 0.5, worst)
    e = ev.find("hung", "start-timeout", timeout=5)
    hung = d.wait_state("hung", "stopped")
    check("it is killed at --start-timeout and reported as start-failed",
          e is not None and hung["last_exit"] == "start-failed", (e, hung))
    d.req("POST", "/v1/vms/hung/start")
    time.sleep(0.3)
    st, body, took = timed_req(d, "POST", "/v1/vms/hung/stop")
    check("stop while starting is refused with 409 (no button to press yet), at once",
          st == 409 and "still starting" in body["error"] and took < 0.5, (st, body, took))
    d.req("POST", "/v1/vms/hung/kill")
    d.wait_state("hung", "stopped")

    # Answers the first ping (running), then accepts nothing: stop's button press times out.
    d.req("POST", "/v1/vms", definition("mute", "client", kernel(tmp, "mute", {"api_accept_count": 1,
                                                                               "on_power_button": "ignore"})))
    d.req("POST", "/v1/vms/mute/start")
    d.wait_state("mute", "running")
    for _ in range(9):  # fill the backlog of 8 (+1) so a connect would block
        c = socket.socket(socket.AF_UNIX)
        c.setblocking(False)
        try:
            c.connect(os.path.join(tmp, "run", "vms", "mute", "api.sock"))
        except OSError:
            pass
    result = {}
    t = threading.Thread(target=lambda: result.update(stop=timed_req(d, "POST", "/v1/vms/mute/stop")))
    t.start()
    time.sleep(0.1)
    _, _, took = timed_req(d, "GET", "/v1/vms")
    t.join()
    mute = d.wait_state("mute", "stopped")
    check("a power button that gets no answer holds up no other request, and the VMM is killed",
          took < 0.3 and result["stop"][0] == 202 and result["stop"][2] < 1.5 and mute["last_exit"] == "killed",
          (took, result, mute))
    st, _, took = timed_req(d, "GET", "/v1/version")
    check("the daemon still answers at once", st == 200 and took < 0.5, took)
    d.stop()


def test_vmm_log_cap(tmp):
    """issue 16.3: the VMM's stderr log stays under --vmm-log-max while the VM
    runs, rotating into NAME.vmm.log.1; the newest lines are kept."""
    p = subprocess.run([SHOJID, "--vmm-log-max", "1K"], capture_output=True, text=True, timeout=10)
    check("--vmm-log-max below 4K is refused in one line",
          p.returncode == 2 and "--vmm-log-max 1K" in p.stderr and p.stderr.count("\n") == 1,
          (p.returncode, p.stderr))
    cap = 64 << 10
    d = Daemon(tmp, extra=("--vmm-log-max", "64K"))
    k = kernel(tmp, "noisy", {"stderr_flood": 2 << 20, "on_power_button": "ignore"})
    d.req("POST", "/v1/vms", definition("noisy", "client", k))
    d.req("POST", "/v1/vms/noisy/start")
    deadline = time.time() + 20
    while not os.path.exists(k + ".flooded") and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # the keeper copies what is still in the pipe
    log = os.path.join(tmp, "state", "logs", "noisy.vmm.log")
    sizes = [os.path.getsize(p) if os.path.exists(p) else None for p in (log, log + ".1")]
    last = open(log, "rb").read().splitlines()[-1] if sizes[0] else b""
    old = open(log + ".1", "rb").read() if sizes[1] else b""
    running = d.state("noisy")["state"]
    check("2 MiB of VMM stderr leave the log and its one older file each under 64 KiB",
          os.path.exists(k + ".flooded") and sizes[0] is not None and sizes[1] is not None
          and sizes[0] <= cap and sizes[1] <= cap and sizes[1] > cap // 2, sizes)
    check("the newest lines are kept, the older ones in NAME.vmm.log.1, and the VM runs on",
          last.startswith(b"fake-vmm: flood line 2047 ") and b"flood line" in old and running == "running",
          (last[:40], old[:40], running))
    d.req("POST", "/v1/vms/noisy/kill")
    d.wait_state("noisy", "stopped")
    d.req("DELETE", "/v1/vms/noisy")
    gone = [p for p in (log, log + ".1") if os.path.exists(p)]
    check("rm removes both VMM log files", not gone, gone)
    d.stop()


def test_config_file(tmp):
    """issue 25: shojid reads its settings from a file (--config), a flag
    overrides the file's line, and a mistake in the file stops it with one
    line naming FILE:LINE and the key."""
    base = os.path.join(tmp, "conf")
    os.makedirs(base)
    conf = os.path.join(base, "shojid.conf")
    with open(conf, "w") as f:
        f.write("# settings of a test daemon\n\n"
                f"state-dir = {base}/state\n"
                f"run-dir   = {base}/run\n"
                f"socket = {base}/file.sock\n"
                f"vmm = {FAKE}\n"
                "jail = off\n"
                "log-level = debug\n")
    flag_sock = os.path.join(base, "flag.sock")
    p = subprocess.Popen([SHOJID, "--config", conf, "--socket", flag_sock],
                         stderr=open(os.path.join(base, "shojid.log"), "w"))
    daemons.append(p)
    deadline = time.time() + 5
    log = ""
    while "serving" not in log and p.poll() is None and time.time() < deadline:
        time.sleep(0.02)
        log = open(os.path.join(base, "shojid.log")).read()
    check("shojid runs on the file's settings, the --socket flag overriding the file's socket",
          p.poll() is None and os.path.exists(flag_sock) and not os.path.exists(base + "/file.sock")
          and os.path.isdir(base + "/state/vms") and f"state {base}/state" in log, log)
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=10)

    with open(conf, "a") as f:
        f.write("stop-timeout = 0\n")
    bad = subprocess.run([SHOJID, "--config", conf], capture_output=True, text=True, timeout=10)
    check("a bad value is refused in one line naming FILE:LINE and the key",
          bad.returncode == 2 and bad.stderr.count("\n") == 1
          and f"{conf}:9: stop-timeout = 0: must be a number" in bad.stderr, (bad.returncode, bad.stderr))
    with open(conf, "w") as f:
        f.write("stat-dir = /tmp\n")
    bad = subprocess.run([SHOJID, "--config", conf, "--stop-timeout", "5"], capture_output=True, text=True,
                         timeout=10)
    check("an unknown key is refused in one line with a suggestion",
          bad.returncode == 2 and bad.stderr.count("\n") == 1
          and f"{conf}:1: unknown key 'stat-dir'; did you mean 'state-dir'?" in bad.stderr, bad.stderr)
    bad = subprocess.run([SHOJID, "--config", base + "/none.conf"], capture_output=True, text=True, timeout=10)
    check("a missing --config file is refused in one line",
          bad.returncode == 2 and bad.stderr.count("\n") == 1 and "none.conf: No such file" in bad.stderr,
          bad.stderr)


def main():
    tmp = tempfile.mkdtemp(prefix="shoji-daemon-")
    try:
        d = Daemon(tmp)
        test_api_validation(tmp, d)
        test_concurrent_clients(tmp, d)
        st, _ = d.req("GET", "/v1/version")
        check("the daemon still answers after the hostile requests", st == 200)
        d.stop()
        test_hung_vmm(tmp)
        test_keeper_killed(tmp)
        test_exit_reasons(tmp)
        test_unconfirmed_vmm(tmp)
        test_load_and_rm(tmp)
        test_streams(tmp)
        test_dir_checks(tmp)
        test_cli_errors(tmp)
        test_backing_confined(tmp)
        test_vmm_log_cap(tmp)
        test_config_file(tmp)
        test_lifecycle(tmp)
    finally:
        finish(tmp, daemons)


main()
