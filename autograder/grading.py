"""``autograde``: the judge's scores into nbgrader's gradebook, its verdicts into the autograded notebooks.

Per submission (:mod:`autograder.submission`), in a grading process of its own: nbgrader's kernel step in the
feedback jail (outputs for the feedback, never a score) side by side with the judge (the scores, from a clean
process that never ran student code); back comes plain data. The coordinating process, and only it, writes
``autograded/`` and the gradebook, one transaction per submission (:mod:`autograder.gradebook`).
:mod:`autograder.batch` runs a lab's submissions: ``jobs`` grading processes at a time forked from a
warmed zygote, or a Dask cluster (:mod:`autograder.cluster`); unchanged submissions (same content hash) are skipped
unless ``force``; a progress bar and a summary show it move.
"""
from __future__ import annotations

from collections.abc import Callable

from .batch import run_batch
from .course import Course, CourseError
from .feedback_jail import FeedbackJail, KernelLimits
from .submission import StudentResult, make_setup, open_submission

__all__ = ["autograde", "StudentResult", "open_submission"]


# -- autograde ----------------------------------------------------------------
def autograde(
    course: Course, lab: str, *, student: str | None = None, judge: Callable | None = None,
    limits: KernelLimits = KernelLimits(), jail: FeedbackJail | None = None, execute: bool = True, out=print,
    jobs: int = 1, scheduler: str | None = None, force: bool = False, progress: bool = False,
    submission_timeout: float | None = None, grader_memory_mb: int | None = None,
) -> list[StudentResult]:
    """Grade every submission of ``lab`` (or one ``student``); see the module docstring.

    ``execute=False`` skips nbgrader's kernel step: the scores are the same (they come from the
    judge), the feedback shows the submitted notebook without fresh outputs. ``jobs`` submissions are
    graded at a time, each in a process of its own; ``scheduler`` (``tcp://HOST:PORT``, or ``"local"`` for a
    Dask ``LocalCluster`` of ``jobs`` workers) sends them to a Dask cluster instead. Submissions whose
    content hash is the one recorded when they were graded are left as they are unless ``force``.
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
    setup = make_setup(course, lab, judge=judge, limits=limits, execute=execute, grader_memory_mb=grader_memory_mb)
    return run_batch(course, setup, students, jail=jail, out=out, jobs=jobs, scheduler=scheduler, force=force,
                     progress=progress, submission_timeout=submission_timeout)
