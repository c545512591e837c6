"""What the engine hands an exercise's checks, and what it expects of an exercise.

The engine (this package) knows no lab. It is handed objects with the shape of
:class:`GradedExercise` (the course's are ``autograder.exercises.kit.Exercise``):
it draws their cases in the clean parent, sends the inputs to the scoring child,
which calls their ``probe`` on the student's function, and grades what came back
with their weighted ``checks``, each a function of the :class:`Evidence`.
"""
from __future__ import annotations

from typing import Callable, Protocol, Sequence

import numpy as np

Arrays = dict[str, np.ndarray]


class Missing(Exception):
    """An output a check needs is absent (the student's function raised, timed out, or returned junk)."""


class Evidence:
    """The inputs drawn for each case and what the student's function gave for them."""

    def __init__(self, function: str, inputs: dict[str, Arrays], outputs: dict[str, Arrays], errors: dict[str, str]):
        self.function, self.inputs, self.outputs, self.errors = function, inputs, outputs, errors
        self._results: dict = {}

    def once(self, predicate: Callable[["Evidence"], str | None]) -> str | None:
        """``predicate(self)``, computed once per evidence: a gate and a check that share a predicate (one that
        trains a reference on the case, say) cost it once. Raising is not remembered: it is raised again."""
        if predicate not in self._results:
            self._results[predicate] = predicate(self)
        return self._results[predicate]

    def get(self, case: str, key: str) -> np.ndarray:
        if key in self.outputs.get(case, {}):
            return self.outputs[case][key]
        why = self.errors.get(case) or f"no '{key}' came back"
        raise Missing(f"{self.function} failed on {self.describe(case)}: {why}")

    def describe(self, case: str) -> str:
        """The case's inputs in words, e.g. "inputs x_recon (3, 1, 28, 28), mu (3, 2), num_steps 5"."""
        parts = [f"{name} {tuple(a.shape)}" if a.ndim else f"{name} {a.item():g}"
                 for name, a in self.inputs.get(case, {}).items() if not name.startswith("_")]
        return f"inputs {', '.join(parts)}" if parts else "its call"


class WeightedCheck(Protocol):
    weight: float
    run: Callable[[Evidence], str | None]  # None when the property holds, else the message for the student


class GradedExercise(Protocol):
    """One graded function, as the engine uses it."""

    grade_id: str  # the nbgrader test cell it grades
    function: str  # the student's function, looked up by name in the notebook's namespace
    cases: Callable[[np.random.Generator], dict[str, Arrays]]  # parent: fresh inputs per case
    probe: Callable[[Callable, Arrays], Arrays]  # child: calls the function, returns numeric arrays
    checks: Sequence[WeightedCheck]  # parent: grade the arrays
    forbidden: tuple[str, ...]  # dotted labkit references the function must not call
    gate: WeightedCheck | None  # optional: an answer failing it earns nothing (does it depend on its inputs?)

    @property
    def total_weight(self) -> float: ...
