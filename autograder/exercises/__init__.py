"""The graded functions of each lab, one module per lab id, each with a list ``EXERCISES``.

A module declares, for every nbgrader test cell the judge grades, an
:class:`~autograder.exercises.kit.Exercise`: the student's function, how to draw
fresh inputs, the probe that calls the function in the scoring child, the
weighted checks that grade what came back, and its examples (solutions,
classic mistakes, hostile answers with the scores they must get). Points come
from the source notebook; the weights only split them. How to add one:
``autograder/exercises/README.md``.

Conventions: case inputs whose names start with ``_`` stay in the parent (never
sent to the child, e.g. the true labels of a clustering case); references to
labkit are imported inside functions, so that the child, which imports these
modules for the probes, does not import labkit unless the notebook does.

This package is where the grading layer meets the engine: :func:`judge_lab`
looks a lab's exercises up and hands them to :func:`autograder.judge.judge_notebook`.
"""
from __future__ import annotations

import importlib
import os
import re
from pathlib import Path

from .kit import Exercise

NOT_A_LAB = {"kit"}
# Left out of the scoring child's copy of labkit: no graded function may start from a shipped encoder.
WITHHELD = ("labkit/weights/*.pt",)


def module_name(lab: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", lab) or lab in NOT_A_LAB:
        raise ValueError(f"{lab!r} is not a lab id (e.g. 'lab1_autoencoders').")
    return f"{__name__}.{lab}"


def load(lab: str) -> dict[str, Exercise]:
    """The exercises of ``lab`` by grade_id; empty when the lab has no module here."""
    name = module_name(lab)
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name == name:
            return {}
        raise
    return {exercise.grade_id: exercise for exercise in module.EXERCISES}


def experiments(lab: str) -> tuple[str, ...]:
    """The grade_ids of the lab's cells that only train, print or plot for the reader (its module's
    ``EXPERIMENTS``): the scoring child skips them unless a cell it runs reads what they bind. Empty when the
    environment sets AUTOGRADER_ALL_CELLS=1 (every cell runs, as before issue 15: slower, for comparison)."""
    name = module_name(lab)
    if os.environ.get("AUTOGRADER_ALL_CELLS") == "1":
        return ()
    try:
        return tuple(getattr(importlib.import_module(name), "EXPERIMENTS", ()))
    except ModuleNotFoundError as err:
        if err.name == name:
            return ()
        raise


def judge_lab(lab: str, notebook: Path | str, *, source: Path | str | None = None, time_limit_s: float = 300,
              memory_limit_mb: int = 4096):
    """Grade ``notebook``, a submission of ``lab``, with the lab's exercises: a verdict per test cell.

    ``source`` defaults to ``labs/source/<lab>/<lab>.ipynb`` in this repository. This is the
    contract ``autograde`` expects of a judge (``--judge MODULE:FUNCTION`` swaps it); it returns
    ``({grade_id: Verdict}, Isolation)``.
    """
    # Imported here: the scoring child imports this package for the probes and has neither.
    from ..course import REPO_ROOT, Labs
    from ..judge import judge_notebook

    source = Path(source) if source is not None else Labs().source(lab)
    hidden = (REPO_ROOT / "labs", REPO_ROOT / "autograder", REPO_ROOT / "tests")  # should the child's folders hold them
    return judge_notebook(notebook, list(load(lab).values()), module=module_name(lab), source=source,
                          packages=("labkit",), hide=hidden, withheld=WITHHELD, experiments=experiments(lab),
                          time_limit_s=time_limit_s,
                          memory_limit_mb=memory_limit_mb)
