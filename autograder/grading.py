"""``autograde``: the judge's scores into nbgrader's gradebook, its verdicts into the autograded notebooks.

Per student (see :func:`autograde`):

1. read ``submitted/<student>/<lab>/<lab>.ipynb``; missing, not JSON or not a
   notebook: every grade cell scores 0 and the feedback says why;
2. nbgrader's kernel step in the feedback jail (:mod:`autograder.kernel_step`):
   only for the outputs the student sees, never for a score;
3. the judge (:func:`autograder.exercises.judge_lab`: the lab's exercises graded
   by :mod:`autograder.judge`, a clean process that never ran student code)
   scores every autograded test cell;
4. the judge's scores go into the real gradebook with nbgrader's ``Gradebook``
   API (:mod:`autograder.gradebook`; written answers stay for manual grading);
5. ``autograded/<student>/<lab>/<lab>.ipynb`` gets the judge's verdict as the
   output of each test cell (:mod:`autograder.feedback`), which is what the
   feedback shows.
"""
from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat

from . import kernel_step
from .course import Course, CourseError, hide_password
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


def default_judge():
    """The course's judge: the lab's exercises (autograder/exercises) graded by the engine (autograder/judge)."""
    try:
        from .exercises import judge_lab
    except ImportError as err:
        raise CourseError(f"the judge (autograder/judge, autograder/exercises) is not available: {err}") from None
    return judge_lab


# -- autograde ----------------------------------------------------------------
def autograde(
    course: Course, lab: str, *, student: str | None = None, judge: Callable | None = None,
    limits: KernelLimits = KernelLimits(), jail: FeedbackJail | None = None, execute: bool = True, out=print,
) -> list[StudentResult]:
    """Grade every submission of ``lab`` (or one ``student``); see the module docstring.

    ``execute=False`` skips nbgrader's kernel step: the scores are the same (they come from the
    judge), the feedback shows the submitted notebook without fresh outputs.
    """
    course.labs.check(lab)
    students = course.submitted_students(lab)
    if student is not None:
        if student not in students:
            raise CourseError(
                f"no submission folder {course.root}/submitted/{student}/{lab}/; "
                f"students with one: {', '.join(students) or 'none'}")
        students = [student]
    if not students:
        raise CourseError(f"nobody submitted {lab}: expected {course.root}/submitted/<student>/{lab}/{lab}.ipynb")
    judge = judge or default_judge()
    release_nb = nbformat.read(course.prepare(lab, cell_timeout=limits.cell_timeout), as_version=4)
    out(f"[autograde] {lab}: {len(students)} submission(s); gradebook {_db_label(course)}")
    if execute:
        kernel_step.prepare_data()
        jail = jail or FeedbackJail(limits, hide=kernel_step.hidden_paths(course))
        out(f"[autograde] isolation, {jail.describe()}")
    else:
        jail = None
        out("[autograde] kernel step skipped (--no-execute): feedback shows the submitted notebooks without outputs")
    results = []
    with tempfile.TemporaryDirectory(prefix="autograder-") as tmp:
        template = kernel_step.template(course, lab, Path(tmp)) if execute else None
        judge_described = False
        for name in students:
            result, isolation = _grade_one(course, lab, name, judge, jail, template, release_nb)
            if isolation is not None and not judge_described:
                out(f"[autograde] isolation, judge: {isolation.describe()}")
                judge_described = True
            note = f" ({result.problem})" if result.problem else (f" (kernel step: {result.kernel})" if result.kernel not in ("ok", "skipped") else "")
            out(f"[autograde] {name}: {result.score:g}/{result.max_score:g} in {result.seconds:.1f} s{note}")
            results.append(result)
    return results


def _grade_one(course, lab, student, judge, jail, template, release_nb):
    start = time.monotonic()
    folder = course.path("submitted", lab, student)
    path = folder / f"{lab}.ipynb"
    submitted, problem = open_submission(path, lab)
    isolation = None
    kernel_nb, kernel_status, refused = None, "not run", []
    if problem:
        verdicts = {}
    elif jail is None:
        kernel_status = "skipped"
        verdicts, isolation, problem = _run_judge(judge, course, lab, path)
    else:
        # the kernel step (feedback outputs) and the judge (scores) are independent: run them side by side
        step = kernel_step.KernelStep(jail, template, folder, lab, student)
        try:
            verdicts, isolation, problem = _run_judge(judge, course, lab, path)
        except BaseException:  # Ctrl-C: leave nothing running
            step.cancel()
            raise
        run, kernel_nb = step.finish()
        refused = step.refused
        kernel_step.save_log(course, lab, student, run.log)
        kernel_status = "ok" if run.ok else run.problem
    verdicts = _complete(verdicts, release_nb, problem)
    score, max_score = record_grades(course, lab, student, verdicts, submitted if not problem else None, release_nb)
    notes = [problem] if problem else []
    if not problem and kernel_status not in ("ok", "skipped"):
        notes.append(f"Your notebook could not be run to show its outputs here: {kernel_status}. "
                     "Your score comes from the judge, which ran your functions separately.")
    if refused:
        names = ", ".join("`" + entry.replace("`", "'") + "`" for entry in refused)
        notes.append(f"Not used from your submission folder (only regular files in real folders are): {names}.")
    nb = feedback_notebook(kernel_nb or submitted or release_nb, release_nb, verdicts, notes, rebuild=kernel_nb is None)
    write_autograded(course, lab, student, nb, folder)
    seconds = time.monotonic() - start
    return StudentResult(student, score, max_score, seconds, kernel_status, problem), isolation


def _run_judge(judge, course: Course, lab: str, path: Path):
    """(verdicts, isolation, problem); the judge promises not to raise, and if it does nobody gets points by accident."""
    try:
        verdicts, isolation = judge(lab, path, source=course.labs.source(lab))
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


def _db_label(course: Course) -> str:
    return hide_password(course.db_url)
