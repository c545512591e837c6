"""The scoring child's copy of the code it imports, with what students must write themselves taken out.

Before the child starts, in its private copy of the packages (never in the
repository): every reference an exercise of the lab forbids (``labkit.losses.vae_loss``,
a class such as ``labkit.models.MLPAutoencoder``) is rewritten in its source file into
a stub that raises, and withheld files (shipped weights) are deleted. The student's
code, which runs in that process, then holds no reference it could call: not
through a wrapper's ``__wrapped__`` or closure, not by exec-ing the module's source
file, not by reloading it, not by building or deep-copying an object at cell time.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterable

MESSAGE = ("{reference} is not available while your notebook is graded: this lab asks you to write it yourself; "
           "call your own version instead (nothing of labkit's may stand in for a graded function)")


def _module_file(lib: Path, module: str) -> Path | None:
    base = lib.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _raising(reference: str) -> list[ast.stmt]:
    return ast.parse(f"raise RuntimeError({MESSAGE.format(reference=reference)!r})").body


def _stub_function(node: ast.FunctionDef | ast.AsyncFunctionDef, reference: str) -> None:
    node.body = _raising(reference)
    node.decorator_list = [d for d in node.decorator_list if ast.unparse(d) in ("staticmethod", "classmethod")]


def _stub(tree: ast.Module, name: str, reference: str) -> bool:
    """Rewrite the top-level definition of ``name`` in place; False when the module does not define it."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            _stub_function(node, reference)
            return True
        if isinstance(node, ast.ClassDef) and node.name == name:
            methods = [n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
            for method in methods:
                _stub_function(method, reference)
            if not any(m.name == "__init__" for m in methods):
                init = ast.parse("def __init__(self, *args, **kwargs):\n    pass\n").body[0]
                _stub_function(init, reference)
                node.body.insert(0, init)
            node.body = [n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                         or (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]  # no class attributes
            return True
    return False


def stub_references(lib: Path, references: Iterable[str]) -> list[str]:
    """Replace each dotted ``references`` (module.name) in ``lib``'s copy by a stub that raises.

    A name the module only imports is stubbed where it is defined, following ``from .x import name``.
    Returns the references that were not found (the child's log says so; nothing is stubbed for them).
    """
    by_file: dict[Path, list[tuple[str, str]]] = {}
    missing = []
    for reference in sorted(set(references)):
        module, _, name = reference.rpartition(".")
        found = _definition(lib, module, name)
        if found is None:
            missing.append(reference)
        else:
            by_file.setdefault(found, []).append((name, reference))
    for path, names in by_file.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for name, reference in names:
            _stub(tree, name, reference)
        path.write_text(ast.unparse(tree) + "\n", encoding="utf-8")
    return missing


def _definition(lib: Path, module: str, name: str, depth: int = 0) -> Path | None:
    """The file of ``lib``'s copy that defines ``module.name`` at its top level."""
    path = _module_file(lib, module)
    if path is None or depth > 5:
        return None
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name == name for n in tree.body):
        return path
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name for a in node.names):
            original = next(a.name for a in node.names if (a.asname or a.name) == name)
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            source = ".".join(anchor + ([node.module] if node.module else []))
            return _definition(lib, source, original, depth + 1)
    return None


def withhold(lib: Path, patterns: Iterable[str]) -> list[Path]:
    """Delete the files of ``lib``'s copy matching the glob ``patterns`` (e.g. ``labkit/weights/*.pt``)."""
    removed = []
    for pattern in patterns:
        for path in lib.glob(pattern):
            if path.is_file():
                path.unlink()
                removed.append(path)
    return removed
