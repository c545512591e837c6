"""The course's autograder: nbgrader for the workflow, a clean-process judge for the scores.

Instructors use it as ``python -m autograder <command>`` (release, autograde,
feedback, report, demo; see ``--help``). Modules:

- :mod:`autograder.course`   the labs in this repo and a course directory (nbgrader's layout)
- :mod:`autograder.release`  the deterministic student release and its drift check
- :mod:`autograder.sandbox`  nbgrader's kernel step for one student, resource-limited and isolated
- :mod:`autograder.grading`  autograde (the judge's scores into the gradebook) and feedback
- :mod:`autograder.report`   the grade table from the gradebook
- :mod:`autograder.demo`     the round trip on known submissions
- :mod:`autograder.judge`    scores submissions in a process that never ran student code

This package is for instructors; it is not part of the student wheel (labkit).
"""
from .course import Course, CourseError, Labs

__all__ = ["Course", "CourseError", "Labs"]
