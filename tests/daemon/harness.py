"""What the daemon test scripts share: the ok/FAIL lines and the end of a run.

Imported from the scripts' own directory (Python puts it on sys.path)."""
import os
import shutil
import signal
import sys

failures = []


def check(what, cond, detail=""):
    print(("ok   " if cond else "FAIL ") + what + ("" if cond else f": {detail}"))
    if not cond:
        failures.append(what)


def finish(tmp, procs):
    """Kills what is left (the daemons in procs, then every fake VMM, which
    writes its pids to a *.pids file under tmp), keeps tmp only after a
    failure, prints the count and exits with the verdict."""
    for p in procs:
        if p.poll() is None:
            p.kill()
    for root, _, files in os.walk(tmp):
        for name in files:
            if name.endswith(".pids"):
                for pid in open(os.path.join(root, name)).read().split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
    if not failures:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print("kept", tmp)
    print(f"{len(failures)} failure(s)")
    sys.exit(1 if failures else 0)
