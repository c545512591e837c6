"""The autograder's imports point one way: read with ast, nothing executed.

Nodes are its sub-packages (``judge``, the engine; ``exercises`` and its authoring
``kit``) and its top-level modules (``course``, ``grading``, ...). The engine
imports no other part of the autograder; no two nodes import each other, directly
or around a longer loop. Imports inside functions count too.
"""
from __future__ import annotations

import ast
from pathlib import Path

AUTOGRADER = Path(__file__).resolve().parents[1] / "autograder"
PACKAGES = ("judge", "exercises.kit", "exercises")  # most specific first


def node_of(module: str) -> str | None:
    """``autograder.judge.grade`` -> ``judge``; ``autograder.course`` -> ``course``; outside the autograder: None."""
    parts = module.split(".")
    if parts[0] != "autograder" or len(parts) == 1:
        return None
    inner = ".".join(parts[1:])
    return next((p for p in PACKAGES if inner == p or inner.startswith(p + ".")), parts[1])


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts[:-1]) if rel.name == "__init__" else list(rel.parts)
    return ".".join(parts)


def imports_of(path: Path, root: Path) -> set[str]:
    """The absolute names of the modules ``path`` imports (relative imports resolved)."""
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # `from . import kit` imports a module
    return found


def import_graph(root: Path = AUTOGRADER) -> dict[str, set[str]]:
    """{node: nodes it imports}, without self-references."""
    graph: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        source = node_of(_module_name(path, root))
        if source is None:  # autograder/__init__.py: re-exports only
            continue
        targets = {node_of(name) for name in imports_of(path, root)} - {None, source}
        graph.setdefault(source, set()).update(targets)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every loop of the graph, each once (as found by a depth-first search)."""
    found, seen = [], set()

    def visit(node, path):
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                loop = path[path.index(nxt):]
                key = frozenset(loop)
                if key not in seen:
                    seen.add(key)
                    found.append(loop + [nxt])
            else:
                visit(nxt, path + [nxt])

    for start in sorted(graph):
        visit(start, [start])
    return found


def test_no_cycle_between_the_parts_of_the_autograder():
    assert cycles(import_graph()) == []


def test_the_engine_imports_no_other_part_of_the_autograder():
    assert import_graph().get("judge", set()) == set()


def test_the_authoring_kit_uses_only_the_engine():
    assert import_graph().get("exercises.kit", set()) <= {"judge"}


def test_no_private_name_is_imported_across_packages():
    for path in AUTOGRADER.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level >= 2 or (node.module or "").startswith("autograder")):
                private = [alias.name for alias in node.names if alias.name.startswith("_")]
                assert not private, f"{path.relative_to(AUTOGRADER.parent)} imports {private} from {node.module}"


def test_the_graph_finds_a_cycle_where_there_is_one(tmp_path):
    """The checker itself: a judge that imports the exercises, which import the judge."""
    root = tmp_path / "autograder"
    for name, text in {"judge/__init__.py": "", "judge/grade.py": "from .. import exercises\n",
                       "exercises/__init__.py": "from ..judge import grade\n"}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    graph = import_graph(root)
    assert graph["judge"] == {"exercises"}
    assert cycles(graph) == [["exercises", "judge", "exercises"]]
