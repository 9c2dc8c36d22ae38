"""Clean-up of harness-started services whose owner process is gone.

Stdlib only and free of package-relative imports: it is imported by
``services.py`` *and* executed as a stand-alone script (the watchdog)::

    python -I _reaper.py watch ROOT      # blocks on stdin; cleans ROOT at EOF
    python -I _reaper.py sweep [BASE]    # clean every stale runtime root

Layout of a runtime root (one per pytest process)::

    BASE/reelgate-harness-<pid>-<random>/      mode 0755
        owner.json       {"pid": ..., "starttime": ...}  (the pytest process)
        services/*.json  one entry per started service, see ``register``
        pg-*/ redis-*/   the services' own directories

A root is *stale* when the process recorded in ``owner.json`` no longer exists
(pid gone, zombie, or pid reused by another process -- compared by start time).
Cleaning a root kills every registered process (only if its /proc comm still
matches the expected program name), removes the registered directories and
finally the root itself.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import sys
import time

ROOT_PREFIX = "reelgate-harness-"


# ----------------------------------------------------------------------------- /proc helpers


def proc_starttime(pid: int) -> int | None:
    """Start time (clock ticks since boot) of ``pid``; None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    rest = data[data.rfind(")") + 2 :].split()
    # rest[0] is field 3 (state); starttime is field 22 -> rest[19]
    if not rest or rest[0] in ("Z", "X"):
        return None
    try:
        return int(rest[19])
    except (IndexError, ValueError):
        return None


def proc_alive(pid: int) -> bool:
    return proc_starttime(pid) is not None


def proc_comm(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return None


def owner_record() -> dict:
    pid = os.getpid()
    return {"pid": pid, "starttime": proc_starttime(pid), "created": time.time()}


def owner_alive(root: str) -> bool | None:
    """True/False, or None when the root has no readable owner record."""
    try:
        with open(os.path.join(root, "owner.json")) as fh:
            rec = json.load(fh)
    except (OSError, ValueError):
        return None
    pid = int(rec.get("pid", 0))
    if pid <= 0:
        return False
    st = proc_starttime(pid)
    if st is None:
        return False
    want = rec.get("starttime")
    return want is None or want == st


# ----------------------------------------------------------------------------- killing


def _read_pid(entry: dict) -> int | None:
    pid = entry.get("pid")
    pidfile = entry.get("pidfile")
    if pidfile:
        try:
            with open(pidfile) as fh:
                first = fh.readline().strip()
            pid = int(first)
        except (OSError, ValueError):
            pass
    try:
        return int(pid) if pid else None
    except (TypeError, ValueError):
        return None


def terminate(pid: int, expect: str | None, first: int, timeout: float) -> None:
    """Send ``first`` to ``pid`` (if its comm matches ``expect``), SIGKILL after timeout."""
    if pid is None or pid <= 1 or pid == os.getpid():
        return
    comm = proc_comm(pid)
    if comm is None or not proc_alive(pid):
        return
    if expect and not comm.startswith(expect[:15]):
        return  # pid was reused by an unrelated process: leave it alone
    try:
        os.kill(pid, first)
    except ProcessLookupError:
        return
    except PermissionError:
        return
    start = time.monotonic()
    resent = start
    while time.monotonic() - start < timeout:
        if not proc_alive(pid):
            return
        if time.monotonic() - resent >= 1.0:
            # e.g. redis resets its "shutdown asap" flag while initialising: ask again
            resent = time.monotonic()
            try:
                os.kill(pid, first)
            except (ProcessLookupError, PermissionError):
                return
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and proc_alive(pid):
        time.sleep(0.02)


def kill_entry(entry: dict) -> None:
    kind = entry.get("kind")
    pid = _read_pid(entry)
    if pid:
        if kind == "postgres":
            # SIGQUIT = immediate shutdown of the postmaster; backends follow it.
            terminate(pid, entry.get("expect", "postgres"), signal.SIGQUIT, 5.0)
        else:
            terminate(pid, entry.get("expect"), signal.SIGTERM, 3.0)
    d = entry.get("dir")
    if d:
        shutil.rmtree(d, ignore_errors=True)


def clean_root(root: str) -> None:
    """Kill every service registered under ``root`` and delete the root."""
    sdir = os.path.join(root, "services")
    for path in sorted(glob.glob(os.path.join(sdir, "*.json"))):
        try:
            with open(path) as fh:
                entry = json.load(fh)
        except (OSError, ValueError):
            continue
        try:
            kill_entry(entry)
        finally:
            try:
                os.unlink(path)
            except OSError:
                pass
    shutil.rmtree(root, ignore_errors=True)


def sweep(base: str, skip: str | None = None, grace: float = 60.0) -> list[str]:
    """Clean every stale runtime root in ``base``; returns the roots cleaned."""
    cleaned = []
    for root in glob.glob(os.path.join(base, ROOT_PREFIX + "*")):
        if skip and os.path.abspath(root) == os.path.abspath(skip):
            continue
        if not os.path.isdir(root) or os.path.islink(root):
            continue
        alive = owner_alive(root)
        if alive is None:
            # Root being set up right now by another process, or garbage.
            try:
                age = time.time() - os.stat(root).st_mtime
            except OSError:
                continue
            if age < grace:
                continue
        elif alive:
            continue
        clean_root(root)
        cleaned.append(root)
    return cleaned


# ----------------------------------------------------------------------------- watchdog


def watch(root: str) -> None:
    """Block until stdin reaches EOF (the owner closed/lost the pipe), then clean."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        try:
            signal.signal(sig, signal.SIG_IGN)
        except (OSError, ValueError):
            pass
    try:
        while True:
            try:
                chunk = os.read(0, 4096)
            except InterruptedError:
                continue
            except OSError:
                break
            if not chunk:
                break
    finally:
        if os.path.isdir(root):
            clean_root(root)


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "watch":
        watch(argv[1])
        return 0
    if argv and argv[0] == "sweep":
        base = argv[1] if len(argv) > 1 else "/tmp"
        for r in sweep(base, grace=5.0):
            print("cleaned", r)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
