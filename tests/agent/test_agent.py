#!/usr/bin/env python3
"""shoji-agent's integration test: the real agent on the host in test mode
(--listen-unix, any peer, shutdown and set-time only pretend), driven by a
small client of the frames of docs/agent.md written here from the spec.

usage: test_agent.py SHOJI_AGENT"""
import hashlib
import json
import os
import re
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "daemon"))
from harness import check, finish  # noqa: E402

REQUEST, REPLY, STDIN, STDOUT, STDERR, EXIT, CONTROL, DATA = range(1, 9)
MAX = 65536


class Conn:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(20)
        self.s.connect(path)

    def send(self, t, payload=b""):
        self.s.sendall(bytes([t]) + len(payload).to_bytes(3, "big") + payload)

    def send_json(self, t, obj):
        self.send(t, json.dumps(obj).encode())

    def _exactly(self, n):
        buf = b""
        while len(buf) < n:
            got = self.s.recv(n - len(buf))
            if not got:
                return None
            buf += got
        return buf

    def recv(self):
        """(type, payload), or None at the end of the stream."""
        try:
            hdr = self._exactly(4)
        except ConnectionResetError:
            return None
        if hdr is None:
            return None
        n = int.from_bytes(hdr[1:], "big")
        assert n <= MAX, f"frame of {n} bytes"
        payload = self._exactly(n) if n else b""
        assert payload is not None, "end of stream inside a frame"
        return hdr[0], payload

    def reply(self):
        f = self.recv()
        if f is None:
            return None
        assert f[0] == REPLY, f"expected REPLY, got {f}"
        return json.loads(f[1])

    def request(self, obj):
        self.send_json(REQUEST, obj)
        return self.reply()

    def close(self):
        self.s.close()


def one(path, obj):
    c = Conn(path)
    r = c.request(obj)
    c.close()
    return r


def run(path, req, stdin=b"", controls=()):
    """Runs an exec: (first reply, stdout, stderr, exit object). stdin is
    sent from a thread in frames, while the output is read, then ended."""
    c = Conn(path)
    r = c.request(dict(op="exec", **req))
    if "ok" not in r:
        c.close()
        return r, b"", b"", None

    def feed():
        try:
            for ctl in controls:
                c.send_json(CONTROL, ctl)
            for i in range(0, len(stdin), MAX):
                c.send(STDIN, stdin[i:i + MAX])
            c.send(STDIN)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the command ended first: the agent sent EXIT and closed
    feeder = threading.Thread(target=feed)
    feeder.start()
    out, err, ends, ex = [], [], set(), None
    while True:
        f = c.recv()
        if f is None:
            break
        t, p = f
        if t == EXIT:
            ex = json.loads(p)
            break
        if t in (STDOUT, STDERR):
            if p:
                (out if t == STDOUT else err).append(p)
            else:
                ends.add(t)
    feeder.join()
    c.close()
    check(f"exec {req['argv'][:2]}: output ends before EXIT",
          ex is None or STDOUT in ends and (req.get("tty") or STDERR in ends), str(ends))
    return r, b"".join(out), b"".join(err), ex


def process_group_alive(pgid):
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                fields = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def wait_for(cond, secs=10):
    end = time.time() + secs
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_simple_ops(path):
    r = one(path, {"op": "ping"})
    check("ping", r.get("ok") is True and r.get("uptime_s", 0) > 0, r)
    r = one(path, {"op": "info"})
    check("info names the agent and protocol",
          r.get("agent") == "shoji-agent" and r.get("protocol") == 1 and r.get("version"), r)
    check("info: kernel and hostname", r.get("kernel") == os.uname().release and
          r.get("hostname") == socket.gethostname(), r)
    addrs = r.get("addresses", [])
    check("info: no loopback addresses",
          all(a["address"] not in ("127.0.0.1", "::1") for a in addrs), addrs)
    check("info: os from os-release", isinstance(r.get("os"), dict) and "id" in r["os"], r.get("os"))
    r = one(path, {"op": "shutdown"})
    check("shutdown answers ok (test mode: nothing happens)", r == {"ok": True}, r)
    r = one(path, {"op": "set-time", "time": time.time() + 100})
    check("set-time answers adjusted_s (test mode: clock untouched)",
          r.get("ok") and 99 < r.get("adjusted_s", 0) < 101, r)


def test_exec(path):
    r, out, err, ex = run(path, {"argv": ["echo", "hello"]})
    check("exec echo", r.get("ok") and isinstance(r.get("pid"), int) and out == b"hello\n"
          and ex == {"status": 0}, (r, out, ex))
    data = os.urandom(5 * 1024 * 1024 + 123)
    r, out, err, ex = run(path, {"argv": ["cat"]}, stdin=data)
    check("exec cat: 5 MiB of stdin round trip",
          hashlib.sha256(out).hexdigest() == hashlib.sha256(data).hexdigest() and ex == {"status": 0},
          f"{len(out)} bytes, {ex}")
    r, out, err, ex = run(path, {"argv": ["sh", "-c", "echo out; echo err >&2; exit 42"]})
    check("exec: status 42, stderr apart", out == b"out\n" and err == b"err\n" and ex == {"status": 42},
          (out, err, ex))
    r, out, err, ex = run(path, {"argv": ["sh", "-c", "kill -TERM $$"]})
    check("exec: killed by a signal", ex == {"signal": 15}, ex)
    r, out, err, ex = run(path, {"argv": ["sh", "-c", "echo $FOO $HOME; pwd"], "env": ["FOO=bar"],
                                 "cwd": "/tmp"})
    check("exec: env and cwd", out == b"bar /root\n/tmp\n", out)
    r, out, err, ex = run(path, {"argv": ["sh", "-c", "sleep 5"]}, controls=[{"signal": 9}])
    check("exec: CONTROL signal", ex == {"signal": 9}, ex)
    r, *_ = run(path, {"argv": ["no-such-program-here"]})
    check("exec: missing program", r == {"error": "no-such-program-here: No such file or directory"}, r)
    r, *_ = run(path, {"argv": ["true"], "cwd": "/no/such/dir"})
    check("exec: missing cwd", r == {"error": "/no/such/dir: No such file or directory"}, r)


def test_tty(path):
    r, out, err, ex = run(path, {"argv": ["tty"], "tty": True})
    check("tty: on a pseudo-terminal", re.fullmatch(rb"/dev/pts/\d+\r\n", out) and ex == {"status": 0},
          (out, ex))
    r, out, err, ex = run(path, {"argv": ["stty", "size"], "tty": True, "rows": 33, "cols": 111})
    check("tty: rows and cols", out == b"33 111\r\n", out)
    r, out, err, ex = run(path, {"argv": ["sh", "-c", "read x; stty size; echo $TERM"], "tty": True},
                          stdin=b"go\n", controls=[{"rows": 40, "cols": 100}])
    check("tty: CONTROL resize, TERM set", b"40 100\r\n" in out and b"xterm" in out, out)
    r, out, err, ex = run(path, {"argv": ["cat"], "tty": True}, stdin=b"abc\n")
    check("tty: empty STDIN is end of input", ex == {"status": 0} and b"abc" in out, (out, ex))


def write_file(path, target, data, mode=None, declared=None):
    c = Conn(path)
    req = {"op": "write-file", "path": target, "size": len(data) if declared is None else declared}
    if mode is not None:
        req["mode"] = mode
    r = c.request(req)
    if not r.get("ok"):
        c.close()
        return r
    for i in range(0, len(data), MAX):
        c.send(DATA, data[i:i + MAX])
    c.send(DATA)
    r = c.reply()
    c.close()
    return r


def read_file(path, target):
    c = Conn(path)
    r = c.request({"op": "read-file", "path": target})
    parts, ended = [], False
    if r.get("ok"):
        while True:
            f = c.recv()
            if f is None:
                break
            assert f[0] == DATA
            if not f[1]:
                ended = True
                break
            parts.append(f[1])
    c.close()
    return r, b"".join(parts), ended


def test_files(path, tmp):
    data = os.urandom(3 * 1024 * 1024 + 7)
    target = os.path.join(tmp, "copy.bin")
    r = write_file(path, target, data, mode=0o600)
    check("write-file 3 MiB", r == {"ok": True, "size": len(data)}, r)
    st = os.stat(target)
    check("write-file: byte-exact, mode 0600", open(target, "rb").read() == data and
          stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode))
    r, got, ended = read_file(path, target)
    check("read-file back", r == {"ok": True, "size": len(data), "mode": 0o600} and got == data and ended,
          (r, len(got), ended))
    r = write_file(path, os.path.join(tmp, "empty"), b"")
    check("write-file: empty file, default mode 0644",
          r.get("ok") and stat.S_IMODE(os.stat(os.path.join(tmp, "empty")).st_mode) == 0o644, r)
    short = os.path.join(tmp, "short")
    r = write_file(path, short, b"x" * 100, declared=200)
    check("write-file: fewer bytes than size is an error", "error" in r and "100 of 200" in r["error"], r)
    r = write_file(path, short, b"x" * 300, declared=200)
    check("write-file: more bytes than size is an error", "error" in r, r)
    check("write-file: failed copies leave nothing",
          sorted(os.listdir(tmp)) == sorted(["copy.bin", "empty", "agent.sock", "agent.log"]),
          os.listdir(tmp))
    r = write_file(path, "/no/such/dir/x", b"x")
    check("write-file: missing directory", r == {"error": "/no/such/dir/x: No such file or directory"}, r)
    r, _, _ = read_file(path, "/no/such/file")
    check("read-file: missing file", r == {"error": "/no/such/file: No such file or directory"}, r)
    r, _, _ = read_file(path, "etc/hostname")
    check("read-file: relative path", "error" in r and "absolute" in r["error"], r)
    r, _, _ = read_file(path, tmp)
    check("read-file: a directory", r == {"error": f"{tmp}: not a regular file"}, r)


def test_protocol_errors(path):
    r = one(path, {"op": "reboot-now"})
    check("unknown op", "error" in r and "unknown op" in r["error"], r)
    r = one(path, {"op": "ping", "extra": 1})
    check("unknown key", "error" in r and "unknown key 'extra'" in r["error"], r)
    for name, raw in [("unknown frame type", b"\x63\x00\x00\x00"),
                      ("oversize frame", b"\x01\x01\x00\x01" + b"{" * 100),
                      ("not JSON", b"\x01\x00\x00\x03abc"),
                      ("STDIN first", b"\x03\x00\x00\x01x")]:
        c = Conn(path)
        c.s.sendall(raw)
        r = c.reply()
        rest = c.recv()
        c.close()
        check(f"{name}: error reply, connection closed", r and "error" in r and rest is None, (r, rest))
    c = Conn(path)
    c.s.sendall(b"\x01\x00\x00\x10{\"op\"")   # a frame cut short, then the host leaves
    c.close()
    r = one(path, {"op": "ping"})
    check("agent still serves after malformed frames", r.get("ok") is True, r)


def test_disconnect(path):
    c = Conn(path)
    r = c.request({"op": "exec", "argv": ["sh", "-c", "sleep 1000 & sleep 1000"]})
    pid = r.get("pid")
    check("exec sleep starts", isinstance(pid, int), r)
    if not isinstance(pid, int):
        return
    check("its process group runs", wait_for(lambda: process_group_alive(pid), 5))
    c.close()
    check("host leaving kills the whole process group", wait_for(lambda: not process_group_alive(pid)))

    # The command ends, but its background child holds stdout open: no EXIT
    # yet (output not drained); the host leaving still takes the child.
    c = Conn(path)
    r = c.request({"op": "exec", "argv": ["sh", "-c", "sleep 1000 & exit 3"]})
    pid = r.get("pid")
    time.sleep(0.3)
    c.s.settimeout(0.5)
    try:
        early = c.recv()
    except socket.timeout:
        early = "nothing"
    check("output held open by a background child: no EXIT yet", early == "nothing", early)
    c.close()
    check("host leaving kills what is left of the group",
          isinstance(pid, int) and wait_for(lambda: not process_group_alive(pid)))


def test_slow_host(path, agent_pid):
    """A host that does not read stalls the command: the agent holds one frame."""
    c = Conn(path)
    c.request({"op": "exec", "argv": ["yes"]})
    time.sleep(1.5)
    rss = int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{agent_pid}/status").read()).group(1))
    check("a host that does not read: agent's memory stays small", rss < 32 * 1024, f"{rss} KiB")
    c.close()


def test_limit(path):
    conns = []
    for _ in range(32):
        c = Conn(path)
        r = c.request({"op": "exec", "argv": ["sleep", "100"]})
        conns.append(c)
    extra = Conn(path)
    try:
        extra.send_json(REQUEST, {"op": "ping"})
        r = extra.recv()
    except (BrokenPipeError, ConnectionResetError):
        r = None
    extra.close()
    check("the 33rd connection is closed unanswered", r is None, r)
    for c in conns:
        c.close()
    time.sleep(0.5)
    r = one(path, {"op": "ping"})
    check("connections free again", r.get("ok") is True, r)


def main():
    agent = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="shoji-agent-test.")
    path = os.path.join(tmp, "agent.sock")
    log = open(os.path.join(tmp, "agent.log"), "w")
    proc = subprocess.Popen([agent, "--listen-unix", path], stderr=log)
    try:
        check("agent listens", wait_for(lambda: os.path.exists(path), 5))
        test_simple_ops(path)
        test_exec(path)
        test_tty(path)
        test_files(path, tmp)
        test_protocol_errors(path)
        test_disconnect(path)
        test_slow_host(path, proc.pid)
        test_limit(path)
        check("agent still running", proc.poll() is None, proc.returncode)
    except Exception as e:  # a crash of the test is a failure, with the log kept
        check("test ran to the end", False, repr(e))
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    finish(tmp, [])


if __name__ == "__main__":
    main()
