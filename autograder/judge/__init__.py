"""The judge: the grading engine. It grades a submission in a clean process that never runs student code.

nbgrader runs student code and hidden tests in one kernel, so a student can
make tests pass (``torch.allclose = lambda *a, **k: True``). Here the student's
functions run in a separate, confined child (:mod:`.scoring_jail`, whose entry
point is :mod:`.scoring_child`) that returns only numeric arrays; this process
compares them with references and known properties and gives partial credit
with messages.

The engine knows no lab: :func:`judge_notebook` is handed the exercises to grade
(the course's live in ``autograder/exercises/``, which look them up by lab id:
``autograder.exercises.judge_lab``). Nothing here imports ``autograder.exercises``.
"""
from .grade import judge_notebook
from .verdicts import Isolation, Verdict

__all__ = ["Verdict", "Isolation", "judge_notebook"]
