"""The graded functions of each lab, one module per lab id, each with a list ``EXERCISES``.

A module declares, for every nbgrader test cell the judge grades, an
:class:`~autograder.judge.exercise.Exercise`: the student's function, how to draw
fresh inputs, the probe that calls the function in the sandbox, and the weighted
checks (``autograder.judge.checks``) that grade what came back. Points come from
the source notebook; the weights only split them.

Conventions: case inputs whose names start with ``_`` stay in the parent (never
sent to the child, e.g. the true labels of a clustering case); references to
labkit are imported inside functions, so that the child, which imports these
modules for the probes, does not import labkit unless the notebook does.
"""
from __future__ import annotations

import importlib
import re

from ..judge.exercise import Exercise


def load(lab: str) -> dict[str, Exercise]:
    """The exercises of ``lab`` by grade_id; empty when the lab has no module here."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", lab):
        raise ValueError(f"{lab!r} is not a lab id (e.g. 'lab1_autoencoders').")
    try:
        module = importlib.import_module(f"{__name__}.{lab}")
    except ModuleNotFoundError as err:
        if err.name == f"{__name__}.{lab}":
            return {}
        raise
    return {exercise.grade_id: exercise for exercise in module.EXERCISES}
