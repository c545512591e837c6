"""The scoring child (the jail's entry point): runs the student's cells, then calls each probe, and writes back plain arrays.

Started by :mod:`autograder.judge.scoring_jail` as ``python -I -c <boot> SANDBOX``.
As root it first applies the limits, builds the jail, forks (the parent stays
behind as the PID namespace's init and reaps) and drops to an unprivileged uid;
only then does the worker import torch and run student code.

Output goes through the pipe of :mod:`.channel`: a status frame (cell errors,
per-case errors, tripwire calls, progress) after every cell and exercise, and
an arrays frame per exercise (:mod:`.arrays`; keys ``case:key``, numeric arrays only). The parent
trusts none of it.
"""
from __future__ import annotations

import builtins
import importlib
import io
import json
import os
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from . import arrays, channel, confine

MAX_INPUT_BYTES = 64 * 2**20


def reseed(seed: int = 0) -> None:
    """Python's, numpy's and torch's global generators seeded: each probe starts from the same state whichever cells
    ran before it (the judge skips the instructor's experiments, and some of them seed torch). Not labkit's
    seed_everything: the judge knows no lab, and the child's labkit is the student's to change."""
    import random

    random.seed(seed)
    for name, seeder in (("numpy", lambda m: m.random.seed(seed)), ("torch", lambda m: m.manual_seed(seed))):
        if name in sys.modules:
            seeder(sys.modules[name])


class TimeLimitExceeded(BaseException):
    """Raised in student code by the per-cell / per-exercise alarm; a BaseException, so `except Exception` misses it."""


@contextmanager
def time_limit(seconds: float, allowed: float | None = None):
    """Interrupt the block after ``seconds`` (reporting ``allowed`` seconds, when it is the rest of a budget)."""
    def alarm(signum, frame):
        raise TimeLimitExceeded(f"did not finish within {allowed or seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def describe(err: BaseException) -> str:
    """The first lines of an error, never more than 300 characters, even for a hostile ``__str__``."""
    try:
        with time_limit(2):
            text = f"{type(err).__name__}: {err}".strip()
    except BaseException:
        text = "an exception that could not be printed"
    if isinstance(err, MemoryError):
        text += " (out of memory: the memory limit was reached)"
    return " | ".join(text.splitlines()[:3])[:300]


class CappedStream(io.TextIOBase):
    """stdout/stderr that pass on the first ``cap`` characters and silently drop the rest."""

    def __init__(self, stream, cap: int):
        self.stream, self.cap, self.written = stream, cap, 0

    def write(self, text) -> int:
        text = str(text)
        if self.written < self.cap:
            try:
                self.stream.write(text[: self.cap - self.written])
                self.stream.flush()
            except Exception:
                pass
        self.written += len(text)
        return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except Exception:
            pass

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self):
        return "utf-8"


class Worker:
    def __init__(self, sandbox: Path, plan: dict):
        self.sandbox, self.plan = sandbox, plan
        self.fd = plan["channel_fd"]
        self.status = {"cells": {}, "exercises": {}, "progress": "starting"}

    def write_status(self) -> None:
        try:
            channel.send(self.fd, b"S", "status", json.dumps(self.status).encode())
        except BaseException:
            pass

    def run(self) -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a full output file fails the write, it does not kill us
        os.set_inheritable(self.fd, False)  # programs the student starts do not get the channel
        sys.stdout = CappedStream(sys.stdout, self.plan["stream_cap"])
        sys.stderr = CappedStream(sys.stderr, self.plan["stream_cap"])
        from .tripwires import Tripwires

        self.tripwires = Tripwires(self.plan["tripwires"])
        sys.meta_path.insert(0, self.tripwires)
        import numpy as np  # noqa: F401  (before student code: our own references)

        module = importlib.import_module(self.plan["module"])  # the exercises' module, named by the caller
        probes = {ex.grade_id: ex.probe for ex in module.EXERCISES}
        self.write_status()
        namespace = self.run_cells()
        inputs = self.load_inputs()  # only now: the inputs never exist while student cells run
        for exercise in self.plan["exercises"]:
            self.probe(exercise, probes[exercise["grade_id"]], namespace.get(exercise["function"]), inputs)
        self.status["progress"] = "done"
        self.write_status()

    def load_inputs(self) -> dict:
        """The probes' inputs, read from stdin (fd 0), where the parent writes them; whatever the student's code
        did to fd 0 only costs it its inputs."""
        chunks, size = [], 0
        try:
            while size <= MAX_INPUT_BYTES:
                chunk = os.read(0, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        except OSError:
            pass
        inputs: dict = {}
        for key, value in arrays.decode(b"".join(chunks)).items():
            gid, case, arg = key.split(":")
            inputs.setdefault(gid, {}).setdefault(case, {})[arg] = value
        return inputs

    def run_cells(self) -> dict:
        work = self.plan["work"]
        os.chdir(work)
        sys.path.insert(0, work)  # like a kernel started in the notebook's folder
        namespace = {"__name__": "__main__", "__builtins__": builtins}
        for label, code in self.plan["cells"]:
            self.status["progress"] = f"cell '{label}'"
            self.write_status()
            try:
                compiled = compile(code, f"<cell {label}>", "exec")
                with time_limit(self.plan["cell_s"]):
                    exec(compiled, namespace)
            except BaseException as err:
                self.status["cells"].setdefault(label, describe(err))
        return namespace

    def probe(self, exercise: dict, probe, function, inputs: dict) -> None:
        import numpy as np

        gid = exercise["grade_id"]
        record = {"defined": callable(function), "errors": {}, "calls": []}
        self.status["progress"] = f"the checks of {exercise['function']}"
        self.write_status()
        results = {}
        deadline = time.monotonic() + self.plan["probe_s"]
        for case in exercise["cases"] if callable(function) else ():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                record["errors"][case] = f"did not finish within {self.plan['probe_s']:.0f} s"
                continue
            self.tripwires.active = gid
            try:
                with time_limit(remaining, allowed=self.plan["probe_s"]):
                    reseed()
                    result = probe(function, inputs.get(gid, {}).get(case, {}))
                for key, value in result.items():
                    value = np.asarray(value)
                    if value.dtype.kind in "biuf":
                        results[f"{case}:{key}"] = value
            except BaseException as err:
                record["errors"][case] = describe(err)
            finally:
                self.tripwires.active = None
        record["calls"] = sorted(self.tripwires.calls.get(gid, ()))
        try:
            channel.send(self.fd, b"A", gid, arrays.encode(results))
        except BaseException as err:
            record["errors"]["_send"] = describe(err)
        self.status["exercises"][gid] = record
        self.write_status()


def main(sandbox: str) -> None:
    sandbox = Path(sandbox)
    plan = json.loads((sandbox / "io" / "plan.json").read_text())
    confine.set_limits(plan["limits"])
    if plan.get("jail"):
        confine.enter_jail(plan["jail"], plan["uid"])
    pid = os.fork()
    if pid:
        os.close(plan["channel_fd"])  # only the worker reports
        os._exit(confine.wait_for(pid))
    if plan.get("uid") is not None:
        confine.drop_privileges(plan["uid"], plan["gid"])
    if plan.get("selftest"):
        import numpy  # noqa: F401  (the Python installation is readable from inside)

        channel.send(plan["channel_fd"], b"S", "status", json.dumps({"progress": "selftest"}).encode())
        os._exit(0)
    try:
        Worker(sandbox, plan).run()
    except BaseException:
        import traceback

        traceback.print_exc(file=sys.__stderr__)
        sys.__stderr__.flush()
        os._exit(3)
    os._exit(0)  # no student atexit handlers, no lingering threads
