"""What the engine returns: a Verdict per test cell, and the Isolation that was in force."""
from __future__ import annotations

from dataclasses import dataclass, field


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
