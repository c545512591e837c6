"""Grading on a Dask cluster (issue 15): a real ``dask scheduler`` and two workers (``python -m autograder
worker``) on localhost, each in a process group of its own, grading the mixed batch of
tests/test_batch_grading.py; then the same with one worker killed mid-batch. Scores must be the serial path's,
read FROM THE GRADEBOOK, each submission recorded once.

Nothing outlives a test: the cluster fixture kills every process group it started (scheduler, each worker's
nanny, worker and grading processes) in its finalizer, pass or fail, and checks that none is left.
"""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from autograder.grading import autograde
from autograder.workers import grading_env
from tests.fixtures import unruly_judge
from tests.test_batch_grading import EXPECTED, LAB, check_expected, make_course, runs, verdict_outputs
from tests.test_grading_e2e import grades

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.timeout(900)  # a hang fails the test; the fixture still tears the cluster down


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of the process group ``pgid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def grading_under(pgid: int) -> list[str]:
    """The students whose grading processes run in ``pgid``: each holds its task file (``task-*``) open."""
    students = []
    for pid in group_members(pgid):
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = Path(os.readlink(fd))
                if target.name.startswith("task-"):
                    with open(target, "rb") as f:
                        students.append(pickle.load(f).student)
        except (OSError, EOFError, pickle.UnpicklingError):  # gone, or its task file not written yet
            pass
    return students


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


class Cluster:
    """``dask scheduler`` on 127.0.0.1 and named workers, each started in a session (process group) of its own."""

    def __init__(self, tmp: Path):
        self.tmp, self.address = tmp, None
        self.procs: dict[str, subprocess.Popen] = {}

    def _start(self, name: str, command: list[str], env: dict) -> subprocess.Popen:
        with (self.tmp / f"{name}.log").open("w") as log:
            proc = subprocess.Popen(command, env=env, start_new_session=True, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def start_scheduler(self) -> None:
        file = self.tmp / "scheduler.json"
        proc = self._start("scheduler", [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host",
                                         "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file",
                                         str(file)], grading_env())
        deadline = time.monotonic() + 120
        while not (file.is_file() and file.stat().st_size):
            assert proc.poll() is None and time.monotonic() < deadline, (self.tmp / "scheduler.log").read_text()
            time.sleep(0.1)
        self.address = json.loads(file.read_text())["address"]

    def start_worker(self, name: str, **env: str) -> None:
        self._start(name, [sys.executable, "-m", "autograder", "worker", self.address, "--name", name],
                    {**grading_env(), **env})

    def worker_pgid(self, name: str) -> int:
        return self.procs[name].pid  # a session leader: its pid is its group's id

    def client(self):
        return distributed.Client(self.address, timeout=60)

    def kill(self, name: str) -> None:
        """SIGKILL the worker's whole process group (its nanny, the worker and the grading processes)."""
        _killpg(self.worker_pgid(name), signal.SIGKILL)
        self.procs[name].wait(timeout=30)

    def close(self) -> list[int]:
        """Workers first, then the scheduler: SIGTERM to each group, SIGKILL to what is left; the pids that
        survived even that (should be none)."""
        for proc in reversed(self.procs.values()):
            _killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
            _killpg(proc.pid, signal.SIGKILL)  # the leader may be gone with members left (a stuck child)
            proc.wait(timeout=30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            left = [pid for proc in self.procs.values() for pid in group_members(proc.pid)]
            if not left:
                break
            time.sleep(0.2)
        return left


@pytest.fixture
def cluster(tmp_path):
    cluster = Cluster(tmp_path)
    try:
        cluster.start_scheduler()
        yield cluster
    finally:
        left = cluster.close()
    assert left == [], f"processes of the test cluster still running: {left}"


def start_workers(cluster: Cluster, stalled: str | None = None) -> None:
    for name in ("w1", "w2"):
        cluster.start_worker(name, **({unruly_judge.STALL: "1"} if name == stalled else {}))
    with cluster.client() as client:
        client.wait_for_workers(2, timeout=300)


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    course = make_course(tmp_path_factory.mktemp("serial"))
    autograde(course, LAB, judge=unruly_judge.judge_notebook, execute=False, out=lambda line: None)
    return course


def test_a_scheduler_and_two_workers_give_the_serial_gradebook(cluster, serial, tmp_path):
    start_workers(cluster)
    course = make_course(tmp_path / "course")
    log: list[str] = []
    results = {r.student: r for r in autograde(course, LAB, judge=unruly_judge.judge_notebook, execute=False,
                                               scheduler=cluster.address, out=log.append)}
    check_expected(grades(course, LAB))
    assert grades(course, LAB) == grades(serial, LAB)
    assert verdict_outputs(course) == verdict_outputs(serial)
    assert results["crasher"].status == "failed" and "exit status 3" in results["crasher"].problem
    pids = {int(row["worker"].rpartition(":")[2]) for row in runs(course).values()}
    groups = {os.getpgid(pid) for pid in pids}
    assert groups <= {cluster.worker_pgid(w) for w in ("w1", "w2")}  # graded on the workers, not here
    assert any(f"Dask scheduler {cluster.address}" in line for line in log)


def test_a_worker_killed_mid_batch_loses_nothing(cluster, serial, tmp_path):
    """w1's grading processes stall (tests/fixtures/unruly_judge.py, STALL): once one runs, w1 is killed
    holding unfinished work, deterministically; all of it must be graded by w2, each submission once (broken_json, which
    never reaches the judge, may have been finished by w1 before). (No
    second Client in this process while the batch runs: closing it cancelled the batch's futures.)"""
    start_workers(cluster, stalled="w1")
    course = make_course(tmp_path / "course")
    done: list = []
    batch = threading.Thread(daemon=True, target=lambda: done.append(autograde(
        course, LAB, judge=unruly_judge.judge_notebook, execute=False, scheduler=cluster.address,
        out=lambda line: None)))
    batch.start()
    held: list[str] = []
    deadline = time.monotonic() + 300
    while not held and time.monotonic() < deadline and batch.is_alive():
        # broken_json never reaches the (stalling) judge: w1 may finish it, so it does not count as held
        held = [s for s in grading_under(cluster.worker_pgid("w1")) if s != "broken_json"]
        time.sleep(0.2)
    assert held, "w1 was never given a submission"
    w1_members = set(group_members(cluster.worker_pgid("w1")))
    cluster.kill("w1")
    batch.join(timeout=600)
    assert not batch.is_alive() and done, "the batch did not finish after w1 was killed"
    results = {r.student: r for r in done[0]}
    assert {s: r.problem for s, r in results.items() if r.status == "failed"}.keys() == {"crasher"}, \
        {s: r.problem for s, r in results.items()}
    assert grades(course, LAB) == grades(serial, LAB)
    rows = runs(course)
    assert set(rows) == {s for s, v in EXPECTED.items() if v is not None}  # one row each (the key is the student)
    for student in held:  # what w1 held when it was killed: graded all the same
        assert results[student].status == ("failed" if student == "crasher" else "graded"), student
    for student, row in rows.items():  # held work moved to w2; w1 may have finished broken_json first
        pid = int(row["worker"].rpartition(":")[2])
        if student in held:
            assert pid not in w1_members and os.getpgid(pid) == cluster.worker_pgid("w2"), student
        else:
            assert pid in w1_members or os.getpgid(pid) == cluster.worker_pgid("w2"), student
