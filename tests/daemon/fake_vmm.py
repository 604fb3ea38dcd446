#!/usr/bin/env python3
"""A stand-in for shoji-vmm that tests the daemon's supervisor, not the VMM.

shojid runs it exactly as it would run shoji-vmm. It parses the options the
daemon gives, records them (KERNEL.argv, one JSON list per start), serves
the VMM control protocol on --api-socket ({"op":"ping"} and
{"op":"power-button"}, one JSON object per line), writes a line to its
--serial socket, and exits as the "kernel" file tells it to. The kernel file
is JSON:

  {"exit_after": SECONDS, "status": N}   exit with status N after SECONDS
  {"on_power_button": "exit"}             exit 0 (poweroff) when pressed
  {"on_power_button": "ignore"}           keep running (the daemon must kill)
  {"api_delay": SECONDS}                  answer pings only after SECONDS
  {"exit_at_once": N, "stderr": TEXT}     write TEXT to stderr, exit N before any socket
  {"signal_after": SECONDS, "signal": "SEGV"}  kill itself with that signal (no core)
  {"console_flood": BYTES, "flood_after": SECONDS}  write BYTES of output to the
                                          console client SECONDS after it connects
  {"api_accept_count": N}                 accept N connections, then no more
  {"api_never_accept": true}              listen (backlog 0) but never accept:
                                          a connect() that blocks would block for ever
  {"stderr_flood": BYTES}                 write BYTES to stderr in numbered 1 KiB
                                          lines ("fake-vmm: flood line N ..."), then
                                          create KERNEL.flooded and keep running
  {"agent": PATH, "agent_delay": SECONDS} with --vsock: run PATH (shoji-agent) with
                                          --listen-unix after SECONDS and serve the
                                          vsock socket's "CONNECT 1027" to it, as the
                                          VMM would for a guest's agent. A REQUEST for
                                          "shutdown" is answered here, never passed on
                                          (the agent would power off this host): the
                                          fake VMM exits 0 (poweroff) soon after,
  {"on_agent_shutdown": "ignore"}         or keeps running (the daemon must press
                                          the power button next); each such request
                                          is appended to KERNEL.events as "agent-shutdown"
  {"clock_offset": SECONDS}               with "agent": the "time" in the agent's ping
                                          replies is moved by SECONDS (a guest whose
                                          clock drifted while it was paused or the host
                                          slept); each set-time request is appended to
                                          KERNEL.events as "set-time" and, once one came,
                                          the offset is gone (the guest's clock was set)
  {"clock_stuck": true}                   with clock_offset: the offset stays after a
                                          set-time (a clock that cannot be set, an agent
                                          that lies)

"pause" and "resume" set what "status" answers ({"paused": true} in the
kernel file starts it paused, as a VMM adopted while paused) and are
appended to KERNEL.events. Every press of the power button is appended to KERNEL.events, and every
start's pid to KERNEL.pids (so the test can clean up exactly its processes).
"""
import json
import os
import resource
import signal
import socket
import sys
import threading
import time


def opt(argv, name):
    return argv[argv.index(name) + 1] if name in argv else None


def host_pid():
    """Our pid as the host (and the daemon) sees it, also from inside a PID
    namespace of our own, where os.getpid() is 1: the host's /proc says."""
    with open("/proc/self/stat") as f:
        return int(f.read().split()[0])


def main():
    argv = sys.argv[1:]
    kernel = opt(argv, "--kernel")
    with open(kernel) as f:
        text = f.read()
    behaviour = json.loads(text) if text.strip().startswith("{") else {}
    with open(kernel + ".argv", "a") as f:
        f.write(json.dumps(argv) + "\n")
    with open(kernel + ".pids", "a") as f:
        f.write(f"{host_pid()}\n")
    with open(kernel + ".nspid", "w") as f:  # 1 when jailed in a PID namespace of its own
        f.write(f"{os.getpid()}\n")

    if "exit_at_once" in behaviour:
        sys.stderr.write(behaviour.get("stderr", "") + "\n")
        sys.exit(behaviour["exit_at_once"])
    if "signal_after" in behaviour:
        threading.Thread(target=suicide, args=(behaviour,), daemon=True).start()
    if "stderr_flood" in behaviour:
        threading.Thread(target=stderr_flood, args=(behaviour["stderr_flood"], kernel),
                         daemon=True).start()

    serial = opt(argv, "--serial")
    if serial and serial.startswith("socket="):
        con = socket.socket(socket.AF_UNIX)
        con.bind(serial[7:])
        con.listen(1)
        threading.Thread(target=console, args=(con, behaviour), daemon=True).start()

    done = threading.Event()
    code = [0]
    vsock = opt(argv, "--vsock")
    if vsock and "agent" in behaviour:
        path = dict(kv.split("=", 1) for kv in vsock.split(","))["socket"]
        threading.Thread(target=agent_bridge, args=(path, behaviour, kernel, done, code),
                         daemon=True).start()
    api_path = opt(argv, "--api-socket")
    if api_path:
        delay = behaviour.get("api_delay", 0)
        threading.Thread(target=api, args=(api_path, delay, behaviour, kernel, done, code),
                         daemon=True).start()
    if "exit_after" in behaviour:
        if done.wait(behaviour["exit_after"]):
            sys.exit(code[0])
        sys.exit(behaviour.get("status", 0))
    done.wait()
    sys.exit(code[0])


def suicide(behaviour):
    time.sleep(behaviour["signal_after"])
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sig = getattr(signal, "SIG" + behaviour.get("signal", "SEGV"))
    os.kill(os.getpid(), sig)


def stderr_flood(size, kernel):
    for n in range(size // 1024):
        line = b"fake-vmm: flood line %d " % n
        os.write(2, line + b"x" * (1023 - len(line)) + b"\n")
    open(kernel + ".flooded", "w").close()


def flood(c, behaviour):
    time.sleep(behaviour.get("flood_after", 0))
    line = b"x" * 1023 + b"\n"
    try:
        for _ in range(behaviour["console_flood"] // len(line)):
            c.sendall(line)
    except OSError:
        pass


def console(listener, behaviour):
    while True:
        c, _ = listener.accept()
        try:
            c.sendall(b"fake-vmm: console up\n")
            if "console_flood" in behaviour:
                threading.Thread(target=flood, args=(c, behaviour), daemon=True).start()
            while True:
                data = c.recv(4096)
                if not data:
                    break
                c.sendall(b"echo:" + data)
        except OSError:
            pass
        c.close()


def agent_bridge(path, behaviour, kernel, done, code):
    """The VMM's vsock socket with a shoji-agent behind port 1027."""
    import subprocess
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(16)
    time.sleep(behaviour.get("agent_delay", 0))
    agent_sock = kernel + ".agent.sock"
    agent = subprocess.Popen([behaviour["agent"], "--listen-unix", agent_sock],
                             stderr=open(kernel + ".agent.log", "a"))
    with open(kernel + ".pids", "a") as f:
        f.write(f"{agent.pid}\n")
    import atexit
    atexit.register(agent.kill)  # the guest's agent ends with its VM
    while True:
        c, _ = listener.accept()
        threading.Thread(target=agent_connection, args=(c, agent_sock, behaviour, kernel, done, code),
                         daemon=True).start()


def recv_exact(c, n):
    data = b""
    while len(data) < n:
        more = c.recv(n - len(data))
        if not more:
            raise OSError("closed")
        data += more
    return data


def agent_connection(c, agent_sock, behaviour, kernel, done, code):
    try:
        line = b""
        while not line.endswith(b"\n"):
            line += recv_exact(c, 1)
        if line != b"CONNECT 1027\n":
            c.sendall(b"ERR no listener\n")
            return
        a = socket.socket(socket.AF_UNIX)
        try:
            a.connect(agent_sock)
        except OSError:
            c.sendall(b"ERR connection refused\n")
            return
        c.sendall(b"OK 1027\n")
        head = recv_exact(c, 4)
        body = recv_exact(c, int.from_bytes(head[1:4], "big"))
        if head[0] == 1 and json.loads(body).get("op") == "shutdown":
            with open(kernel + ".events", "a") as f:
                f.write("agent-shutdown\n")
            reply = b'{"ok":true}'
            c.sendall(bytes([2]) + len(reply).to_bytes(3, "big") + reply)
            if behaviour.get("on_agent_shutdown", "exit") == "exit":
                time.sleep(0.2)
                code[0] = 0
                done.set()
            return
        op = json.loads(body).get("op") if head[0] == 1 else None
        if op == "set-time":
            with open(kernel + ".events", "a") as f:
                f.write("set-time\n")
            if not behaviour.get("clock_stuck"):
                behaviour["clock_offset"] = 0
        a.sendall(head + body)
        if op == "ping" and behaviour.get("clock_offset"):
            rhead = recv_exact(a, 4)
            reply = json.loads(recv_exact(a, int.from_bytes(rhead[1:4], "big")))
            reply["time"] += behaviour["clock_offset"]
            out = json.dumps(reply).encode()
            c.sendall(rhead[:1] + len(out).to_bytes(3, "big") + out)
            return
        # The agent's output goes on after our side stops taking input (a
        # command that ended before its stdin did): c is closed only once
        # both directions are done.
        back = threading.Thread(target=splice, args=(a, c), daemon=True)
        back.start()
        splice(c, a)
        back.join()
    except OSError:
        pass
    finally:
        c.close()


def splice(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def api(path, delay, behaviour, kernel, done, code):
    time.sleep(delay)
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    os.chmod(path, 0o600)
    if behaviour.get("api_never_accept"):
        s.listen(0)
        done.wait()
        return
    s.listen(8)
    accepted = 0
    while True:
        if accepted == behaviour.get("api_accept_count", -1):
            done.wait()
            return
        c, _ = s.accept()
        accepted += 1
        line = c.makefile().readline()
        try:
            op = json.loads(line).get("op")
        except ValueError:
            op = None
        if op == "ping":
            c.sendall(b'{"ok":true}\n')
        elif op == "status":
            c.sendall(b'{"ok":true,"paused":%s}\n' % (b"true" if behaviour.get("paused") else b"false"))
        elif op in ("pause", "resume"):
            behaviour["paused"] = op == "pause"
            with open(kernel + ".events", "a") as f:
                f.write(op + "\n")
            c.sendall(b'{"ok":true}\n')
        elif op == "power-button":
            with open(kernel + ".events", "a") as f:
                f.write("power-button\n")
            c.sendall(b'{"ok":true}\n')
            if behaviour.get("on_power_button", "exit") == "exit":
                code[0] = 0
                done.set()
        else:
            c.sendall(b'{"ok":false,"error":"unknown op"}\n')
        c.close()


main()
