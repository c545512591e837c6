"""Grading processes on one machine: each submission in a process of its own, forked from a *zygote*.

The parent (the coordinator, or a Dask worker) has made a :class:`autograder.submission.Warm` once: the jails
probed, the kernel step's template course built, the release staged. It starts one zygote per batch: a fresh
interpreter (``python -m autograder.workers --zygote ...``) that reads the warm state and imports what grading
needs (nbformat, nbgrader, torch, labkit, scikit-learn, the lab's exercises: about 4 s of a 2-core CPU, paid
once per batch instead of once per submission), and never runs a torch operation, a check or student code. For
each submission it forks a grading process, which grades it (:func:`autograder.submission.grade_submission`;
student code runs only in the jails it starts, exactly as in a serial run), sends the outcome back through a
pipe as plain data and exits.

Forking is safe here because the zygote is single-threaded when it forks: it is started with
``OPENBLAS_NUM_THREADS=1`` (numpy and scipy would otherwise start BLAS threads at import) and torch starts
its OpenMP threads only at its first operation, which happens in the grading process. The zygote checks before
every fork; were it ever not alone, the new process would exec a fresh interpreter instead (``python -m
autograder.workers STATE TASK ...``, the way every submission was graded before), as it does for every
submission when ``AUTOGRADER_NO_FORK=1`` is set (slower by the imports: a few seconds a submission). Never
fork the parent itself: a process that has run torch or started threads (pytest, a Dask worker, torch's OpenMP
pool) cannot be forked safely, its children can deadlock.

A grading process that dies, or that runs past its time (then SIGTERM: it stops its jails; then SIGKILL),
costs only its own submission. Nothing keeps running after a killed coordinator or worker: the zygote sees its
socket close (or its parent pid change) and exits, stopping its grading processes, and a grading process whose
zygote is gone gets SIGTERM (``PR_SET_PDEATHSIG``). The parent talks to the zygote over a Unix socket pair:
each request carries the task file and the write end of that submission's pipe (``SCM_RIGHTS``); the zygote
answers with the pid, reports each exit status, and sends the signals the parent asks for (it is the only
process that can do so without a pid reused by someone else).
"""
from __future__ import annotations

import ctypes
import importlib
import json
import os
import pickle
import resource
import select
import signal
import socket
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
NO_FORK = "AUTOGRADER_NO_FORK"  # set: every grading process is a fresh interpreter (see the module docstring)
# imported by the zygote before it forks (each only if installed): what a grading process would import anyway
PRELOAD = ("autograder.exercises", "torch", "labkit", "labkit.checks.fixtures", "labkit.evaluation",
           "labkit.training", "labkit.pretrained", "labkit.datasets", "sklearn.linear_model", "matplotlib")


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


def _die_with_parent(parent: int) -> bool:
    """SIGTERM when ``parent`` ends; False when it has already."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
    return os.getppid() == parent


class ZygoteGone(Exception):
    pass


class Zygote:
    """The parent's end of a zygote (see the module docstring): start grading processes, learn how they ended,
    signal them."""

    def __init__(self, warm: Warm, threads: int):
        """``threads``: torch's threads in each grading process (the CPUs divided by the jobs at a time)."""
        self.scratch, self.state = warm.scratch, _dump(warm, warm.scratch, "warm-")
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {**grading_env(), "OPENBLAS_NUM_THREADS": "1"}
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "autograder.workers", "--zygote", str(self.state), str(theirs.fileno()),
                 str(threads), str(os.getpid())], pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env)
        except BaseException:
            self.state.unlink(missing_ok=True)
            raise
        finally:
            theirs.close()
        self.sock, self.ended = mine, {}
        try:
            self._expect("ready", timeout=600)
        except BaseException:
            self.close()
            raise

    def start(self, task_file: Path, write_end: int) -> int:
        """Fork a grading process for ``task_file`` that writes its outcome to ``write_end``; its pid."""
        try:
            socket.send_fds(self.sock, [json.dumps({"task": str(task_file)}).encode()], [write_end])
        except OSError as err:
            raise ZygoteGone(f"the zygote is gone ({err})") from None
        return self._expect("started", timeout=60)

    def exit_code(self, pid: int, timeout: float) -> int | None:
        """``pid``'s exit code (negative: the signal that killed it) once the zygote reports it, else None."""
        deadline = time.monotonic() + timeout
        while pid not in self.ended:
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                return None
        return self.ended.pop(pid)

    def signal(self, pid: int, sig: int) -> None:
        try:
            self.sock.send(json.dumps({"kill": pid, "signal": int(sig)}).encode())
        except OSError:
            pass  # the zygote is gone, and with it (PR_SET_PDEATHSIG) its grading processes

    def close(self) -> None:
        self.sock.close()  # the zygote stops the grading processes it still has, and exits
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.state.unlink(missing_ok=True)

    def _read(self, timeout: float) -> dict | None:
        if not select.select([self.sock], [], [], max(timeout, 0))[0]:
            return None
        data = self.sock.recv(65536)
        if not data:
            raise ZygoteGone(f"the zygote ended (exit status {self.proc.poll()})")
        message = json.loads(data)
        if "ended" in message:
            self.ended[message["ended"]] = message["code"]
        return message

    def _expect(self, key: str, timeout: float):
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = self._read(left)
            if message is not None and key in message:
                return message[key]
        raise ZygoteGone(f"the zygote sent no '{key}' within {timeout:.0f} s")


class Child:
    """One grading process, forked by the zygote, and the read end of its pipe."""

    def __init__(self, zygote: Zygote, task: Task):
        self.zygote, self.task, self.started, self.exitcode = zygote, task, time.monotonic(), None
        self.task_file = _dump(task, zygote.scratch, "task-")
        read, write = os.pipe()
        try:
            self.pid = zygote.start(self.task_file, write)
        except BaseException:
            os.close(read)
            self.task_file.unlink(missing_ok=True)
            raise
        finally:
            os.close(write)
        self.conn = Connection(read, writable=False)

    def reap(self, timeout: float = 0.0) -> bool:
        """Collect the exit status once the process has ended (waiting up to ``timeout``); True when it has."""
        try:
            code = self.zygote.exit_code(self.pid, timeout)
        except ZygoteGone:
            code = -signal.SIGTERM  # its zygote is gone, and so is it (PR_SET_PDEATHSIG)
        if code is None:
            return False
        self.exitcode = code
        self.task_file.unlink(missing_ok=True)
        return True

    def stop(self) -> None:
        """SIGTERM (it cleans up its jails), then SIGKILL."""
        for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 5)):
            if self.exitcode is None:
                self.zygote.signal(self.pid, sig)
            if self.exitcode is not None or self.reap(grace):
                break
        self.conn.close()


def _grade(warm: Warm, task_file: str, fd: int, parent: int, threads: int, started_by: int) -> int:
    """A grading process: grades one task and sends the outcome; stops (cleaning up its jails) when asked to
    or when its parent is gone."""
    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    conn = Connection(fd, readable=False)
    if not _die_with_parent(parent):
        return 1
    held = open(task_file, "rb")  # open until the process ends: /proc/PID/fd says which submission it grades
    task: Task = pickle.load(held)
    memory = warm.setup.grader_memory_mb * 2**20  # a runaway grader (not student code: that is jailed) stops here
    resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)  # the checks' references: one CPU share per job
    try:
        outcome = grade_submission(warm, task, started_by=started_by)
    except Exception as err:  # a bug of the grader: this submission only
        outcome = failed(task, f"the grader failed ({err.__class__.__name__}: {err})")
    conn.send(outcome)
    conn.close()
    return 0


def _load(state: str) -> Warm:
    with open(state, "rb") as f:
        warm: Warm = pickle.load(f)
    warm.adopt()
    return warm


def _preload(warm: Warm) -> None:
    for name in (*PRELOAD, f"autograder.exercises.{warm.setup.lab}"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def _alone() -> bool:
    """Whether this process has one thread (so that forking it is safe)."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def zygote_main(state: str, fd: int, threads: int, parent: int) -> int:
    """The zygote (see the module docstring): preload, then fork a grading process per request until the
    parent closes the socket."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))
    # no PR_SET_PDEATHSIG here: it fires when the parent's *thread* that started the zygote ends (a Dask worker
    # may start it from a pool thread); the parent's death shows as the socket's end-of-file and a new parent pid
    sock = socket.socket(fileno=fd)
    warm = _load(state)
    _preload(warm)
    sock.send(json.dumps({"ready": True}).encode())
    children: set[int] = set()
    try:
        while True:
            ready = select.select([sock], [], [], 0.1)[0]
            while children and (ended := os.waitpid(-1, os.WNOHANG))[0]:
                children.discard(ended[0])
                sock.send(json.dumps({"ended": ended[0], "code": os.waitstatus_to_exitcode(ended[1])}).encode())
            if not ready:
                if os.getppid() != parent:
                    return 1
                continue
            data, fds, _, _ = socket.recv_fds(sock, 65536, 1)
            if not data:
                return 0
            request = json.loads(data)
            if "kill" in request:
                if request["kill"] in children:
                    os.kill(request["kill"], request["signal"])
                continue
            alone, pid = _alone() and not os.environ.get(NO_FORK), os.fork()
            if pid == 0:
                code = 1
                try:
                    sock.close()
                    if not alone:  # not safe to go on in a fork: a fresh interpreter, as before the zygote
                        os.execve(sys.executable, [sys.executable, "-m", "autograder.workers", state, request["task"],
                                                   str(fds[0]), str(threads), str(parent), str(os.getppid())],
                                  os.environ)
                    code = _grade(warm, request["task"], fds[0], os.getppid(), threads, parent)
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
            os.close(fds[0])
            children.add(pid)
            sock.send(json.dumps({"started": pid}).encode())
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def run_local(warm: Warm, tasks, jobs: int, timeout_s: float, zygote: Zygote | None = None):
    """Grade ``tasks`` ``jobs`` at a time, each in a grading process of its own; yields each outcome as it comes.
    ``zygote``: one to use (a Dask worker keeps its own); otherwise one is started for these tasks, and started
    again (twice at most) should it die."""
    pending, running = deque(tasks), {}
    own, restarts = zygote is None, 0
    threads = max(1, (os.cpu_count() or 1) // max(jobs, 1))
    try:
        while pending or running:
            while pending and len(running) < max(jobs, 1):
                zygote = zygote or Zygote(warm, threads)
                try:
                    child = Child(zygote, pending[0])
                except ZygoteGone:
                    if not own or restarts == 2:
                        raise
                    zygote.close()
                    zygote, restarts = None, restarts + 1
                    continue
                pending.popleft()
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
        if own and zygote is not None:
            zygote.close()


def main(argv: list[str]) -> int:
    if argv[0] == "--zygote":
        return zygote_main(argv[1], int(argv[2]), int(argv[3]), int(argv[4]))
    state, task_file, fd, threads, started_by, parent = argv  # a fresh interpreter for one task (zygote_main)
    return _grade(_load(state), task_file, int(fd), int(parent), int(threads), int(started_by))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
