"""What the judge knows about one graded function: how to call it, and how to grade what came back.

An exercise is declared in ``autograder/exercises/<lab>.py`` as::

    Exercise(
        grade_id="vae_loss_test",               # the nbgrader test cell it replaces
        function="vae_loss",                    # the student's function, looked up by name
        cases=vae_cases,                        # parent: rng -> {case: {argument: array}}
        probe=probe_vae_loss,                   # child: (function, arguments) -> {key: array}
        checks=[checks.matches(2, "loss", ...), ...],   # parent: weighted checks of the arrays
        forbidden=("labkit.losses.vae_loss",),  # the reference it must not call
    )

``cases`` and ``checks`` run in the clean parent; ``probe`` runs in the sandboxed
child, the only place student code runs, and returns plain numeric arrays.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class Check:
    """One graded property. ``run(evidence)`` returns None when it holds, else the message for the student."""

    weight: float
    run: Callable  # (Evidence) -> str | None


@dataclass(frozen=True)
class Exercise:
    grade_id: str
    function: str
    cases: Callable[[np.random.Generator], dict[str, Arrays]]
    probe: Callable[[Callable, Arrays], Arrays]
    checks: list[Check] = field(default_factory=list)
    forbidden: tuple[str, ...] = ()  # dotted names of labkit references, e.g. "labkit.losses.vae_loss"

    @property
    def total_weight(self) -> float:
        return sum(check.weight for check in self.checks)
