"""The course's autograder: nbgrader for the workflow, a clean-process judge for the scores.

Instructors use it as ``python -m autograder <command>`` (release, collect,
autograde, feedback, report, worker, demo; see ``--help``). Modules:

- :mod:`autograder.course`        the labs in this repo and a course directory (nbgrader's layout)
- :mod:`autograder.release`       the deterministic student release and its drift check
- :mod:`autograder.grading`       autograde: per student, the kernel step and the judge, then the gradebook
- :mod:`autograder.submission`    one submission: graded in a grading process (plain data back), recorded by the coordinator
- :mod:`autograder.batch`         a lab's batch: content hashes (unchanged ones skipped), progress bar, summary, the one gradebook writer
- :mod:`autograder.workers`       a process per submission, forked from a per-batch zygote, --jobs at a time (crash, timeout: that one only)
- :mod:`autograder.cluster`       the same on a Dask cluster (--scheduler tcp://HOST:PORT, --dask), and ``worker``
- :mod:`autograder.collect`       an LMS download (Canvas, Moodle, plain zip) into submitted/, refusals checked first
- :mod:`autograder.kernel_step`   the kernel step's plumbing (throwaway course dirs from the release)
- :mod:`autograder.feedback_jail` nbgrader's kernel run for one student, for feedback outputs only (never a score)
- :mod:`autograder.kernel_boot`   PID 1 of that jail: its filesystem, nbgrader as the student's uid, nothing left running
- :mod:`autograder.submission_files` the files of a submission folder the grader uses (regular files only)
- :mod:`autograder.gradebook`     the judge's scores into nbgrader's gradebook, one transaction per submission (with its hash and time)
- :mod:`autograder.feedback`      the HTML feedback (verdicts shown, hidden tests never)
- :mod:`autograder.student_content` what the feedback page takes from a student's notebook (text, vouched grade cells)
- :mod:`autograder.report`        the grade table from the gradebook
- :mod:`autograder.demo`          the round trip on known submissions
- :mod:`autograder.exercises`     each lab's graded exercises and their examples; ``judge_lab``
- :mod:`autograder.judge`         the engine: scores in a process that never ran student code (its
  scoring jail decides grades); it knows no lab

This package is for instructors; it is not part of the student wheel (labkit).
"""
from .course import Course, CourseError, Labs

__all__ = ["Course", "CourseError", "Labs"]
