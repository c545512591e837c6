"""Static half of the delegation check: does the student's code call the labkit reference it should reimplement?

Read from the student's cells (solution and added cells) with ``ast``, never run.
Flagged, for a graded function ``f`` with a forbidden reference ``labkit.losses.vae_loss``:

- in the definition of ``f`` (its body, or the value assigned to ``f``):
  ``labkit.losses.vae_loss``, ``losses.vae_loss``, an alias of the module
  (``from labkit import losses as L; L.vae_loss``), ``getattr(losses, "vae_loss")``,
  or any name bound to one of these in a student cell; ``from labkit.losses import vae_loss``;
- anywhere in the student's cells: loading labkit dynamically (``importlib.import_module``,
  ``__import__``, ``reload``, ``spec_from_file_location``, ``sys.modules[...]``) or
  reaching behind a wrapper (``__wrapped__``): the usual ways around the runtime tripwires.

The runtime tripwires in the child catch the other forms (helpers, lambdas, ...).
"""
from __future__ import annotations

import ast

from .notebook import strip_magics

_DYNAMIC = {"import_module", "__import__", "reload", "spec_from_file_location", "module_from_spec", "SourceFileLoader"}


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def _parse(code: str) -> ast.Module | None:
    try:
        return ast.parse(strip_magics(code))
    except (SyntaxError, ValueError, RecursionError):
        return None


class _Finder:
    """Finds the references to one forbidden ``module.attr`` in a set of cells."""

    def __init__(self, trees: list[ast.Module], forbidden: str):
        self.module, _, self.attr = forbidden.rpartition(".")
        self.module_names = {self.module, self.module.rpartition(".")[2]}
        self.bound: set[str] = set()  # names bound to the reference itself
        for tree in trees:
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    self.module_names |= {a.asname for a in node.names if a.asname and a.name == self.module}
                elif isinstance(node, ast.ImportFrom) and node.module:
                    for a in node.names:
                        if f"{node.module}.{a.name}" == self.module:
                            self.module_names.add(a.asname or a.name)
                        elif f"{node.module}.{a.name}" == forbidden:
                            self.bound.add(a.asname or a.name)
        for tree in trees:  # names assigned from a reference: ref = losses.vae_loss
            for node in ast.walk(tree):
                if isinstance(node, ast.Assign) and self.refers(node.value):
                    self.bound |= {t.id for t in node.targets if isinstance(t, ast.Name)}

    def is_reference(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Attribute) and node.attr == self.attr:
            return _dotted(node.value) in self.module_names
        if isinstance(node, ast.Call) and _dotted(node.func) == "getattr" and len(node.args) >= 2:
            target, name = node.args[0], node.args[1]
            return (_dotted(target) in self.module_names and isinstance(name, ast.Constant)
                    and name.value == self.attr)
        if isinstance(node, ast.ImportFrom) and node.module == self.module:
            return any(a.name == self.attr for a in node.names)
        return isinstance(node, ast.Name) and node.id in self.bound

    def refers(self, tree: ast.AST) -> bool:
        return any(self.is_reference(node) for node in ast.walk(tree))


def _dynamic_loading(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "__wrapped__":
            return True
        if isinstance(node, ast.Subscript) and (_dotted(node.value) or "").endswith("sys.modules") \
                and "labkit" in ast.dump(node.slice):
            return True
        if isinstance(node, ast.Call) and (_dotted(node.func) or "").rpartition(".")[2] in _DYNAMIC \
                and "labkit" in ast.dump(node):
            return True
    return False


def _definitions(tree: ast.Module, function: str) -> list[ast.AST]:
    """The top-level statements of a cell that bind ``function``: its def, an assignment, an import."""
    found = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == function:
            found.append(node)
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == function for t in node.targets):
            found.append(node.value)
        elif isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == function for a in node.names):
            found.append(node)
    return found


def find_delegation(student_cells: list[tuple[str, str]], function: str, forbidden: tuple[str, ...]) -> list[str]:
    """Messages, one per finding, for the student's ``function`` reaching a ``forbidden`` reference.

    Only the definition of ``function`` is searched (its body, or the value it is
    assigned), so comparing one's own result with the reference elsewhere is fine.
    """
    if not forbidden:
        return []
    parsed = [(label, tree) for label, code in student_cells if (tree := _parse(code)) is not None]
    found = []
    for reference in forbidden:
        finder = _Finder([tree for _, tree in parsed], reference)
        for label, tree in parsed:
            if any(finder.refers(node) for node in _definitions(tree, function)):
                found.append(f"{function} uses labkit's reference {reference} (cell {label}) "
                             "instead of implementing it")
    for label, tree in parsed:
        if _dynamic_loading(tree):
            found.append(f"cell {label} loads labkit dynamically or unwraps its functions, which hides calls to "
                         f"the reference; {function} cannot be credited")
    return found
