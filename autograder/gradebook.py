"""The judge's scores into nbgrader's gradebook (with nbgrader's usual bookkeeping), one submission at a time."""
from __future__ import annotations

import warnings

from nbgrader.plugins import LateSubmissionPlugin
from sqlalchemy.exc import SAWarning

from .course import Course
from .feedback import cells_by_id


def record_grades(course: Course, lab: str, student: str, verdicts: dict, submitted, release_nb) -> tuple[float, float]:
    """Write the judge's scores into the real gradebook.

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
