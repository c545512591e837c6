"""The judge's scores into nbgrader's gradebook (with nbgrader's usual bookkeeping): one submission, one transaction.

Only the coordinating process of a batch calls :func:`record_grades` (nbgrader's SQLite gradebook takes one
writer; jupyter/nbgrader#174). Everything one submission changes is committed at once, after its verdict is
complete: the student, the submission and its grades (nbgrader's ORM, without the commits its
``update_or_create_*`` helpers make on the way) and a row of :data:`RUNS`, a table of this course's own in the
same database: the submission's content hash (what was graded: :func:`autograder.batch.digest`), the
seconds its grading took and where they went. A batch cut off anywhere leaves each submission either fully
recorded or not at all; a rerun grades what has no row or a different hash (:func:`recorded`).
"""
from __future__ import annotations

import json
import time
import warnings

import sqlalchemy as sa
from nbgrader.api import Comment, Grade, Student, SubmittedAssignment, SubmittedNotebook
from nbgrader.plugins import LateSubmissionPlugin
from nbgrader.utils import parse_utc
from sqlalchemy.exc import SAWarning

from .course import Course
from .feedback import cells_by_id

# The autograder's record of each graded submission; nbgrader's migrations do not know it and leave it alone.
RUNS = sa.Table(
    "autograder_run", sa.MetaData(),
    sa.Column("assignment", sa.String(128), primary_key=True),
    sa.Column("student", sa.String(128), primary_key=True),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("seconds", sa.Float, nullable=False),  # wall clock of its grading (kernel step and judge side by side)
    sa.Column("breakdown", sa.Text, nullable=False),  # JSON {phase: seconds}
    sa.Column("worker", sa.String(256), nullable=False),  # host:pid that graded it
    sa.Column("graded_at", sa.Float, nullable=False),  # Unix time of the commit
)


def recorded(course: Course, lab: str | None = None) -> dict:
    """``{student: {"content_hash", "seconds", "breakdown", "worker", "graded_at"}}`` of ``lab``'s graded
    submissions, or ``{(lab, student): ...}`` of every lab's. Creates :data:`RUNS` if the gradebook has none
    yet (a batch calls this before it records anything)."""
    with course.gradebook() as gb:
        RUNS.create(gb.db.get_bind(), checkfirst=True)
        query = sa.select(RUNS) if lab is None else sa.select(RUNS).where(RUNS.c.assignment == lab)
        rows = gb.db.execute(query).mappings().all()
    found = {(row["assignment"], row["student"]): {**row, "breakdown": json.loads(row["breakdown"])} for row in rows}
    return found if lab is None else {student: row for (_, student), row in found.items()}


def record_grades(course: Course, lab: str, student: str, verdicts: dict, submitted, release_nb, *,
                  run: dict | None = None) -> tuple[float, float]:
    """Write the judge's scores into the real gradebook, in one transaction.

    Autograded test cells get ``auto_score`` = the judge's score. Written answers and tasks
    are left for manual grading, except unchanged ones, which score 0 as in nbgrader. With no
    readable submission every grade cell is 0. ``run`` (``content_hash``, ``seconds``,
    ``breakdown``, ``worker``) goes into :data:`RUNS` in the same transaction. Returns the
    autograded (score, max_score).
    """
    mine = cells_by_id(submitted) if submitted is not None else None
    released = cells_by_id(release_nb)
    timestamp = course.submitted_timestamp(lab, student)
    score = max_score = 0.0
    with warnings.catch_warnings(), course.gradebook() as gb:
        # nbgrader's ORM trips SQLAlchemy 2.x autoflush warnings; harmless
        warnings.simplefilter("ignore", SAWarning)
        db = gb.db
        try:
            notebook = _submission_notebook(gb, lab, student, timestamp)
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
            db.flush()
            notebook.late_submission_penalty = None
            submission = notebook.assignment
            if submission.total_seconds_late > 0:
                plugin = LateSubmissionPlugin(config=course.config())
                penalty = plugin.late_submission_penalty(student, notebook.score, submission.total_seconds_late)
                if penalty is not None:
                    notebook.late_submission_penalty = min(max(penalty, 0), notebook.score)
            if run is not None:
                db.execute(RUNS.delete().where(RUNS.c.assignment == lab, RUNS.c.student == student))
                db.execute(RUNS.insert().values(
                    assignment=lab, student=student, content_hash=run["content_hash"], seconds=float(run["seconds"]),
                    breakdown=json.dumps(run.get("breakdown", {}), sort_keys=True), worker=run.get("worker", ""),
                    graded_at=time.time()))
            db.commit()
        except BaseException:
            db.rollback()
            raise
    return score, max_score


def _submission_notebook(gb, lab: str, student: str, timestamp) -> SubmittedNotebook:
    """The student's submitted notebook of ``lab``, created (with the student and the submission, mirroring the
    assignment as nbgrader's ``add_submission`` does) if need be; nothing committed."""
    db = gb.db
    if db.get(Student, student) is None:
        db.add(Student(id=student))
    assignment = gb.find_assignment(lab)
    submission = (db.query(SubmittedAssignment)
                  .filter(SubmittedAssignment.assignment_id == assignment.id, SubmittedAssignment.student_id == student)
                  .one_or_none())
    if submission is None:
        submission = SubmittedAssignment(assignment=assignment, student=db.get(Student, student))
        for nb in assignment.notebooks:
            submitted = SubmittedNotebook(notebook=nb, assignment=submission)
            for cell in nb.grade_cells:
                Grade(cell_id=cell.id, notebook=submitted)
            for cell in nb.solution_cells:
                Comment(cell_id=cell.id, notebook=submitted)
            for cell in nb.task_cells:
                Comment(cell_id=cell.id, notebook=submitted)
                Grade(cell_id=cell.id, notebook=submitted)
        db.add(submission)
    if timestamp is not None:
        submission.timestamp = parse_utc(timestamp)
    db.flush()
    return next(nb for nb in submission.notebooks if nb.notebook.name == lab)


def _unchanged(cell, released) -> bool:
    """The student's answer cell is missing or still the released stub."""
    if cell is None or released is None:
        return True
    return "".join(cell.get("source", "")).strip() == "".join(released.source).strip()
