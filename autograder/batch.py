"""A batch of ``autograde``: what to grade, grading processes side by side, one writer for the gradebook.

- **Plan**: each submission's *content hash* (:func:`digest`: its regular files, the lab's source and release,
  its exercises, the judge, whether the kernel step runs). One whose hash is the one the gradebook recorded
  when it was graded (:data:`autograder.gradebook.RUNS`) is *unchanged* and left alone, unless ``force``.
- **Grade**: every submission in a process of its own, forked from the batch's *zygote* (a fresh interpreter
  that has imported what grading needs, once; never a fork of this process, see :mod:`autograder.workers`),
  with the warm state (:class:`autograder.submission.Warm`: jails probed, the kernel step's template built once
  per batch), ``jobs`` at a time (:func:`run_local`), or on a Dask cluster (:mod:`autograder.cluster`). A
  grading process runs :func:`autograder.submission.grade_submission`, whose student code runs only in the two
  jails, exactly as in a serial run; it hands back plain data through a pipe and writes nothing of the
  course. One that dies or runs past its time costs only its own submission, which is reported as failed
  and left ungraded (the next run grades it).
- **Record**: in this, the coordinating process only, one transaction per submission as soon as its outcome
  is back (:func:`autograder.submission.record`): an interrupted batch leaves every finished submission
  recorded and the others untouched; rerunning grades only those.
- **Show**: one progress bar (done / failed / remaining, estimated time) and a summary at the end: graded,
  unchanged, failed with the reason per student.
"""
from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import nbformat

from . import kernel_step
from .course import Course, hide_password
from .gradebook import recorded
from .submission import Setup, StudentResult, Task, Warm, record
from .workers import run_local
from .submission_files import regular_files

MARGIN_S = 120  # beyond the kernel step's wall limit before a grading process is stopped


def digest(folder: Path, files: list[str], setup_key: str) -> str:
    """sha256 of what a grade depends on: ``setup_key`` (:attr:`Setup.key`) and each regular file (name, bytes)."""
    h = hashlib.sha256(setup_key.encode())
    for rel in files:
        h.update(b"\0" + rel.encode() + b"\0")
        with open(folder / rel, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def plan(course: Course, setup: Setup, students: list[str], *, force: bool, ship: bool):
    """``(tasks, unchanged)``: the submissions to grade (with their files when ``ship``: for other machines)
    and the names of those recorded with the same content hash (and an autograded notebook)."""
    runs = recorded(course, setup.lab)
    key, tasks, unchanged = setup.key, [], []
    for student in students:
        folder = course.path("submitted", setup.lab, student)
        files, _ = regular_files(folder)
        content_hash = digest(folder, files, key)
        done = (course.path("autograded", setup.lab, student) / f"{setup.lab}.ipynb").is_file()
        if not force and done and runs.get(student, {}).get("content_hash") == content_hash:
            unchanged.append(student)
            continue
        shipped = {rel: (folder / rel).read_bytes() for rel in files} if ship else None
        tasks.append(Task(student, str(folder), content_hash, shipped))
    return tasks, unchanged


def default_timeout(setup: Setup) -> float:
    return max(setup.limits.wall_timeout, 300) + MARGIN_S


# -- the batch ------------------------------------------------------------------------------------------------
def run_batch(course: Course, setup: Setup, students: list[str], *, jail=None, out=print, jobs: int = 1,
              scheduler: str | None = None, force: bool = False, progress: bool = False,
              submission_timeout: float | None = None) -> list[StudentResult]:
    lab = setup.lab
    distributed = scheduler is not None
    tasks, unchanged = plan(course, setup, students, force=force, ship=distributed)
    where = (f"Dask scheduler {scheduler}" if scheduler not in (None, "local") else
             f"a Dask LocalCluster of {jobs} worker(s)" if distributed else f"{jobs} process(es) at a time")
    out(f"[autograde] {lab}: {len(students)} submission(s), {len(tasks)} to grade"
        f"{f', {len(unchanged)} unchanged since graded (--force regrades them)' if unchanged else ''}; "
        f"{where}; gradebook {hide_password(course.db_url)}")
    if not setup.execute:
        out("[autograde] kernel step skipped (--no-execute): feedback shows the submitted notebooks without outputs")
    timeout_s = submission_timeout or default_timeout(setup)
    release_nb = None
    results: dict[str, StudentResult] = {}
    bar = _bar(len(tasks), progress)
    say = bar.write if bar is not None else out
    shown = set()
    start = time.monotonic()
    warm = None
    try:
        if tasks:
            if distributed:
                from .cluster import run_dask

                outcomes = run_dask(setup, tasks, scheduler, jobs, timeout_s)
            else:
                warm = Warm(setup, jail=jail, hide=kernel_step.hidden_paths(course))
                outcomes = run_local(warm, tasks, jobs, timeout_s)
            release_nb = nbformat.read(course.path("release", lab) / f"{lab}.ipynb", as_version=4)
            for outcome in outcomes:
                for kind in ("kernel_isolation", "judge_isolation"):
                    text = outcome.get(kind)
                    if text and kind not in shown:
                        shown.add(kind)
                        say(f"[autograde] isolation, {'judge: ' if kind == 'judge_isolation' else ''}{text}")
                result = record(course, lab, release_nb, outcome)
                results[result.student] = result
                say(_line(result))
                if bar is not None:
                    done = sum(r.status == "graded" for r in results.values())
                    bar.set_postfix_str(f"done {done}, failed {len(results) - done}, "
                                        f"remaining {len(tasks) - len(results)}", refresh=False)
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        if warm is not None:
            warm.close()
    for student in unchanged:
        results[student] = _unchanged(course, lab, student)
    ordered = [results[s] for s in students if s in results]
    for line in summary(ordered, time.monotonic() - start):
        out(line)
    return ordered


def _line(result: StudentResult) -> str:
    if result.status == "failed":
        return f"[autograde] {result.student}: FAILED, not recorded ({result.problem})"
    note = (f" ({result.problem})" if result.problem else
            f" (kernel step: {result.kernel})" if result.kernel not in ("ok", "skipped") else "")
    return f"[autograde] {result.student}: {result.score:g}/{result.max_score:g} in {result.seconds:.1f} s{note}"


def _unchanged(course: Course, lab: str, student: str) -> StudentResult:
    """The recorded result of a submission left alone."""
    with course.gradebook() as gb:
        notebook = gb.find_submission_notebook(lab, lab, student)
        auto = [g for g in notebook.grades if g.cell.type == "GradeCell" and g.cell.cell_type == "code"
                and g.cell.name not in {c.name for c in notebook.notebook.solution_cells}]
        score, max_score = sum(g.score for g in auto), sum(g.max_score for g in auto)
    run = recorded(course, lab).get(student, {})
    return StudentResult(student, score, max_score, run.get("seconds", 0.0), "unchanged", "", "unchanged",
                         run.get("breakdown", {}), run.get("worker", ""))


def summary(results: list[StudentResult], seconds: float) -> list[str]:
    graded = [r for r in results if r.status == "graded"]
    same = [r for r in results if r.status == "unchanged"]
    bad = [r for r in results if r.status == "failed"]
    per = f", {seconds / len(graded):.1f} s per submission" if graded else ""
    lines = [f"[autograde] summary: {len(graded)} graded, {len(same)} unchanged (skipped), {len(bad)} failed "
             f"in {seconds:.1f} s wall clock{per}"]
    lines += [f"[autograde]   failed {r.student}: {r.problem}" for r in bad]
    if bad:
        lines.append("[autograde]   failed submissions are not in the gradebook; run autograde again to grade them")
    return lines


def _bar(total: int, wanted: bool):
    if not wanted or total == 0:
        return None
    from tqdm import tqdm

    tqdm.monitor_interval = 0  # no monitor thread to outlive the batch
    return tqdm(total=total, unit="submission", file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
