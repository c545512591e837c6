"""``report``: the grade table, read from nbgrader's gradebook (one row per student and lab)."""
from __future__ import annotations

import csv
import io

import nbformat

from .course import Course, CourseError
from .gradebook import recorded

COLUMNS = ["student", "lab", "score", "max_score", "manual_score", "manual_max_score", "manual_pending", "total_score",
           "seconds"]
COLUMN_HELP = {
    "score / max_score": "autograded points (the judge's, unless a grader overrode a cell)",
    "manual_score / manual_max_score": "points from manual grading so far / available",
    "manual_pending": "cells still waiting for a grader",
    "total_score": "nbgrader's total (autograded + manual, minus any late penalty)",
    "seconds": "wall clock the autograding of that submission took (kernel step and judge side by side)",
}


def grade_rows(course: Course, lab: str | None = None, *, per_test: bool = False) -> tuple[list[str], list[dict]]:
    """Columns and rows; with ``per_test`` one more column per autograded test (its grade_id)."""
    rows, tests = [], []
    runs = recorded(course)  # before the gradebook is open: this may create its table
    with course.gradebook() as gb:
        names = sorted(a.name for a in gb.assignments)
        if lab is not None:
            if lab not in names:
                raise CourseError(f"no lab {lab!r} in the gradebook {course.root}; it has: {', '.join(names) or 'none'}")
            names = [lab]
        for name in names:
            assignment = gb.find_assignment(name)
            order = _test_order(course, name)
            for submission in sorted(assignment.submissions, key=lambda s: s.student_id):
                row = {"student": submission.student_id, "lab": name, "score": 0.0, "max_score": 0.0,
                       "manual_score": 0.0, "manual_max_score": 0.0, "manual_pending": 0,
                       "total_score": submission.score - (submission.late_submission_penalty or 0),
                       "seconds": _seconds(runs.get((name, submission.student_id)))}
                for notebook in submission.notebooks:
                    solutions = {c.name for c in notebook.notebook.solution_cells}
                    for grade in notebook.grades:
                        cell = grade.cell
                        if cell.type == "GradeCell" and cell.cell_type == "code" and cell.name not in solutions:
                            row["score"] += grade.score
                            row["max_score"] += grade.max_score
                            row[cell.name] = grade.score
                            if cell.name not in tests:
                                tests.append(cell.name)
                        else:
                            row["manual_max_score"] += grade.max_score
                            if grade.needs_manual_grade:
                                row["manual_pending"] += 1
                            else:
                                row["manual_score"] += grade.score
                rows.append(row)
            tests.sort(key=lambda t: order.get(t, len(order)))
    return (COLUMNS + tests if per_test else list(COLUMNS)), rows


def _seconds(run: dict | None) -> float | None:
    return round(run["seconds"], 1) if run else None


def _test_order(course: Course, lab: str) -> dict[str, int]:
    """Test cells in notebook order, from the release in the course directory when there is one."""
    path = course.path("release", lab) / f"{lab}.ipynb"
    if not path.is_file():
        return {}
    cells = nbformat.read(path, as_version=4).cells
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in cells]
    return {grade_id: i for i, grade_id in enumerate(ids) if grade_id}


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "" if value is None else str(value)


def render(columns: list[str], rows: list[dict], fmt: str = "table") -> str:
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_fmt(row.get(c)) for c in columns])
        return buffer.getvalue()
    cells = [columns] + [[_fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True))).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if not rows:
        lines.append("(no submissions in the gradebook)")
    lines += ["", *(f"{name}: {meaning}" for name, meaning in COLUMN_HELP.items())]
    return "\n".join(lines) + "\n"
