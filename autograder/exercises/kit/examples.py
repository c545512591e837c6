"""An exercise's examples run where a TA can see them: in this process, on trusted code, without the jail.

The source notebook's cells are the context: its imports (from every non-solution
code cell: the setup cell's ``import`` lines, nothing else) and its solution cells,
in order, with any of them replaced by an example's code. For testing exercises and
for the demo only; submissions are graded by the judge, never here.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

from ...judge.grade import grade_in_process
from ...judge.notebook import read_source, strip_magics
from .record import Example, Exercise

SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")
HIDDEN_TESTS = "### BEGIN HIDDEN TESTS"


def _code_cells(source: Path) -> list[tuple[dict, str]]:
    cells = json.loads(Path(source).read_text(encoding="utf-8"))["cells"]
    return [(c["metadata"].get("nbgrader", {}), "".join(c["source"])) for c in cells if c["cell_type"] == "code"]


def without_markers(code: str) -> str:
    return "\n".join(line for line in code.split("\n") if line.strip() not in SOLUTION_MARKERS)


def solution_cells(source: Path) -> dict[str, str]:
    """``{grade_id: code}`` of the source's solution cells, in order, without nbgrader's markers."""
    return {meta["grade_id"]: without_markers(code) for meta, code in _code_cells(source) if meta.get("solution")}


def solution_cell_of(exercise: Exercise, source: Path) -> str:
    """The grade_id of the solution cell that defines the exercise's function at its top level."""
    cell = read_source(source).defined_in.get(exercise.function)
    if cell is None:
        raise LookupError(f"{exercise.function} is not defined at the top level of a solution cell of {source}")
    return cell


def imports(source: Path) -> str:
    """The import statements of the source's non-solution code cells (what a solution cell may rely on)."""
    lines = []
    for meta, code in _code_cells(source):
        if not meta.get("solution"):
            tree = ast.parse(strip_magics(code))
            lines += [ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    return "\n".join(dict.fromkeys(lines))


def namespace(source: Path, replace: dict[str, str] | None = None) -> dict:
    """The notebook's imports, then its solution cells in order (``replace``: {cell grade_id: code})."""
    scope: dict = {"__name__": "__main__"}
    exec(compile(imports(source), f"<imports of {Path(source).name}>", "exec"), scope)
    for cell, code in solution_cells(source).items():
        exec(compile((replace or {}).get(cell, code), f"<cell {cell}>", "exec"), scope)
    return scope


def function_of(exercise: Exercise, source: Path, example: Example | None = None):
    """The exercise's function as the source defines it, or as ``example``'s code does."""
    replace = {solution_cell_of(exercise, source): example.code} if example else {}
    return namespace(source, replace)[exercise.function]


def grade(exercise: Exercise, source: Path, example: Example | None = None, seed: int | None = None,
          points: float = 1.0) -> tuple[float, list[str]]:
    """The score (of ``points``) and messages the judge's checks give the source's solution or ``example``."""
    return grade_in_process(exercise, function_of(exercise, source, example), points=points, seed=seed)


def visible_test(exercise: Exercise, source: Path) -> str:
    """The code of the exercise's test cell that students see (its self-check), without the hidden part."""
    for meta, code in _code_cells(source):
        if meta.get("grade_id") == exercise.grade_id:
            return code.split(HIDDEN_TESTS)[0]
    raise LookupError(f"no test cell {exercise.grade_id} in {source}")


def demo_cells(exercises: list[Exercise], source: Path) -> dict[str, str]:
    """``{solution cell grade_id: code}`` for the demo's mistakes student: each exercise's demo mistake."""
    return {solution_cell_of(ex, source): ex.demo_mistake.code for ex in exercises if ex.demo_mistake}
