"""``demo``: the grading round trip on every lab, with known submissions.

Per lab, four kinds of student (the submission builders are also used by the tests):

- ``perfect``: the release with every solution cell filled from the source;
- ``untouched``: the release as handed out (stubs);
- ``mistakes``: the perfect submission with, for each exercise that has one, its
  demo mistake (``Example(..., demo=True)`` in ``autograder/exercises/<lab>.py``)
  in place of the solution cell;
- ``hostile``: patches ``torch.allclose``, returns an always-equal object.
"""
from __future__ import annotations

import copy
import os
import tempfile
import time
from pathlib import Path

import nbformat

from .course import Course, CourseError, Labs
from .feedback_jail import KernelLimits

SOLUTION_MARKERS = ("BEGIN SOLUTION", "END SOLUTION")
STUB_LINE = "raise NotImplementedError()"

FORGERY = '''import torch
torch.allclose = lambda *a, **k: True          # every comparison "passes"...
torch.testing.assert_close = lambda *a, **k: None


class _AlwaysEqual:                             # ...and so does every ==
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    def __getattr__(self, name):
        return lambda *a, **k: self


'''


def _solution_cells(nb):
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            yield meta["grade_id"], cell


def perfect(source_nb, release_nb):
    """The release with each solution cell as in the source, minus nbgrader's solution markers."""
    answers = {grade_id: cell.source for grade_id, cell in _solution_cells(source_nb)}
    nb = copy.deepcopy(release_nb)
    for grade_id, cell in _solution_cells(nb):
        lines = answers.get(grade_id, cell.source).split("\n")
        cell.source = "\n".join(line for line in lines if not any(m in line for m in SOLUTION_MARKERS))
    return nb


def with_cells(base_nb, sources: dict[str, str]):
    """``base_nb`` with the cells named by grade_id replaced by ``sources``."""
    nb = copy.deepcopy(base_nb)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in sources:
            value = sources[grade_id]
            cell.source = "".join(value) if isinstance(value, list) else value
    return nb


def hostile(release_nb):
    """Every autograded solution cell: the forgery, then the stub returning an always-equal object."""
    nb = copy.deepcopy(release_nb)
    for _, cell in _solution_cells(nb):
        if cell.cell_type == "code" and not cell.metadata.nbgrader.get("grade"):
            cell.source = FORGERY + cell.source.replace(STUB_LINE, "return _AlwaysEqual()")
    return nb


def mistake_submissions(labs: Labs, lab: str) -> dict[str, dict[str, str]]:
    """``{"mistakes": {solution cell grade_id: source}}`` from the lab's exercises' demo mistakes (empty if none)."""
    from .exercises import load
    from .exercises.kit.examples import demo_cells

    cells = demo_cells(list(load(lab).values()), labs.source(lab))
    return {"mistakes": cells} if cells else {}


def submit(course: Course, lab: str, student: str, nb) -> Path:
    path = course.path("submitted", lab, student) / f"{lab}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def run_demo(course_dir: Path | None = None, *, labs: Labs | None = None, judge=None,
             limits: KernelLimits = KernelLimits(), execute: bool = True, out=print) -> int:
    from . import release
    from .feedback import feedback
    from .grading import autograde
    from .report import grade_rows, render

    labs = labs or Labs()
    start = time.monotonic()
    names = labs.names()
    if not names:
        out(f"[demo] no labs yet under {labs.source_dir} (expected <lab>/<lab>.ipynb); nothing to grade.")
        return 0
    if "LABKIT_SITE" not in os.environ:  # the demo runs offline: labkit's synthetic stand-ins
        os.environ["LABKIT_SITE"] = "offline"
        out("[demo] LABKIT_SITE=offline (labkit's synthetic stand-in datasets); set LABKIT_SITE to use real data")
    root = Path(course_dir) if course_dir else Path(tempfile.mkdtemp(prefix="autograder-demo-"))
    course = Course(root, labs=labs)
    (course.root / "submitted").mkdir(parents=True, exist_ok=True)
    out(f"[demo] course directory {course.root}; labs: {', '.join(names)}")
    timings = []
    for lab in names:
        t = time.monotonic()
        drift = release.check(lab, labs)
        out(f"[demo] {lab}: committed release " + ("up to date" if not drift else "DIFFERS from the source: " + drift[0].splitlines()[0]))
        release_nb = nbformat.read(course.prepare(lab), as_version=4)
        source_nb = nbformat.read(labs.source(lab), as_version=4)
        submit(course, lab, "perfect", perfect(source_nb, release_nb))
        submit(course, lab, "untouched", release_nb)
        mistakes = mistake_submissions(labs, lab)
        for name, cells in mistakes.items():
            submit(course, lab, name, with_cells(perfect(source_nb, release_nb), cells))
        if not mistakes:
            out(f"[demo] {lab}: no exercise of autograder/exercises/{lab}.py has a demo mistake, so no mistakes student")
        submit(course, lab, "hostile", hostile(release_nb))
        timings.append((f"{lab}: release + submissions", time.monotonic() - t))
        t = time.monotonic()
        results = autograde(course, lab, judge=judge, limits=limits, execute=execute, out=out)
        timings.append((f"{lab}: autograde {len(results)} submissions", time.monotonic() - t))
        t = time.monotonic()
        paths = feedback(course, lab, out=out)
        timings.append((f"{lab}: feedback", time.monotonic() - t))
        for path in paths:
            out(f"[demo]   {path}")
    columns, rows = grade_rows(course, per_test=True)
    out("\n" + render(columns, rows, "table"))
    timings.append(("total", time.monotonic() - start))
    out("[demo] times: " + "; ".join(f"{what} {seconds:.1f} s" for what, seconds in timings))
    out(f"[demo] feedback HTML under {course.root / 'feedback'}/<student>/<lab>/<lab>.html")
    return 0
