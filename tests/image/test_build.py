#!/usr/bin/env python3
"""shoji-img build end to end (meson suite 'image').

Usage: test_build.py SHOJI_IMG quick|full

quick: the failures that need no download (not root, no agent, a bad
recipe, OUT exists, an unreachable mirror): each exits non-zero with one
error line and leaves no OUT.* behind. This is what the sanitizer build
runs.
full: quick, then two real builds of a tiny recipe (cloud kernel, one
extra package) at once, checked inside (hostname, agent, units, fstab,
e2fsck, qemu-img check, OUT.json and its sha256) and compared with each
other file by file; and a build naming a package Debian does not have.
Needs root, mmdebstrap, e2fsprogs and the Debian archive; skips (77)
without root or the tools. SHOJI_KEEP=1 keeps the work directory."""
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

SHOJI_IMG, MODE = sys.argv[1], sys.argv[2]
EPOCH = "1700000000"
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(77)


def build(args, env_extra=None, **kw):
    env = dict(os.environ, SOURCE_DATE_EPOCH=EPOCH)
    env.pop("SHOJI_DEBUG", None)
    env.update(env_extra or {})
    return subprocess.Popen([SHOJI_IMG, "build"] + args, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def finish(p):
    out, err = p.communicate()
    return p.returncode, out, err


def one_error(err):
    errors = [l for l in err.splitlines() if ": error: " in l]
    others = [l for l in err.splitlines() if ": error: " not in l and ": info: " not in l]
    return len(errors) == 1 and not others, (errors[0] if errors else err.strip())


def leftovers(out):
    return glob.glob(out + ".*")


def fails_cleanly(name, args, out, want, pre=None):
    p = build(args) if pre is None else subprocess.Popen(
        pre + [SHOJI_IMG, "build"] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    rc, _, err = finish(p)
    single, line = one_error(err)
    check(rc != 0 and single and want in line, f"{name}: exit {rc}, one line: {line}")
    check(not leftovers(out), f"{name}: nothing left at {out}.*")


def write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def quick(work, agent, recipe):
    out = os.path.join(work, "qout")
    if shutil.which("setpriv"):
        fails_cleanly("not root", [recipe, out], out, "must run as root",
                      pre=["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
    fails_cleanly("no agent", ["--agent", os.path.join(work, "none"), recipe, out], out,
                  "no shoji-agent executable")
    bad = os.path.join(work, "bad.recipe")
    write(bad, "kernel = linux-image-cloud-amd64\npakages = less\n")
    fails_cleanly("bad recipe", ["--agent", agent, bad, out], out, "bad.recipe:2: unknown key 'pakages'")
    write(out + ".json", "{}")
    rc, _, err = finish(build(["--agent", agent, recipe, out]))
    check(rc != 0 and "exists" in err and open(out + ".json").read() == "{}",
          "OUT.json exists: refused, untouched")
    os.unlink(out + ".json")
    nonet = os.path.join(work, "nonet.recipe")
    write(nonet, "kernel = linux-image-cloud-amd64\nmirror = http://127.0.0.1:9/debian\n")
    fails_cleanly("unreachable mirror", ["--agent", agent, nonet, out], out,
                  "cannot reach the Debian archive")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def extract(out, work, name):
    """OUT.qcow2 -> raw (shoji-img convert) -> e2fsck -> a directory (debugfs rdump)."""
    raw = os.path.join(work, name + ".raw")
    subprocess.run([SHOJI_IMG, "convert", "-O", "raw", out + ".qcow2", raw], check=True)
    fsck = subprocess.run(["e2fsck", "-fn", raw], capture_output=True, text=True)
    check(fsck.returncode == 0, f"{name}: e2fsck -fn is clean ({fsck.stdout.strip().splitlines()[-1:]})")
    tree = os.path.join(work, name + ".tree")
    os.mkdir(tree)
    subprocess.run(["debugfs", "-R", f"rdump / {tree}", raw], capture_output=True)
    return raw, tree


def inspect(out, work, name):
    if shutil.which("qemu-img"):
        r = subprocess.run(["qemu-img", "check", out + ".qcow2"], capture_output=True, text=True)
        check(r.returncode == 0, f"{name}: qemu-img check passes")
    with open(out + ".json") as f:
        m = json.load(f)
    for role, suffix in (("disk", ".qcow2"), ("kernel", ".vmlinuz"), ("initrd", ".initrd")):
        e = m["files"][role]
        check(e["name"] == os.path.basename(out) + suffix and e["sha256"] == sha256(out + suffix)
              and e["bytes"] == os.path.getsize(out + suffix), f"{name}: OUT.json {role} sha256 and size")
    check(m["cmdline"] == "root=/dev/vda rw console=ttyS0", f"{name}: OUT.json cmdline")
    pk = {p["name"]: p["version"] for p in m["packages"]}
    check("linux-image-cloud-amd64" in pk and "less" in pk and "systemd" in pk,
          f"{name}: OUT.json lists the packages ({len(pk)})")
    raw, tree = extract(out, work, name)
    t = lambda p: os.path.join(tree, p.lstrip("/"))
    rd = lambda p: open(t(p)).read() if os.path.isfile(t(p)) else ""
    check(rd("/etc/hostname") == "tiny-test\n", f"{name}: /etc/hostname")
    check("/dev/vda / ext4" in rd("/etc/fstab"), f"{name}: fstab has root on /dev/vda")
    check(rd("/etc/motd") == "hello from the recipe\n", f"{name}: copy = files/motd /etc/motd")
    check(os.path.isfile(t("/usr/local/sbin/shoji-agent")) and
          os.access(t("/usr/local/sbin/shoji-agent"), os.X_OK), f"{name}: agent installed")
    check("vmw_vsock_virtio_transport" in rd("/etc/modules-load.d/shoji.conf"), f"{name}: vsock module")
    wants = "/etc/systemd/system/multi-user.target.wants/"
    for unit in ("shoji-agent.service", "shoji-ready.service", "shoji-first-boot.service",
                 "systemd-networkd.service"):
        check(os.path.islink(t(wants + unit)), f"{name}: {unit} enabled")
    check(os.path.islink(t("/etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service")),
          f"{name}: serial getty on ttyS0 enabled")
    for unit in ("apt-daily.timer", "apt-daily-upgrade.timer", "systemd-timesyncd.service"):
        p = t("/etc/systemd/system/" + unit)
        check(os.path.islink(p) and os.readlink(p) == "/dev/null", f"{name}: {unit} masked")
    return raw, tree


def listing(tree):
    """path -> (kind, mode, content hash or link target) for every file."""
    out = {}
    for d, dirs, files in os.walk(tree):
        for n in dirs + files:
            p = os.path.join(d, n)
            rel = os.path.relpath(p, tree)
            st = os.lstat(p)
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p))
            elif os.path.isfile(p):
                out[rel] = ("file", oct(st.st_mode & 0o7777), sha256(p))
            elif os.path.isdir(p):
                out[rel] = ("dir", oct(st.st_mode & 0o7777))
    return out


def full(work, agent):
    os.mkdir(os.path.join(work, "files"))
    write(os.path.join(work, "files/motd"), "hello from the recipe\n")
    write(os.path.join(work, "fb.sh"), "#!/bin/sh\ntouch /var/lib/first-boot-ran\n", 0o755)
    recipe = os.path.join(work, "tiny.recipe")
    write(recipe, "# the image test's recipe: small, one extra package\n"
          "kernel = linux-image-cloud-amd64\npackages = less\ncopy = files/motd /etc/motd\n"
          "hostname = tiny-test\nsize = 1G\nfirst-boot = fb.sh\n")
    missing = os.path.join(work, "missing.recipe")
    write(missing, "kernel = linux-image-cloud-amd64\npackages = less shoji-no-such-package\n")
    outs = [os.path.join(work, "a"), os.path.join(work, "b")]
    start = time.time()
    procs = [build(["--agent", agent, recipe, o]) for o in outs]
    procs.append(build(["--agent", agent, missing, os.path.join(work, "m")]))
    interrupted = os.path.join(work, "i")
    victim = build(["--agent", agent, recipe, interrupted])
    time.sleep(30)  # mmdebstrap is downloading or installing by now: its mounts are up
    victim.send_signal(15)
    stopped = time.time()
    rc, _, err = finish(victim)
    single, line = one_error(err)
    check(rc == 143 and single and "interrupted by signal 15" in line,
          f"SIGTERM: exit {rc} after {time.time() - stopped:.0f} s, one line: {line}")
    check(not leftovers(interrupted), "SIGTERM: nothing left at OUT.*")
    with open("/proc/self/mountinfo") as f:
        check(interrupted not in f.read(), "SIGTERM: nothing left mounted")
    results = [finish(p) for p in procs]
    print(f"four builds at once (one stopped) took {time.time() - start:.0f} s", flush=True)
    for o, (rc, _, err) in zip(outs, results):
        check(rc == 0, f"build {os.path.basename(o)}: exit {rc} {err.strip()[-300:]}")
    rc, _, err = results[2]
    single, line = one_error(err)
    check(rc != 0 and single and "missing.recipe:2: key 'packages': no package "
          "'shoji-no-such-package'" in line, f"missing package: exit {rc}, one line: {line}")
    check(not leftovers(os.path.join(work, "m")), "missing package: nothing left at OUT.*")
    if failures:
        return
    for o in outs:
        sizes = ", ".join(f"{s} {os.path.getsize(o + s) >> 10} KiB"
                          for s in (".qcow2", ".vmlinuz", ".initrd", ".json"))
        print(f"bundle {os.path.basename(o)}: {sizes}")
    (raw_a, tree_a), (raw_b, tree_b) = (inspect(o, work, os.path.basename(o)) for o in outs)
    la, lb = listing(tree_a), listing(tree_b)
    differ = sorted(k for k in set(la) | set(lb) if la.get(k) != lb.get(k))
    check(not differ, f"two builds: same files, modes and contents ({len(la)} entries); "
          f"differ: {differ[:10]}")
    same_raw = sha256(raw_a) == sha256(raw_b)
    same_files = {s: sha256(outs[0] + s) == sha256(outs[1] + s) for s in (".qcow2", ".vmlinuz", ".initrd")}
    check(same_raw and all(same_files.values()),
          f"two builds: raw ext4 bit-identical: {same_raw}; files identical: {same_files}")
    if not same_raw:
        explain_difference(raw_a, raw_b)


def explain_difference(raw_a, raw_b):
    """Which 4K blocks of the two file systems differ, and how a few inodes do."""
    blocks = []
    with open(raw_a, "rb") as fa, open(raw_b, "rb") as fb:
        n = 0
        while True:
            x, y = fa.read(4096), fb.read(4096)
            if not x and not y:
                break
            if x != y:
                blocks.append(n)
            n += 1
    print(f"  {len(blocks)} 4K blocks differ, the first: {blocks[:12]}")
    for path in ("/", "/etc", "/etc/hostname", "/usr/local/sbin/shoji-agent"):
        sa, sb = (subprocess.run(["debugfs", "-R", f"stat {path}", r], capture_output=True,
                                 text=True).stdout.splitlines() for r in (raw_a, raw_b))
        print(f"  {path}: {[(x.strip(), y.strip()) for x, y in zip(sa, sb) if x != y][:4]}")
    sa, sb = (subprocess.run(["dumpe2fs", "-h", r], capture_output=True, text=True).stdout
              .splitlines() for r in (raw_a, raw_b))
    print(f"  superblock: {[(x, y) for x, y in zip(sa, sb) if x != y][:6]}")


def main():
    if os.geteuid() != 0:
        skip("shoji-img build needs root (mmdebstrap); run the suite as root")
    for tool in ("mmdebstrap", "mke2fs", "debugfs", "e2fsck", "cc"):
        if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
            skip(f"{tool} is not installed (packaging/deps/test.txt)")
    os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    work = tempfile.mkdtemp(prefix="shoji-image-test-", dir="/var/tmp")
    try:
        agent = os.path.join(work, "shoji-agent")
        write(agent + ".c", "#include <unistd.h>\nint main(void) { for (;;) pause(); }\n")
        subprocess.run(["cc", "-static", "-o", agent, agent + ".c"], check=True)
        recipe = os.path.join(work, "q.recipe")
        write(recipe, "kernel = linux-image-cloud-amd64\n")
        quick(work, agent, recipe)
        if MODE == "full":
            full(work, agent)
        else:
            print("quick mode: the real builds run in the plain build's test run only")
    finally:
        if os.environ.get("SHOJI_KEEP"):
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{len(failures)} failure(s)")
    sys.exit(1 if failures else 0)


main()
