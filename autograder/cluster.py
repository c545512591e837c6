"""Grading on a Dask cluster (``autograde LAB --scheduler tcp://HOST:PORT``, or ``--dask`` for a LocalCluster).

The coordinator sends each submission's *files* (not a path: the workers need no shared course directory) and
the lab's setup (:class:`autograder.submission.Setup`: release and source as bytes, the judge by name) to the
workers. A worker warms up once per lab (:class:`autograder.submission.Warm`: its own scratch folder, its
own probed jails and template course) and grades each submission exactly as on the coordinator's machine: in
a fresh grading process (:mod:`autograder.workers`), student code only in the two jails. What comes back is
plain data (verdicts, the feedback notebook as JSON, the kernel log, times); only the coordinator writes
``autograded/`` and the gradebook, one transaction per submission, as results arrive.

A worker that dies mid-task loses nothing: the scheduler gives its tasks to another worker (Dask's
``distributed.scheduler.allowed-failures``), and a submission is recorded once, when its first outcome
arrives. Workers need this repository and its venv (``python -m autograder worker tcp://HOST:PORT`` starts
one with the repository on its path); see the README, "Grading on a cluster".
"""
from __future__ import annotations

import logging
import os
import sys
import threading

from .course import CourseError
from .submission import Setup, Task, Warm, failed
from .workers import Zygote, grading_env, run_local

_WARM: dict[str, tuple[Warm, Zygote]] = {}  # this worker's, for the lab it grades now
_LOCK = threading.Lock()


def grade_on_worker(setup: Setup, task: Task, timeout_s: float) -> dict:
    """Runs on a Dask worker: one submission, in a grading process forked by this worker's zygote (made once
    per lab, and again should it die); its outcome."""
    with _LOCK:
        warm, zygote = _WARM.get(setup.key, (None, None))
        if zygote is not None and zygote.proc.poll() is not None:
            zygote.close()
            zygote = None
        if warm is None:
            for old, old_zygote in _WARM.values():
                old_zygote.close()
                old.close()
            _WARM.clear()
            warm = Warm(setup)
        zygote = zygote or Zygote(warm, threads=1)
        _WARM[setup.key] = warm, zygote
        # under the lock: a zygote serves one thread (workers run one task at a time: --nthreads 1)
        return list(run_local(warm, [task], 1, timeout_s, zygote=zygote))[0]


def _client(scheduler: str, jobs: int):
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as err:
        raise CourseError(f"grading on Dask needs dask[distributed] (pip install -e '.[course]'): {err}") from None
    if scheduler == "local":
        cluster = LocalCluster(n_workers=max(jobs, 1), threads_per_worker=1, processes=True, memory_limit=0,
                               dashboard_address=None, silence_logs=logging.ERROR)
        return Client(cluster), cluster
    try:
        return Client(scheduler, timeout=30), None
    except OSError as err:
        raise CourseError(f"no Dask scheduler at {scheduler} ({err}); start one with `dask scheduler` "
                          "and workers with `python -m autograder worker ADDRESS`") from None


def run_dask(setup: Setup, tasks: list[Task], scheduler: str, jobs: int, timeout_s: float):
    """Yield each task's outcome as it arrives from the cluster (failed, with the reason, if it got none)."""
    from dask.distributed import as_completed

    client, cluster = _client(scheduler, jobs)
    try:
        shared = client.scatter(setup, broadcast=True)
        futures = {client.submit(grade_on_worker, shared, task, timeout_s, pure=False,
                                 key=f"grade-{setup.lab}-{task.student}-{task.content_hash[:12]}"): task
                   for task in tasks}
        for future in as_completed(futures):
            task = futures[future]
            try:
                outcome = future.result()
            except Exception as err:  # the task failed on every worker it was given to
                outcome = failed(task, f"no Dask worker could grade it ({err.__class__.__name__}: {err})")
            future.release()
            yield outcome
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def start_worker(scheduler: str, *, nworkers: int = 1, name: str | None = None, extra: list[str] = ()) -> int:
    """``dask worker SCHEDULER`` with this repository on the path (the autograder is used from the checkout),
    one thread per worker process; runs until stopped."""
    command = [sys.executable, "-m", "distributed.cli.dask_worker", scheduler, "--nthreads", "1",
               "--nworkers", str(nworkers), "--memory-limit", "0", *(["--name", name] if name else []), *extra]
    os.execve(sys.executable, command, grading_env())
    return 0  # not reached
