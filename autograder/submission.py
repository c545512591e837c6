"""One submission: graded in a grading process (:func:`grade_submission`, plain data back), recorded by the
coordinating process (:func:`record`). :mod:`autograder.grading` has the whole story; :mod:`autograder.batch`
runs many.

Per submission, in its grading process:

1. read ``submitted/<student>/<lab>/<lab>.ipynb``; missing, not JSON or not a
   notebook: every grade cell scores 0 and the feedback says why;
2. nbgrader's kernel step in the feedback jail (:mod:`autograder.kernel_step`):
   only for the outputs the student sees, never for a score;
3. the judge (:func:`autograder.exercises.judge_lab`: the lab's exercises graded
   by :mod:`autograder.judge`, a clean process that never ran student code)
   scores every autograded test cell, side by side with the kernel step;
4. the feedback notebook: the judge's verdict as the output of each test cell
   (:mod:`autograder.feedback`).

What comes back is an *outcome*, plain data (verdicts, the notebook as JSON, the kernel log, times), whether
the process ran here or on a Dask worker. Then, in the coordinating process only, :func:`record` writes
``autograded/<student>/<lab>/<lab>.ipynb`` and the log, and the judge's scores into the real gradebook with
nbgrader's API in one transaction (:mod:`autograder.gradebook`; written answers stay for manual grading).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import kernel_step
from .course import Course, CourseError, Labs
from .feedback import feedback_notebook, is_test_cell, write_autograded
from .feedback_jail import FeedbackJail, KernelLimits
from .gradebook import record_grades
from .judge import Verdict  # also for the verdicts the grader makes itself (unreadable submissions)
from .judge.notebook import MAX_NOTEBOOK_MB, SubmissionError, read_submission


@dataclass
class StudentResult:
    student: str
    score: float
    max_score: float
    seconds: float
    kernel: str  # "ok", or why the kernel step gave nothing
    problem: str = ""  # why the submission could not be graded at all
    status: str = "graded"  # "graded", "unchanged" (same content hash as when it was graded) or "failed"
    breakdown: dict = field(default_factory=dict)  # {phase: seconds}
    worker: str = ""


def default_judge():
    """The course's judge: the lab's exercises (autograder/exercises) graded by the engine (autograder/judge)."""
    try:
        from .exercises import judge_lab
    except ImportError as err:
        raise CourseError(f"the judge (autograder/judge, autograder/exercises) is not available: {err}") from None
    return judge_lab


# -- what a grading process needs (plain data, sent once per worker) -------------------------------------------
@dataclass(frozen=True)
class Setup:
    """One lab's batch as a worker needs it: the release folder and the source notebook as bytes, the judge (a
    function, pickled by reference), the kernel step's limits and whether it runs."""

    lab: str
    release: dict  # {relative path: bytes} of release/<lab>/
    source: bytes  # labs/source/<lab>/<lab>.ipynb
    judge: Callable | None = None
    limits: KernelLimits = KernelLimits()
    execute: bool = True
    grader_memory_mb: int = 16384  # RLIMIT_DATA of each grading process (the jails inside set lower ones)

    @property
    def key(self) -> str:
        """What the grade of a submission depends on besides the submission itself."""
        h = hashlib.sha256(f"{self.lab}\0{self.execute}\0{_judge_name(self.judge)}\0".encode())
        h.update(hashlib.sha256(self.source).digest())
        for rel in sorted(self.release):
            h.update(rel.encode() + b"\0" + hashlib.sha256(self.release[rel]).digest())
        exercises = Path(__file__).parent / "exercises" / f"{self.lab}.py"
        if exercises.is_file():
            h.update(exercises.read_bytes())
        return h.hexdigest()


def _judge_name(judge) -> str:
    return "default" if judge is None else f"{getattr(judge, '__module__', '?')}:{getattr(judge, '__qualname__', '?')}"


def make_setup(course: Course, lab: str, *, judge=None, limits=KernelLimits(), execute=True,
               grader_memory_mb: int | None = None) -> Setup:
    """Prepare the course directory for ``lab`` (source, release, the gradebook's record of it) and describe it."""
    release_nb = course.prepare(lab, cell_timeout=limits.cell_timeout)
    folder = release_nb.parent
    release = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    memory = grader_memory_mb or max(16384, 2 * limits.memory_mb)
    return Setup(lab, release, course.labs.source(lab).read_bytes(), judge, limits, execute, memory)


class Warm:
    """What every grading process of a batch on one machine shares, made once before they start: the release
    and source staged in a private scratch folder, the judge, both jails probed and the kernel step's template
    course. Each grading process gets a copy (pickled: :mod:`autograder.workers`) and calls :meth:`adopt`.
    Nothing here is touched by student code: that runs only in the jails' children."""

    def __init__(self, setup: Setup, *, jail: FeedbackJail | None = None, hide: list[Path] = ()):
        self.setup = setup
        self.scratch = Path(tempfile.mkdtemp(prefix="autograder-worker-"))
        os.chmod(self.scratch, 0o700)
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.scratch, True)
        lab = setup.lab
        self.course = Course(self.scratch / "course", labs=Labs(self.scratch / "labs"))
        for rel, data in setup.release.items():
            _write(self.course.path("release", lab) / rel, data)
        self.source = self.course.labs.source(lab)
        _write(self.source, setup.source)
        self.release_nb = nbformat.read(self.course.path("release", lab) / f"{lab}.ipynb", as_version=4)
        self.judge = setup.judge or default_judge()
        self.jail, self.template = None, None
        if setup.execute:
            kernel_step.prepare_data()
            hidden = [*kernel_step.hidden_paths(self.course), *(Path(p) for p in hide), self.scratch]
            self.jail = jail or FeedbackJail(setup.limits, hide=hidden)
            self.template = kernel_step.template(self.course, lab, self.scratch)
        self.caps = None
        if self.judge is default_judge():  # the scoring jail probes the machine once, here, not per submission
            from .judge.scoring_jail import capabilities

            self.caps = capabilities()

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_cleanup"}  # the scratch folder is the parent's

    def adopt(self) -> None:
        """In a grading process: take the parent's probe of the scoring jail instead of probing again."""
        if self.caps is not None:
            from .judge import scoring_jail

            scoring_jail.capabilities = lambda: self.caps

    def close(self) -> None:
        self._cleanup()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@dataclass(frozen=True)
class Task:
    """One submission to grade: its folder on the coordinator's disk, or (for a worker on another machine) its
    regular files as bytes; ``content_hash`` names exactly what is graded (:func:`autograder.batch.digest`)."""

    student: str
    folder: str
    content_hash: str
    files: dict | None = None


# -- one submission, in a grading process -------------------------------------------------------------------
def grade_submission(warm: Warm, task: Task, started_by: int | None = None) -> dict:
    """The outcome of one submission, as plain data (see the module docstring); nothing is written to the course.
    ``started_by``: the pid of the warmed process (coordinator or Dask worker) whose batch this is."""
    start = time.monotonic()
    lab, student, setup = warm.setup.lab, task.student, warm.setup
    times = {}
    folder = Path(task.folder)
    if task.files is not None:  # from another machine: staged in this worker's private scratch folder
        folder = Path(tempfile.mkdtemp(prefix="submission-", dir=warm.scratch)) / student / lab
        for rel, data in task.files.items():
            _write(folder / rel, data)
    path = folder / f"{lab}.ipynb"
    submitted, problem = open_submission(path, lab)
    isolation = None
    kernel_nb, kernel_status, refused, log = None, "not run", [], None
    if problem:
        verdicts = {}
    elif warm.jail is None:
        kernel_status = "skipped"
        t = time.monotonic()
        verdicts, isolation, problem = _run_judge(warm.judge, warm.source, lab, path)
        times["judge"] = time.monotonic() - t
    else:
        # the kernel step (feedback outputs) and the judge (scores) are independent: run them side by side
        step = kernel_step.KernelStep(warm.jail, warm.template, folder, lab, student)
        try:
            t = time.monotonic()
            verdicts, isolation, problem = _run_judge(warm.judge, warm.source, lab, path)
            times["judge"] = time.monotonic() - t
        except BaseException:  # Ctrl-C, or the coordinator gone: leave nothing running
            step.cancel()
            raise
        t = time.monotonic()
        run, kernel_nb = step.finish()
        times["kernel_step"], times["kernel_after_judge"] = run.seconds, time.monotonic() - t
        refused, log = step.refused, run.log
        kernel_status = "ok" if run.ok else run.problem
    t = time.monotonic()
    verdicts = _complete(verdicts, warm.release_nb, problem)
    notes = [problem] if problem else []
    if not problem and kernel_status not in ("ok", "skipped"):
        notes.append(f"Your notebook could not be run to show its outputs here: {kernel_status}. "
                     "Your score comes from the judge, which ran your functions separately.")
    if refused:
        names = ", ".join("`" + entry.replace("`", "'") + "`" for entry in refused)
        notes.append(f"Not used from your submission folder (only regular files in real folders are): {names}.")
    nb = feedback_notebook(kernel_nb or submitted or warm.release_nb, warm.release_nb, verdicts, notes,
                           rebuild=kernel_nb is None)
    times["feedback"] = time.monotonic() - t
    return {
        "student": student, "content_hash": task.content_hash, "problem": problem, "kernel": kernel_status,
        "verdicts": {gid: {"grade_id": v.grade_id, "score": float(v.score), "max_score": float(v.max_score),
                           "messages": [str(m) for m in v.messages]} for gid, v in verdicts.items()},
        "notebook": nbformat.writes(nb), "log": log,
        "judge_isolation": isolation.describe() if isolation is not None else "",
        "kernel_isolation": warm.jail.describe() if warm.jail is not None else "",
        "seconds": time.monotonic() - start, "breakdown": times,
        "worker": f"{socket.gethostname()}:{started_by or os.getppid()}",
    }


def failed(task: Task, why: str, seconds: float = 0.0) -> dict:
    """The outcome of a submission that got no verdict (its grading process died or ran out of time)."""
    return {"student": task.student, "content_hash": task.content_hash, "failed": why, "seconds": seconds}


# -- the coordinating process --------------------------------------------------------------------------------
def record(course: Course, lab: str, release_nb, outcome: dict) -> StudentResult:
    """Write one outcome: the autograded notebook and log, then the gradebook in one transaction."""
    student = outcome["student"]
    if "failed" in outcome:
        return StudentResult(student, 0.0, 0.0, outcome.get("seconds", 0.0), "not run", outcome["failed"], "failed")
    t = time.monotonic()
    verdicts = {gid: Verdict(**v) for gid, v in outcome["verdicts"].items()}
    folder = course.path("submitted", lab, student)
    submitted = None
    if not outcome["problem"]:
        submitted, _ = open_submission(folder / f"{lab}.ipynb", lab)
    write_autograded(course, lab, student, nbformat.reads(outcome["notebook"], as_version=4), folder)
    if outcome["log"] is not None:
        kernel_step.save_log(course, lab, student, outcome["log"])
    breakdown = {**outcome["breakdown"], "record": time.monotonic() - t}
    run = {"content_hash": outcome["content_hash"], "seconds": outcome["seconds"] + breakdown["record"],
           "breakdown": breakdown, "worker": outcome["worker"]}
    score, max_score = record_grades(course, lab, student, verdicts, submitted, release_nb, run=run)
    return StudentResult(student, score, max_score, run["seconds"], outcome["kernel"], outcome["problem"],
                         breakdown=breakdown, worker=outcome["worker"])


def _run_judge(judge, source: Path, lab: str, path: Path):
    """(verdicts, isolation, problem); the judge promises not to raise, and if it does nobody gets points by accident."""
    try:
        verdicts, isolation = judge(lab, path, source=source)
        return verdicts, isolation, ""
    except Exception as err:
        return {}, None, f"the judge failed ({err.__class__.__name__}: {err}); tell your instructor"


def open_submission(path: Path, lab: str):
    """``(notebook, "")`` or ``(None, why it cannot be graded)``, in words for the student."""
    try:
        nb = nbformat.from_dict(read_submission(path))  # the judge's reader: one size limit
        if nb.get("nbformat", 4) < 4:
            nb = nbformat.convert(nb, 4)
        if not isinstance(nb.get("cells"), list) or not all(isinstance(c, dict) and "source" in c and "cell_type" in c for c in nb.cells):
            raise SubmissionError("not_a_notebook", "no list of cells")
    except SubmissionError as err:
        if err.kind == "missing":
            others = sorted(p.name for p in path.parent.iterdir()) if path.parent.is_dir() else []
            found = f"found: {', '.join(others)}" if others else "the folder is empty"
            return None, f"No {lab}.ipynb in your submission ({found}). Submit the notebook under its original name."
        if err.kind == "not_regular":
            return None, f"{err}, so it could not be graded."
        if err.kind == "too_large":
            return None, f"{lab}.ipynb is larger than {MAX_NOTEBOOK_MB} MB (clear the outputs before submitting)."
        kind = "is not valid JSON" if err.kind == "not_json" else "is not a Jupyter notebook"
        cause = "JSONDecodeError" if err.kind == "not_json" else "ValueError"
        return None, f"{lab}.ipynb {kind} ({cause}), so it could not be graded. Was it edited outside Jupyter?"
    except Exception as err:
        return None, f"{lab}.ipynb is not a Jupyter notebook ({err.__class__.__name__}), so it could not be graded. Was it edited outside Jupyter?"
    return nb, ""


def _complete(verdicts: dict, release_nb, problem: str) -> dict:
    """A verdict for every autograded test cell: 0 with the reason where the judge gave none."""
    done = {}
    for cell in release_nb.cells:
        if not is_test_cell(cell):
            continue
        grade_id, points = cell.metadata.nbgrader["grade_id"], float(cell.metadata.nbgrader["points"])
        verdict = verdicts.get(grade_id)
        if verdict is None:
            why = problem or "The judge returned no result for this test (was the cell deleted or renamed?)."
            verdict = Verdict(grade_id, 0.0, points, [why])
        done[grade_id] = verdict
    return done
