"""The judge: grades a submission in a clean process that never runs student code.

nbgrader runs student code and hidden tests in one kernel, so a student can
make tests pass (``torch.allclose = lambda *a, **k: True``). Here the student's
functions run in a separate, confined child process (:mod:`.sandbox`,
:mod:`.runner`) that returns only numeric arrays; this process compares them
with labkit's references and known properties (:mod:`.checks`, the exercises in
``autograder/exercises/<lab>.py``) and gives partial credit with messages.

Entry point: :func:`judge_notebook`; ``python -m autograder.judge LAB NOTEBOOK`` prints the verdicts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Verdict:
    grade_id: str  # the nbgrader test cell's grade_id
    score: float
    max_score: float
    messages: list[str] = field(default_factory=list)  # shown to the student in feedback


@dataclass
class Isolation:
    """What was in force for the child, for the autograde log."""

    separate_process: bool
    user: str
    memory_limit_mb: int | None
    time_limit_s: float
    other: list[str] = field(default_factory=list)

    def describe(self) -> str:
        memory = f"{self.memory_limit_mb} MB" if self.memory_limit_mb else "no memory limit"
        head = (f"{'separate process' if self.separate_process else 'same process'}, user {self.user}, "
                f"{memory}, {self.time_limit_s:.0f} s")
        return "; ".join([head, *self.other])


def judge_notebook(lab: str, notebook: Path | str, *, source: Path | str | None = None,
                   time_limit_s: float = 300, memory_limit_mb: int = 4096) -> tuple[dict[str, Verdict], Isolation]:
    """Grade ``notebook`` (a submission of ``lab``): a verdict per autograder test cell of the source notebook.

    ``source`` defaults to ``labs/source/<lab>/<lab>.ipynb`` in this repository; the
    points of each test cell come from it, never from the submission. Never raises
    for a bad submission: what could not be verified scores zero, with a message.
    """
    from .grade import judge_notebook as judge

    return judge(lab, notebook, source=source, time_limit_s=time_limit_s, memory_limit_mb=memory_limit_mb)


__all__ = ["Verdict", "Isolation", "judge_notebook"]
