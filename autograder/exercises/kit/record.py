"""The records a TA writes: an :class:`Exercise` (how to call and grade one function) and its examples.

An exercise is declared in ``autograder/exercises/<lab>.py`` as::

    Exercise(
        grade_id="vae_loss_test",               # the nbgrader test cell it replaces
        function="vae_loss",                    # the student's function, looked up by name
        cases=vae_cases,                        # parent: rng -> {case: {argument: array}}
        probe=probe_vae_loss,                   # child: (function, arguments) -> {key: array}
        checks=[kit.matches(2, "loss", ...), ...],      # parent: weighted checks of the arrays
        forbidden=("labkit.losses.vae_loss",),  # the reference it must not call
        mistakes=[Example("mean BCE", MEAN_BCE_CODE, share=1/6, message="BCE is averaged", demo=True)],
    )

``cases`` and ``checks`` run in the clean parent; ``probe`` runs in the scoring
child, the only place student code runs, and returns plain numeric arrays.
The examples are the exercise's one home for what answers must get: the
source notebook's solution must get full marks, each mistake its ``share`` with
its ``message``, each hostile answer at most its ``share``. The judge tests, the
end-to-end grading tests and the demo's mistakes student all read them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ...judge.evidence import Arrays, Evidence


@dataclass(frozen=True)
class Check:
    """One graded property. ``run(evidence)`` returns None when it holds, else the message for the student."""

    weight: float
    run: Callable[[Evidence], str | None]


@dataclass(frozen=True)
class Example:
    """An answer to an exercise with the share of its points it must get.

    ``code`` is the whole solution cell as a student would write it: it runs after
    the notebook's imports, in place of the source's solution cell.
    """

    label: str  # what it shows, e.g. "BCE averaged, KL summed"
    code: str
    share: float  # of the exercise's points: exactly this for a mistake, at most this for a hostile answer
    message: str = ""  # a phrase the student's feedback must contain
    demo: bool = False  # the demo's "mistakes" student makes this one (one per exercise at most)
    self_check: bool = True  # a mistake the lab's visible self-check catches (with an AssertionError)


@dataclass(frozen=True)
class Exercise:
    grade_id: str
    function: str
    cases: Callable[[np.random.Generator], dict[str, Arrays]]
    probe: Callable[[Callable, Arrays], Arrays]
    checks: list[Check] = field(default_factory=list)
    forbidden: tuple[str, ...] = ()  # dotted names of labkit references, e.g. "labkit.losses.vae_loss"
    gate: Check | None = None  # an answer that fails it earns nothing: it must depend on its inputs as the task does
    solutions: tuple[Example, ...] = ()  # correct answers besides the source notebook's (share 1)
    mistakes: tuple[Example, ...] = ()  # classic mistakes: exact share and message
    hostile: tuple[Example, ...] = ()  # answers that try to cheat: at most their share

    def __post_init__(self):
        if sum(example.demo for example in self.mistakes) > 1:
            raise ValueError(f"{self.grade_id}: at most one mistake is the demo student's")

    @property
    def total_weight(self) -> float:
        return sum(check.weight for check in self.checks)

    @property
    def demo_mistake(self) -> Example | None:
        return next((example for example in self.mistakes if example.demo), None)
