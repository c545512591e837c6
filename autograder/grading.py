"""``autograde``: the judge's scores into nbgrader's gradebook, its verdicts into the autograded notebooks.

Per student (see :func:`autograde`):

1. read ``submitted/<student>/<lab>/<lab>.ipynb``; missing, not JSON or not a
   notebook: every grade cell scores 0 and the feedback says why;
2. nbgrader's kernel step in a sandbox (:mod:`autograder.sandbox`): only for
   the outputs the student sees, never for a score;
3. the judge (:func:`autograder.judge.judge_notebook`, a clean process that never
   ran student code) scores every autograded test cell;
4. the judge's scores go into the real gradebook with nbgrader's ``Gradebook``
   API (written answers stay for manual grading);
5. ``autograded/<student>/<lab>/<lab>.ipynb`` gets the judge's verdict as the
   output of each test cell (:mod:`autograder.feedback`), which is what the
   feedback shows.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable

import nbformat
from nbgrader.converters import GenerateAssignment
from nbgrader.plugins import LateSubmissionPlugin
from sqlalchemy.exc import SAWarning

from .course import REPO_ROOT, Course, CourseError, hide_password, nbgrader_config, run_nbgrader
from .judge import Verdict  # also for the verdicts the grader makes itself (unreadable submissions)
from .feedback import cells_by_id, feedback_notebook, is_test_cell, write_autograded
from .sandbox import KernelLimits, KernelSandbox

MAX_NOTEBOOK_MB = 50  # a submission larger than this is not opened


@dataclass
class StudentResult:
    student: str
    score: float
    max_score: float
    seconds: float
    kernel: str  # "ok", or why the kernel step gave nothing
    problem: str = ""  # why the submission could not be graded at all


def default_judge():
    try:
        from .judge import judge_notebook
    except ImportError as err:
        raise CourseError(f"the judge (autograder/judge) is not available: {err}") from None
    return judge_notebook


# -- autograde ----------------------------------------------------------------
def autograde(
    course: Course, lab: str, *, student: str | None = None, judge: Callable | None = None,
    limits: KernelLimits = KernelLimits(), sandbox: KernelSandbox | None = None, execute: bool = True, out=print,
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
        _prepare_data()
        sandbox = sandbox or KernelSandbox(limits, hide=_hidden_paths(course))
        out(f"[autograde] isolation, {sandbox.describe()}")
    else:
        sandbox = None
        out("[autograde] kernel step skipped (--no-execute): feedback shows the submitted notebooks without outputs")
    results = []
    with tempfile.TemporaryDirectory(prefix="autograder-") as tmp:
        template = _kernel_template(course, lab, Path(tmp)) if execute else None
        judge_described = False
        for name in students:
            result, isolation = _grade_one(course, lab, name, judge, sandbox, template, release_nb)
            if isolation is not None and not judge_described:
                out(f"[autograde] isolation, judge: {isolation.describe()}")
                judge_described = True
            note = f" ({result.problem})" if result.problem else (f" (kernel step: {result.kernel})" if result.kernel not in ("ok", "skipped") else "")
            out(f"[autograde] {name}: {result.score:g}/{result.max_score:g} in {result.seconds:.1f} s{note}")
            results.append(result)
    return results


def _grade_one(course, lab, student, judge, sandbox, template, release_nb):
    start = time.monotonic()
    folder = course.path("submitted", lab, student)
    path = folder / f"{lab}.ipynb"
    submitted, problem = read_submission(path, lab)
    isolation = None
    kernel_nb, kernel_status = None, "not run"
    if problem:
        verdicts = {}
    elif sandbox is None:
        kernel_status = "skipped"
        verdicts, isolation, problem = _run_judge(judge, course, lab, path)
    else:
        # the kernel step (feedback outputs) and the judge (scores) are independent: run them side by side
        step = _KernelStep(sandbox, template, folder, lab, student)
        try:
            verdicts, isolation, problem = _run_judge(judge, course, lab, path)
        except BaseException:  # Ctrl-C: leave nothing running
            step.cancel()
            raise
        run, kernel_nb = step.finish()
        _save_log(course, lab, student, run.log)
        kernel_status = "ok" if run.ok else run.problem
    verdicts = _complete(verdicts, release_nb, problem)
    score, max_score = record_grades(course, lab, student, verdicts, submitted if not problem else None, release_nb)
    notes = [problem] if problem else []
    if not problem and kernel_status not in ("ok", "skipped"):
        notes.append(f"Your notebook could not be run to show its outputs here: {kernel_status}. "
                     "Your score comes from the judge, which ran your functions separately.")
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


def read_submission(path: Path, lab: str):
    """``(notebook, "")`` or ``(None, why it cannot be graded)``, in words for the student."""
    if not path.is_file():
        others = sorted(p.name for p in path.parent.iterdir()) if path.parent.is_dir() else []
        found = f"found: {', '.join(others)}" if others else "the folder is empty"
        return None, f"No {lab}.ipynb in your submission ({found}). Submit the notebook under its original name."
    if path.stat().st_size > MAX_NOTEBOOK_MB * 2**20:
        return None, f"{lab}.ipynb is larger than {MAX_NOTEBOOK_MB} MB (clear the outputs before submitting)."
    try:
        nb = nbformat.read(path, as_version=4)
        if not isinstance(nb.get("cells"), list) or not all(isinstance(c, dict) and "source" in c and "cell_type" in c for c in nb.cells):
            raise ValueError("no list of cells")
    except Exception as err:
        kind = "is not valid JSON" if "JSON" in err.__class__.__name__ or "JSON" in str(err) else "is not a Jupyter notebook"
        return None, f"{lab}.ipynb {kind} ({err.__class__.__name__}), so it could not be graded. Was it edited outside Jupyter?"
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


# -- the kernel step -------------------------------------------------------------
def _kernel_template(course: Course, lab: str, tmp: Path) -> Path:
    """A course directory whose source is the *release* (no hidden tests), with its own gradebook."""
    root = tmp / "template"
    shutil.copytree(course.path("release", lab), root / "source" / lab)
    run_nbgrader(GenerateAssignment, nbgrader_config(root), assignment=lab, student=".", force=True)
    return root


class _KernelStep:
    """One student's kernel step in a throwaway course directory, started at once."""

    def __init__(self, sandbox: KernelSandbox, template: Path, folder: Path, lab: str, student: str):
        self.work = Path(tempfile.mkdtemp(prefix="autograder-kernel-"))
        shutil.copytree(template / "source", self.work / "source")
        shutil.copy2(template / "gradebook.db", self.work / "gradebook.db")  # the throwaway copy
        shutil.copytree(folder, self.work / "submitted" / student / lab, symlinks=True,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        self.running = sandbox.start(self.work, lab, student)

    def cancel(self) -> None:
        self.running.kill()
        shutil.rmtree(self.work, ignore_errors=True)

    def finish(self):
        """The sandbox's :class:`KernelRun` and the executed notebook (None when there is none)."""
        try:
            run = self.running.wait()
            try:
                executed = nbformat.read(run.notebook, as_version=4) if run.ok else None
            except Exception as err:  # the kernel may have overwritten it
                run.ok, run.problem, executed = False, f"the executed notebook was unreadable ({err.__class__.__name__})", None
            return run, executed
        finally:
            shutil.rmtree(self.work, ignore_errors=True)


def _prepare_data() -> None:
    """Write labkit's synthetic stand-ins now if the data site wants them: the kernel step may run
    as a user who cannot write there."""
    os.environ.setdefault("LABKIT_DATA_PATHS", str(REPO_ROOT / "data_paths.toml"))
    try:
        from labkit import config
        from labkit.datasets import standins

        site = config.get_site()
        if site.synthetic:
            standins.write_standins(site.root)
    except Exception as err:  # the notebook will say what is missing; grading goes on
        print(f"[autograde] could not prepare labkit's stand-in data: {err}", file=sys.stderr)


def _hidden_paths(course: Course) -> list[Path]:
    """What the kernel step must not see: the course directory, the lab sources and the judge
    (skipping any that would hide what the kernel needs: the interpreter, labkit, the temp dir)."""
    needed = [Path(tempfile.gettempdir()), Path(sys.prefix), Path(sys.executable), REPO_ROOT / "labkit"]
    needed = [p.resolve() for p in needed]
    candidates = [course.root, course.labs.source_dir.resolve(), REPO_ROOT / "autograder"]
    return [p for p in candidates if p.is_dir() and not any(n == p or p in n.parents for n in needed)]


def _save_log(course: Course, lab: str, student: str, log: str) -> None:
    path = course.root / "logs" / lab / f"{student}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(log)


# -- the gradebook -----------------------------------------------------------------
def record_grades(course: Course, lab: str, student: str, verdicts: dict, submitted, release_nb) -> tuple[float, float]:
    """Write the judge's scores (and nbgrader's usual bookkeeping) into the real gradebook.

    Autograded test cells get ``auto_score`` = the judge's score. Written answers and tasks
    are left for manual grading, except unchanged ones, which score 0 as in nbgrader. With no
    readable submission every grade cell is 0. Returns the autograded (score, max_score).
    """
    mine = cells_by_id(submitted) if submitted is not None else None
    released = cells_by_id(release_nb)
    timestamp = course.submitted_timestamp(lab, student)
    score = max_score = 0.0
    with warnings.catch_warnings(), course.gradebook() as gb:
        # nbgrader's update_or_create_submission trips SQLAlchemy 2.x autoflush warnings; harmless
        warnings.simplefilter("ignore", SAWarning)
        gb.update_or_create_student(student)
        submission = gb.update_or_create_submission(lab, student, **({"timestamp": timestamp} if timestamp else {}))
        notebook = gb.find_submission_notebook(lab, lab, student)
        for grade in notebook.grades:
            name, cell_max = grade.cell.name, float(grade.cell.max_score)
            if name in verdicts:  # an autograded test cell: the judge decides
                grade.auto_score = min(max(float(verdicts[name].score), 0.0), cell_max)
                score, max_score = score + grade.auto_score, max_score + cell_max
            elif mine is None or _unchanged(mine.get(name), released.get(name)):
                grade.auto_score = 0.0  # nothing written: nothing to grade by hand
            else:
                grade.auto_score = None
            grade.needs_manual_grade = grade.manual_score is not None or grade.auto_score is None
        for comment in notebook.comments:
            unchanged = mine is None or _unchanged(mine.get(comment.cell.name), released.get(comment.cell.name))
            comment.auto_comment = "No response." if unchanged else None
        notebook.late_submission_penalty = None
        if submission.total_seconds_late > 0:
            plugin = LateSubmissionPlugin(config=course.config())
            penalty = plugin.late_submission_penalty(student, notebook.score, submission.total_seconds_late)
            if penalty is not None:
                notebook.late_submission_penalty = min(max(penalty, 0), notebook.score)
        gb.db.commit()
    return score, max_score


def _unchanged(cell, released) -> bool:
    """The student's answer cell is missing or still the released stub."""
    if cell is None or released is None:
        return True
    return "".join(cell.get("source", "")).strip() == "".join(released.source).strip()


def _db_label(course: Course) -> str:
    return hide_password(course.db_url)
