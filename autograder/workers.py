"""Grading processes on one machine: each submission in a process of its own, forked from a warmed parent.

The parent (the coordinator, or a Dask worker) has made a :class:`autograder.submission.Warm` once: imports
done, the jails probed, the kernel step's template course built. Each child grades one submission
(:func:`autograder.submission.grade_submission`; student code runs only in the jails it starts, exactly as in
a serial run), sends its outcome back through a pipe as plain data and exits. A child that dies, or that
runs past its time (then SIGTERM: it stops its jails; then SIGKILL), costs only its own submission. A child
whose parent dies gets SIGTERM too (``PR_SET_PDEATHSIG``), so nothing keeps running after a killed
coordinator or worker.
"""
from __future__ import annotations

import ctypes
import os
import resource
import signal
import time
from collections import deque
from multiprocessing.connection import Connection, wait

from .submission import Task, Warm, failed, grade_submission

PR_SET_PDEATHSIG = 1


class Child:
    """One forked grading process and the read end of its pipe. Plain ``os.fork``: multiprocessing refuses to
    start children from a daemonic process, which is what a Dask worker is."""

    def __init__(self, warm: Warm, task: Task):
        self.task, self.started, self.exitcode = task, time.monotonic(), None
        read, write = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the grading process
            code = 1
            try:
                os.close(read)
                _child(warm, task, Connection(write, readable=False), parent)
                code = 0
            except BaseException:
                pass
            finally:
                os._exit(code)
        os.close(write)
        self.pid, self.conn = pid, Connection(read, writable=False)

    def reap(self, timeout: float = 0.0) -> bool:
        """Collect the exit status once the process has ended (waiting up to ``timeout``); True when it has."""
        deadline = time.monotonic() + timeout
        while self.exitcode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.exitcode = -1
                break
            if pid:
                self.exitcode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self) -> None:
        """SIGTERM (it cleans up its jails), then SIGKILL."""
        for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 5)):
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            if self.reap(grace):
                break
        self.conn.close()


def _child(warm: Warm, task: Task, conn, parent: int) -> None:
    """A grading process: stops (cleaning up its jails) when asked to or when its parent is gone."""
    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the line above
        return
    memory = warm.setup.grader_memory_mb * 2**20  # a runaway grader (not student code: that is jailed) stops here
    resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
    try:
        outcome = grade_submission(warm, task)
    except Exception as err:  # a bug of the grader: this submission only
        outcome = failed(task, f"the grader failed ({err.__class__.__name__}: {err})")
    conn.send(outcome)
    conn.close()


def run_local(warm: Warm, tasks, jobs: int, timeout_s: float):
    """Grade ``tasks`` ``jobs`` at a time, each in a process forked from this one; yields each outcome as it
    comes. (The coordinator stays single-threaded, so forking it is safe; a Dask worker forks from the thread
    running the task, and the child touches nothing but the grading.)"""
    pending, running = deque(tasks), {}
    try:
        while pending or running:
            while pending and len(running) < max(jobs, 1):
                child = Child(warm, pending.popleft())
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
