"""What students see: the autograded notebook with the judge's verdicts, and the HTML feedback.

``autograded/<student>/<lab>/<lab>.ipynb`` is the kernel step's executed notebook
(or, when it could not run, the submission with locked and test cells restored
from the release) in which every autograded test cell's output is REPLACED by
the judge's verdict: score and messages, never what the kernel printed there.
``feedback`` renders it with nbgrader's generate_feedback (scores from the
gradebook); any ``### BEGIN HIDDEN TESTS`` block left in a test cell is blanked.

Everything else in the notebook is the student's: :mod:`autograder.student_content` rebuilds it
from what is safe to render before the verdicts go in (their HTML, JavaScript and SVG outputs become
text, grade cells only where the release has them) and renders it. A notebook that nbgrader still
cannot render costs only its student their feedback page: they get a page saying so, the log a line.
"""
from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import nbformat
from nbgrader.converters import GenerateFeedback
from nbgrader.preprocessors import GetGrades, NbGraderPreprocessor
from traitlets import Unicode

from .course import Course, CourseError, FitFigures, run_nbgrader
from .student_content import FeedbackExporter, sanitized
from .submission_files import copy_regular, regular_files

MAX_OUTPUT_CHARS = 20_000  # per output; nbgrader's LimitOutput already caps the number of lines


def is_test_cell(cell) -> bool:
    """An nbgrader "autograder tests" cell: graded code that is not an answer."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")


def cells_by_id(nb) -> dict:
    """{grade_id: cell}, the first cell of each grade_id."""
    cells = {}
    for cell in nb.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id and grade_id not in cells:
            cells[grade_id] = cell
    return cells


def feedback_notebook(base, release_nb, verdicts: dict, notes: list[str], *, rebuild: bool):
    """``base`` (the kernel's executed notebook, else the submission, else the release) with each
    test cell's output replaced by the judge's verdict. ``rebuild``: restore locked and test cells
    from the release and clear outputs (the kernel step did not run)."""
    nb = sanitized(base, release_nb)
    released = cells_by_id(release_nb)
    placed = set()
    for cell in nb.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        original = released.get(grade_id)
        if rebuild and original is not None and (original.metadata.nbgrader.get("locked") or is_test_cell(original)):
            cell.source, cell.metadata = original.source, nbformat.from_dict(original.metadata)
        if cell.cell_type == "code":
            if rebuild:
                cell.outputs, cell.execution_count = [], None
            cell.outputs = [_bounded(o) for o in cell.outputs]
        if grade_id in verdicts and is_test_cell(cell):
            cell.outputs = [verdict_output(verdicts[grade_id])]
            placed.add(grade_id)
    missing = [v for g, v in verdicts.items() if g not in placed]
    if missing:
        notes = [*notes, "Tests whose cell is missing from your notebook:"] + [
            f"- `{v.grade_id}`: {v.score:g} / {v.max_score:g}. " + " ".join(v.messages) for v in missing]
    if notes:
        note = nbformat.v4.new_markdown_cell("**Autograder.** " + "\n\n".join(notes), metadata={"autograder": {"note": True}})
        note["id"] = "autograder-note"
        if nb.get("nbformat_minor", 5) < 5:  # cell ids came with nbformat 4.5
            del note["id"]
        nb.cells.insert(0, note)
    return nb


def verdict_output(verdict):
    """The judge's verdict as a cell output: plain text and a small HTML box."""
    head = f"Judge: {verdict.score:g} / {verdict.max_score:g} points"
    messages = [str(m) for m in (verdict.messages or [])]
    text = "\n".join([head, *(f"- {m}" for m in messages)])
    ok = verdict.score >= verdict.max_score
    colour = "#2e7d32" if ok else ("#ef6c00" if verdict.score > 0 else "#c62828")
    items = "".join(f"<li>{html.escape(m)}</li>" for m in messages)
    box = (f'<div class="autograder-verdict" style="border-left:4px solid {colour};padding:4px 10px">'
           f"<b>{html.escape(head)}</b>{f'<ul>{items}</ul>' if items else ''}</div>")
    return nbformat.v4.new_output("display_data", data={"text/plain": text, "text/html": box})


def _bounded(output):
    def cut(value):
        if isinstance(value, list):
            value = "".join(value)
        if isinstance(value, str) and len(value) > MAX_OUTPUT_CHARS:
            return value[:MAX_OUTPUT_CHARS] + f"\n... [{len(value) - MAX_OUTPUT_CHARS} more characters not shown]"
        return value

    if "text" in output:
        output["text"] = cut(output["text"])
    for mime in ("text/plain", "text/html"):
        if mime in output.get("data", {}):
            output["data"][mime] = cut(output["data"][mime])
    return output


def write_autograded(course: Course, lab: str, student: str, nb, submitted_folder: Path) -> None:
    dest = course.path("autograded", lab, student)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for rel in regular_files(submitted_folder)[0]:
        # nbgrader copies the submission's other files along; regular files only (never follow links)
        if "/" not in rel and not rel.endswith(".ipynb") and (submitted_folder / rel).stat().st_size < 20 * 2**20:
            try:
                copy_regular(submitted_folder, rel, dest / rel)
            except (OSError, ValueError):
                continue
    nbformat.write(nb, dest / f"{lab}.ipynb")


def feedback(course: Course, lab: str, *, student: str | None = None, out=print) -> list[Path]:
    """HTML feedback per student with nbgrader's generate_feedback; hidden test code is never shown."""
    course.labs.check(lab)
    graded = course.graded_students(lab)
    if student is not None and student not in graded:
        raise CourseError(f"{student} has no autograded {lab}; run `python -m autograder autograde {lab}` first")
    if not graded:
        raise CourseError(f"nothing autograded for {lab} in {course.root}; run `python -m autograder autograde {lab}` first")
    config = course.config()
    config.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTests, FitFigures]
    config.GenerateFeedback.exporter_class = FeedbackExporter
    students = [student] if student else graded
    paths = [course.path("feedback", lab, s) / f"{lab}.html" for s in students]
    failed = []
    try:
        run_nbgrader(GenerateFeedback, config, assignment=lab, student=student or "*", force=True)
    except CourseError:
        # nbgrader goes on past a notebook it cannot render and removes its output: those students, alone
        failed = [s for s, path in zip(students, paths, strict=True) if not path.is_file()]
        if not failed or len(failed) == len(students):  # nothing to do with one notebook
            raise
    for name in failed:
        try:
            run_nbgrader(GenerateFeedback, config, assignment=lab, student=name, force=True)
        except CourseError as err:
            out(f"[feedback] {name}: FAILED, the student gets a page saying so: {_cause(str(err))[:300]}")
            _failure_page(course.path("feedback", lab, name) / f"{lab}.html", lab)
    out(f"[feedback] {lab}: {len(paths)} HTML file(s) under {course.root / 'feedback'}")
    return paths


def _cause(message: str) -> str:
    """The last ``Type: message`` line of nbgrader's log (not its closing NbGraderException), else the last line."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    causes = [line for line in lines if re.match(r"[\w.]+: ", line) and "NbGraderException" not in line]
    return (causes or lines or ["no message"])[-1]


def _failure_page(path: Path, lab: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(lab)}</title></head><body>\n'
        f"<h4>{html.escape(lab)}</h4>\n<p><b>Autograder.</b> Your feedback page could not be made from your "
        "autograded notebook (something in it could not be rendered). Your scores were recorded as usual; "
        "ask your instructor for them.</p>\n</body></html>\n")


class HideHiddenTests(NbGraderPreprocessor):
    """Replace each ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` block by one comment line."""

    begin = Unicode("BEGIN HIDDEN TESTS").tag(config=True)
    end = Unicode("END HIDDEN TESTS").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        kept, hidden = [], False
        for line in cell.source.split("\n"):
            if self.begin in line:
                hidden = True
                kept.append(line[: len(line) - len(line.lstrip())] + "# (hidden tests: not shown; the result is below)")
            elif self.end in line:
                hidden = False
            elif not hidden:
                kept.append(line)
        cell.source = "\n".join(kept)
        return cell, resources
