"""Grading on a Dask cluster (issue 15): a real ``dask scheduler`` and two workers (``python -m autograder
worker``) on localhost, each its own process group, grading the mixed batch of tests/test_batch_grading.py;
then the same with one worker killed mid-batch. Scores must be the serial path's, read FROM THE GRADEBOOK,
each submission recorded once.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from autograder.course import REPO_ROOT
from autograder.grading import autograde
from tests.fixtures import unruly_judge
from tests.test_batch_grading import EXPECTED, LAB, check_expected, make_course, runs, verdict_outputs
from tests.test_grading_e2e import grades

distributed = pytest.importorskip("distributed")


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


class Cluster:
    """``dask scheduler`` on 127.0.0.1 and named workers, each started in a session of its own."""

    def __init__(self, tmp: Path):
        self.file = tmp / "scheduler.json"
        self.scheduler = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
             "--no-dashboard", "--scheduler-file", str(self.file)],
            env=_env(), start_new_session=True, stdout=subprocess.DEVNULL, stderr=(tmp / "scheduler.log").open("w"))
        self.workers: dict[str, subprocess.Popen] = {}
        self.tmp = tmp
        for _ in range(600):
            if self.file.is_file() and self.file.stat().st_size:
                break
            time.sleep(0.1)
        import json

        self.address = json.loads(self.file.read_text())["address"]

    def start_worker(self, name: str) -> None:
        self.workers[name] = subprocess.Popen(
            [sys.executable, "-m", "autograder", "worker", self.address, "--name", name], env=_env(),
            start_new_session=True, stdout=subprocess.DEVNULL, stderr=(self.tmp / f"{name}.log").open("w"))

    def client(self):
        return distributed.Client(self.address, timeout=60)

    def kill(self, name: str) -> None:
        """SIGKILL the worker's whole process group (its nanny, the worker and what they forked)."""
        os.killpg(self.workers[name].pid, signal.SIGKILL)
        self.workers[name].wait()

    def close(self) -> None:
        for proc in [*self.workers.values(), self.scheduler]:
            if proc.poll() is not None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            except ProcessLookupError:
                pass


@pytest.fixture
def cluster(tmp_path):
    cluster = Cluster(tmp_path)
    try:
        for name in ("w1", "w2"):
            cluster.start_worker(name)
        with cluster.client() as client:
            client.wait_for_workers(2, timeout=300)
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    course = make_course(tmp_path_factory.mktemp("serial"))
    autograde(course, LAB, judge=unruly_judge.judge_notebook, execute=False, out=lambda line: None)
    return course


def test_a_scheduler_and_two_workers_give_the_serial_gradebook(cluster, serial, tmp_path):
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
    assert groups <= {proc.pid for proc in cluster.workers.values()}  # graded on the workers, not here
    assert any(f"Dask scheduler {cluster.address}" in line for line in log)


def test_a_worker_killed_mid_batch_loses_nothing(cluster, serial, tmp_path):
    course = make_course(tmp_path / "course")
    done: list = []
    batch = threading.Thread(target=lambda: done.append(autograde(
        course, LAB, judge=unruly_judge.judge_notebook, execute=False, scheduler=cluster.address,
        out=lambda line: None)))
    batch.start()
    interrupted = None
    with cluster.client() as client:
        deadline = time.monotonic() + 300
        while interrupted is None and time.monotonic() < deadline and batch.is_alive():
            names = {addr: info["name"] for addr, info in client.scheduler_info()["workers"].items()}
            for addr, keys in client.processing().items():
                busy = [k for k in keys if str(k).startswith(f"grade-{LAB}-")]
                if names.get(addr) == "w1" and busy:
                    interrupted = [str(k).split("-")[2] for k in busy]
                    break
            else:
                time.sleep(0.2)
    assert interrupted is not None, "w1 was never seen grading"
    cluster.kill("w1")
    killed_at = time.time()
    batch.join(timeout=900)
    assert not batch.is_alive() and done
    results = {r.student: r for r in done[0]}
    assert grades(course, LAB) == grades(serial, LAB)
    rows = runs(course)
    assert set(rows) == {s for s, v in EXPECTED.items() if v is not None}  # one row each (the key is the student)
    for student in interrupted:  # what w1 held when it was killed: graded all the same
        assert results[student].status == ("failed" if student == "crasher" else "graded"), student
    for student, row in rows.items():  # recorded by w1 before it died, or by w2
        pid = int(row["worker"].rpartition(":")[2])
        if row["graded_at"] > killed_at + 1:
            assert os.getpgid(pid) == cluster.workers["w2"].pid, student
    assert any(row["graded_at"] > killed_at for row in rows.values())  # the batch went on after the kill
