"""Process bookkeeping shared by the two jails: the judge's child and nbgrader's kernel step.

Both run student code as a throwaway uid in its own process group, marked by an
environment entry; after a run, everything carrying the mark or the uid is killed,
which also catches forks that left the process group.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from pathlib import Path


def processes_of(uid: int) -> list[int]:
    """Process ids owned by ``uid``."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def processes_with(marker: str) -> list[int]:
    """Process ids whose environment holds the entry ``marker`` (``NAME=value``)."""
    needle, pids = marker.encode(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if needle in f.read().split(b"\0"):
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


def kill_all(proc: subprocess.Popen, *, marker: str, uid: int | None = None) -> None:
    """The process group of ``proc``, then every process with ``marker`` or ``uid``, until none is left."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    for _ in range(50):  # a fork bomb may spawn while we sweep
        pids = (processes_of(uid) if uid is not None else []) + processes_with(marker)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.05)


def fresh_uid() -> int:
    """An unused uid far above any account's: no passwd entry, no process, so one run owns it alone."""
    while True:
        uid = 1_500_000_000 + secrets.randbelow(500_000_000)
        if not processes_of(uid):
            return uid


def chown_tree(path: Path, uid: int, gid: int | None = None) -> None:
    """Give ``path`` and everything below it to ``uid`` (symbolic links themselves, not their targets)."""
    gid = uid if gid is None else gid
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, gid)
