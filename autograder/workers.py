"""Grading processes on one machine: each submission in a fresh Python process of its own.

The parent (the coordinator, or a Dask worker) has made a :class:`autograder.submission.Warm` once: the jails
probed, the kernel step's template course built, the release staged. Each submission gets a new interpreter
(``python -m autograder.workers``), never a fork of the parent: a process that has imported torch or started
threads (pytest, a Dask worker, torch's OpenMP pool) cannot be forked safely, its children can deadlock. The
child reads the warm state and its task from files in the warm scratch folder, grades the submission
(:func:`autograder.submission.grade_submission`; student code runs only in the jails it starts, exactly as
in a serial run), sends the outcome back through a pipe as plain data and exits. A child that dies, or that
runs past its time (then SIGTERM: it stops its jails; then SIGKILL), costs only its own submission. A child
whose parent dies gets SIGTERM too (``PR_SET_PDEATHSIG``), so nothing keeps running after a killed
coordinator or worker.
"""
from __future__ import annotations

import ctypes
import os
import pickle
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from multiprocessing.connection import Connection, wait
from pathlib import Path

from .course import REPO_ROOT
from .submission import Task, Warm, failed, grade_submission

PR_SET_PDEATHSIG = 1


def grading_env() -> dict:
    """The environment of a grading process (or a Dask worker): this checkout importable (the autograder is
    used from it, and a judge such as tests.fixtures.*), this venv's bin/ first on PATH (nbgrader runs alembic)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    return env


def _dump(obj, folder: Path, prefix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".pickle", dir=folder)
    with os.fdopen(fd, "wb") as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
    return Path(name)


class Child:
    """One grading process (a new interpreter, see the module docstring) and the read end of its pipe. A plain
    subprocess, not multiprocessing's "spawn": that refuses to start children from a daemonic process, which is
    what a Dask worker is."""

    def __init__(self, state: Path, task: Task, scratch: Path):
        self.task, self.started, self.exitcode = task, time.monotonic(), None
        self.task_file = _dump(task, scratch, "task-")
        read, write = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "autograder.workers", str(state), str(self.task_file), str(write),
                 str(os.getpid())], pass_fds=(write,), stdin=subprocess.DEVNULL, env=grading_env())
        except BaseException:
            os.close(read)
            raise
        finally:
            os.close(write)
        self.pid, self.conn = self.proc.pid, Connection(read, writable=False)

    def reap(self, timeout: float = 0.0) -> bool:
        """Collect the exit status once the process has ended (waiting up to ``timeout``); True when it has."""
        try:
            self.exitcode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        self.task_file.unlink(missing_ok=True)
        return True

    def stop(self) -> None:
        """SIGTERM (it cleans up its jails), then SIGKILL."""
        for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 5)):
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
            if self.reap(grace):
                break
        self.conn.close()


def child_main(state: str, task_file: str, fd: int, parent: int) -> int:
    """A grading process: stops (cleaning up its jails) when asked to or when its parent is gone."""
    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    conn = Connection(fd, readable=False)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the line above
        return 1
    with open(state, "rb") as f:
        warm: Warm = pickle.load(f)
    with open(task_file, "rb") as f:
        task: Task = pickle.load(f)
    memory = warm.setup.grader_memory_mb * 2**20  # a runaway grader (not student code: that is jailed) stops here
    resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
    warm.adopt()
    try:
        outcome = grade_submission(warm, task)
    except Exception as err:  # a bug of the grader: this submission only
        outcome = failed(task, f"the grader failed ({err.__class__.__name__}: {err})")
    conn.send(outcome)
    conn.close()
    return 0


def run_local(warm: Warm, tasks, jobs: int, timeout_s: float):
    """Grade ``tasks`` ``jobs`` at a time, each in a grading process of its own; yields each outcome as it comes."""
    pending, running = deque(tasks), {}
    state = _dump(warm, warm.scratch, "warm-")
    try:
        while pending or running:
            while pending and len(running) < max(jobs, 1):
                child = Child(state, pending.popleft(), warm.scratch)
                running[child.conn] = child
            for conn in wait(list(running), timeout=1.0):
                child = running.pop(conn)
                try:
                    outcome = conn.recv()
                except (EOFError, OSError):
                    child.reap(10)
                    code = child.exitcode
                    why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
                    outcome = failed(child.task, f"its grading process ended without a verdict ({why})",
                                     time.monotonic() - child.started)
                conn.close()
                if not child.reap(30):
                    child.stop()
                yield outcome
            now = time.monotonic()
            for conn, child in list(running.items()):
                if now - child.started > timeout_s:
                    running.pop(conn)
                    child.stop()
                    yield failed(child.task, f"its grading took longer than {timeout_s:.0f} s and was stopped",
                                 now - child.started)
    finally:
        for child in running.values():
            child.stop()
        state.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
