"""Grading a course of hundreds (issue 15): ``--jobs N`` on one machine, the content-hash skip, one gradebook
writer, and faults (a grading process that crashes, hangs or floods memory; a coordinator killed mid-batch).

The fixture lab (tests/fixtures/labs: 2 + 3 points and a written answer) judged by the stand-in judge
(tests/fixtures/fake_judge.py), or by tests/fixtures/unruly_judge.py, which is that judge plus markers that
make the *grading process* misbehave. A serial run (``jobs=1``) is the reference every other run must equal,
read back FROM THE GRADEBOOK. Dask is in tests/test_dask_grading.py. Every grading process is forked from a
zygote, a fresh single-threaded interpreter (never from this pytest process, which has imported torch and has
threads); each test has a time limit so a hang fails it instead of holding up the run.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest

from autograder.course import REPO_ROOT, Course, Labs
from autograder.demo import hostile, perfect, submit, with_cells
from autograder.feedback import is_test_cell
from autograder.feedback_jail import KernelLimits
from autograder.grading import autograde
from autograder.report import grade_rows
from tests.fixtures import unruly_judge
from tests.fixtures.processes import processes_with
from tests.test_grading_e2e import DAEMON, FIXTURE_LABS, GRADEBOOK_ATTACK, LAB, SQUARE_OK, grades

NORMALIZE_WRONG = "def normalize_rows(x):\n    return x\n"
# (test_square_sum, test_normalize_rows) from the judge; None: the grading process died, nothing recorded
EXPECTED = {"perfect": (2, 3), "stubs": (0, 0), "forger": (0, 0), "broken_json": (0, 0), "half": (2, 0),
            "crasher": None}
JUDGE = "tests.fixtures.unruly_judge:judge_notebook"
pytestmark = pytest.mark.timeout(900)  # a batch here takes a minute or two; a hang fails fast


def make_course(root: Path, students=tuple(EXPECTED)) -> Course:
    """A course with the mixed batch (or some of it) submitted."""
    course = Course(root, labs=Labs(FIXTURE_LABS))
    release_nb = nbformat.read(course.prepare(LAB), as_version=4)
    good = perfect(nbformat.read(course.labs.source(LAB), as_version=4), release_nb)
    notebooks = {
        "perfect": good, "stubs": release_nb, "forger": hostile(release_nb),
        "half": with_cells(good, {"normalize_rows": NORMALIZE_WRONG}),
        "crasher": with_cells(good, {"square_sum": "# CRASH-THE-GRADER\n" + SQUARE_OK}),
        "hanger": with_cells(good, {"square_sum": "# HANG-THE-GRADER\n" + SQUARE_OK}),
        "flooder": with_cells(good, {"square_sum": "# FLOOD-THE-GRADER\n" + SQUARE_OK}),
    }
    for student in students:
        if student == "broken_json":
            broken = course.path("submitted", LAB, student) / f"{LAB}.ipynb"
            broken.parent.mkdir(parents=True)
            broken.write_text(nbformat.writes(good)[:500])
        else:
            submit(course, LAB, student, notebooks[student])
    return course


def verdict_outputs(course: Course) -> dict[str, list]:
    """{student: the outputs of every test cell of the autograded notebook} (the judge's verdicts as shown)."""
    found = {}
    for folder in sorted((course.root / "autograded").glob(f"*/{LAB}")):
        nb = nbformat.read(folder / f"{LAB}.ipynb", as_version=4)
        found[folder.parent.name] = [c.outputs for c in nb.cells if is_test_cell(c)]
    return found


def runs(course: Course) -> dict[str, dict]:
    with sqlite3.connect(course.root / "gradebook.db") as db:
        db.row_factory = sqlite3.Row
        return {r["student"]: dict(r) for r in db.execute("SELECT * FROM autograder_run WHERE assignment = ?", (LAB,))}


def check_expected(book: dict) -> None:
    assert set(book) == {s for s, v in EXPECTED.items() if v is not None}
    for student, (square, normalize) in ((s, v) for s, v in EXPECTED.items() if v is not None):
        assert book[student]["test_square_sum"][0] == square, student
        assert book[student]["test_normalize_rows"][0] == normalize, student


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    course = make_course(tmp_path_factory.mktemp("serial"))
    log: list[str] = []
    results = autograde(course, LAB, judge=unruly_judge.judge_notebook, execute=False, jobs=1, out=log.append)
    return course, {r.student: r for r in results}, log


@pytest.fixture(scope="module")
def parallel(tmp_path_factory):
    course = make_course(tmp_path_factory.mktemp("parallel"))
    log: list[str] = []
    results = autograde(course, LAB, judge=unruly_judge.judge_notebook, execute=False, jobs=2, out=log.append)
    return course, {r.student: r for r in results}, log


def test_jobs_2_gives_the_gradebook_and_feedback_of_jobs_1(serial, parallel):
    book = grades(serial[0], LAB)
    check_expected(book)
    assert grades(parallel[0], LAB) == book
    assert verdict_outputs(parallel[0]) == verdict_outputs(serial[0])
    assert set(verdict_outputs(serial[0])) == set(book)  # the crasher has no autograded notebook either
    for results in (serial[1], parallel[1]):
        assert {s: r.status for s, r in results.items()} == {s: ("failed" if v is None else "graded")
                                                           for s, v in EXPECTED.items()}
        assert results["perfect"].score == 5 and results["half"].score == 2


def test_a_crashing_grading_process_costs_only_its_own_submission_and_is_reported(parallel):
    course, results, log = parallel
    assert "ended without a verdict (exit status 3)" in results["crasher"].problem
    assert any(line.startswith("[autograde]   failed crasher: ") for line in log)
    summary = next(line for line in log if line.startswith("[autograde] summary:"))
    assert "5 graded, 0 unchanged (skipped), 1 failed" in summary
    assert "crasher" not in runs(course)
    with sqlite3.connect(course.root / "gradebook.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_each_graded_submission_has_its_hash_and_time_and_report_shows_it(parallel):
    course = parallel[0]
    rows = runs(course)
    assert set(rows) == {s for s, v in EXPECTED.items() if v is not None}
    for student, row in rows.items():
        assert len(row["content_hash"]) == 64 and row["seconds"] > 0, student
        phases = {"feedback", "record"} | ({"judge"} if student != "broken_json" else set())  # unreadable: no judge
        assert phases <= set(json.loads(row["breakdown"])), student
    assert len({row["content_hash"] for row in rows.values()}) == len(rows)
    _, table = grade_rows(course, LAB)
    assert {r["student"]: r["seconds"] for r in table} == {s: round(r["seconds"], 1) for s, r in rows.items()}


def test_a_rerun_grades_only_what_changed_unless_forced(parallel):
    course = parallel[0]
    before = runs(course)
    good = nbformat.read(course.path("submitted", LAB, "perfect") / f"{LAB}.ipynb", as_version=4)
    submit(course, LAB, "stubs", good)  # the student handed in again, now the right answers
    log: list[str] = []
    results = {r.student: r for r in autograde(course, LAB, judge=unruly_judge.judge_notebook, execute=False,
                                               jobs=2, out=log.append)}
    assert {s: r.status for s, r in results.items()} == {
        "perfect": "unchanged", "forger": "unchanged", "broken_json": "unchanged", "half": "unchanged",
        "stubs": "graded", "crasher": "failed"}  # the crasher had no verdict: tried again
    assert results["half"].score == 2 and results["stubs"].score == 5
    after = runs(course)
    assert after["stubs"]["content_hash"] != before["stubs"]["content_hash"]
    assert {s: after[s] for s in ("perfect", "half")} == {s: before[s] for s in ("perfect", "half")}
    assert grades(course, LAB)["stubs"]["test_normalize_rows"][0] == 3
    forced = autograde(course, LAB, student="half", judge=unruly_judge.judge_notebook, execute=False, force=True,
                       out=log.append)
    assert [(r.student, r.status, r.score) for r in forced] == [("half", "graded", 2)]
    assert runs(course)["half"]["graded_at"] > before["half"]["graded_at"]


def test_a_hanging_or_flooding_grading_process_costs_only_its_own_submission(tmp_path):
    course = make_course(tmp_path, ["perfect", "hanger", "flooder"])
    log: list[str] = []
    results = {r.student: r for r in autograde(course, LAB, judge=unruly_judge.judge_notebook, execute=False,
                                               jobs=2, submission_timeout=45, grader_memory_mb=3072,
                                               out=log.append)}
    assert results["hanger"].status == "failed" and "longer than 45 s" in results["hanger"].problem
    assert results["flooder"].status == "graded" and "MemoryError" in results["flooder"].problem
    assert results["perfect"].score == 5
    book = grades(course, LAB)
    assert set(book) == {"perfect", "flooder"}
    assert book["flooder"]["test_square_sum"][0] == 0 and book["perfect"]["test_normalize_rows"][0] == 3
    assert _children() == []  # the hanging one was stopped


LIMITS = KernelLimits(cell_timeout=10, wall_timeout=120, memory_mb=2048)


def test_kernel_steps_side_by_side_keep_their_jails(tmp_path):
    """--jobs 2 with nbgrader's kernel step: every hostile kernel hits only its own throwaway course."""
    course = make_course(tmp_path, ["perfect"])
    good = nbformat.read(course.path("submitted", LAB, "perfect") / f"{LAB}.ipynb", as_version=4)
    marker = f"batch-daemon-{os.getpid()}-{time.time_ns()}"
    submit(course, LAB, "gradebook_writer", with_cells(good, {"square_sum": GRADEBOOK_ATTACK.format(
        targets=["../../../gradebook.db", str(course.root / "gradebook.db")]) + SQUARE_OK}))
    submit(course, LAB, "kernel_killer", with_cells(good, {"square_sum": "import os\nos._exit(1)\n" + SQUARE_OK}))
    submit(course, LAB, "forker", with_cells(good, {"square_sum": DAEMON.format(marker=marker) + SQUARE_OK}))
    results = {r.student: r for r in autograde(course, LAB, judge=unruly_judge.judge_notebook, limits=LIMITS,
                                               jobs=2, out=lambda line: None)}
    book = grades(course, LAB)
    assert {s: (c["test_square_sum"][0], c["test_normalize_rows"][0]) for s, c in book.items()} == {
        "perfect": (2, 3), "gradebook_writer": (2, 3), "kernel_killer": (0, 3), "forker": (2, 3)}
    with sqlite3.connect(course.root / "gradebook.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert "gradebook was damaged" in results["gradebook_writer"].kernel
    assert "kernel died" in results["kernel_killer"].kernel
    assert results["perfect"].kernel == "ok" and results["forker"].kernel == "ok"
    assert processes_with(marker) == []
    assert {"kernel_step", "judge"} <= set(results["perfect"].breakdown)


# -- the coordinator killed mid-batch ------------------------------------------------------------------------
def _cli(course: Course, *extra: str) -> list[str]:
    return [sys.executable, "-m", "autograder", "--labs-dir", str(FIXTURE_LABS), "autograde", LAB,
            "--course-dir", str(course.root), "--judge", JUDGE, "--no-execute", "--no-progress", *extra]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def _children() -> list[int]:
    """Processes whose parent is this one."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == os.getpid():
                pids.append(int(entry))
    return pids


def _grading_processes_of(parent: int) -> list[int]:
    """Grading processes started by ``parent`` (``python -m autograder.workers ... PARENT``), even orphaned."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"autograder.workers" in argv and argv[-2:] == [str(parent).encode(), b""]:
                pids.append(int(entry))
    return pids


def test_killing_the_coordinator_mid_batch_then_rerunning_gives_the_uninterrupted_gradebook(tmp_path, serial):
    course = make_course(tmp_path)
    proc = subprocess.Popen(_cli(course, "--jobs", "2"), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            if (course.root / "gradebook.db").is_file():
                try:
                    if len(runs(course)) >= 1:
                        break
                except sqlite3.OperationalError:  # no table yet, or locked by the writer
                    pass
            time.sleep(0.2)
        assert proc.poll() is None, "the batch finished before it could be interrupted"
        proc.send_signal(signal.SIGKILL)  # the coordinator only: its grading processes must stop by themselves
        proc.wait()
        first = runs(course)
        assert 1 <= len(first) < len(EXPECTED) - 1
        for _ in range(150):  # the grading processes it started stop with it (PR_SET_PDEATHSIG)
            if not _grading_processes_of(proc.pid):
                break
            time.sleep(0.2)
        assert _grading_processes_of(proc.pid) == []
    finally:  # whatever happened above, nothing of that run is left
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    rerun = subprocess.run(_cli(course, "--jobs", "2"), env=_env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 1, rerun.stdout + rerun.stderr  # the crasher failed again
    summary = next(line for line in rerun.stdout.splitlines() if line.startswith("[autograde] summary:"))
    assert f"{len(first)} unchanged (skipped)" in summary and "1 failed" in summary
    assert grades(course, LAB) == grades(serial[0], LAB)
    assert {s: r["content_hash"] for s, r in runs(course).items() if s in first} == {
        s: r["content_hash"] for s, r in first.items()}
    with sqlite3.connect(course.root / "gradebook.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_the_zygote_has_torch_loaded_and_one_thread_when_it_forks(tmp_path):
    """What makes forking the grading processes safe (autograder.workers): the zygote has imported what grading
    needs, torch among it, and runs a single thread."""
    from autograder.submission import Warm, make_setup
    from autograder.workers import Zygote

    course = make_course(tmp_path, students=("perfect",))
    warm = Warm(make_setup(course, LAB, judge=unruly_judge.judge_notebook, execute=False))
    zygote = Zygote(warm, threads=1)
    try:
        pid = zygote.proc.pid
        assert "libtorch_cpu" in Path(f"/proc/{pid}/maps").read_text()
        assert os.listdir(f"/proc/{pid}/task") == [str(pid)]
    finally:
        zygote.close()
        warm.close()
    assert zygote.proc.returncode == 0


def test_without_forking_each_grading_process_is_a_fresh_interpreter_with_the_same_grades(tmp_path, serial,
                                                                                          monkeypatch):
    monkeypatch.setenv("AUTOGRADER_NO_FORK", "1")  # the zygote execs a fresh interpreter per submission
    course = make_course(tmp_path, students=("perfect", "half", "crasher"))
    seen: set[int] = set()  # fresh interpreters (their argv names the task file; a fork keeps the zygote's)
    done = threading.Event()

    def watch():
        while not done.is_set():
            seen.update(processes_with(f"{os.sep}task-"))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        results = {r.student: r for r in autograde(course, LAB, judge=unruly_judge.judge_notebook, execute=False,
                                                   jobs=2, out=lambda line: None)}
    finally:
        done.set()
        watcher.join()
    assert seen, "no grading process was a fresh interpreter"
    reference = grades(serial[0], LAB)
    assert grades(course, LAB) == {s: reference[s] for s in ("perfect", "half")}
    assert "exit status 3" in results["crasher"].problem
