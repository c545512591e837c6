"""Which code runs in the child: the submission's cells matched to the source notebook by nbgrader grade_id.

- solution cells: the student's text;
- locked (and other non-solution) cells of the source: the source text, even if
  the student edited them; restored in place if the student deleted them;
- autograder test cells: dropped (the judge grades them from outside);
- cells the student added: kept where they are;
- a grade_id seen twice: the first copy is used.

The source notebook is the instructor's and is trusted; the submission is read
defensively and any problem is a :class:`SubmissionError` with a message in words.
"""
from __future__ import annotations

import ast
import json
import os
import re
import stat
import symtable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

MAX_NOTEBOOK_MB = 50  # a submission larger than this is not opened (by the judge, nor by autograde)


class SubmissionError(Exception):
    """The submitted notebook cannot be read at all. ``kind``: missing, not_regular, too_large, not_json or
    not_a_notebook."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Cell:
    cell_type: str
    text: str
    grade_id: str | None
    kind: str = "other"  # solution | test | locked | other (source cells only)
    points: float = 0.0


@dataclass
class Source:
    cells: list[Cell]
    tests: dict[str, float]  # grade_id of each autograder test cell -> points, in notebook order
    defined_in: dict[str, str]  # top-level name -> grade_id of the solution cell that defines it

    def by_id(self) -> dict[str, tuple[int, Cell]]:
        return {c.grade_id: (i, c) for i, c in enumerate(self.cells) if c.grade_id and c.cell_type == "code"}


@dataclass
class Script:
    cells: list[tuple[str, str]]  # (label, code) in execution order
    student_cells: list[tuple[str, str]]  # the code the student wrote: solution and added cells
    deleted: list[str] = field(default_factory=list)  # solution cells missing from the submission
    missing_tests: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # about the notebook as a whole


def _text(source) -> str:
    if isinstance(source, list):
        return "".join(s for s in source if isinstance(s, str))
    return source if isinstance(source, str) else ""


def _kind(meta: dict) -> str:
    if meta.get("solution"):
        return "solution"
    if meta.get("grade"):
        return "test"
    return "locked" if meta.get("locked") else "other"


def _cells(data) -> list[Cell]:
    if not isinstance(data, dict):
        raise SubmissionError("not_a_notebook", "the file is JSON but not a notebook")
    raw = data.get("cells")
    if raw is None and isinstance(data.get("worksheets"), list):  # nbformat 3
        raw = [c for ws in data["worksheets"] if isinstance(ws, dict) for c in ws.get("cells", [])]
    if not isinstance(raw, list):
        raise SubmissionError("not_a_notebook", "the notebook has no list of cells")
    cells = []
    for c in raw:
        if not isinstance(c, dict):
            continue
        meta = c.get("metadata") if isinstance(c.get("metadata"), dict) else {}
        nbg = meta.get("nbgrader") if isinstance(meta.get("nbgrader"), dict) else {}
        gid = nbg.get("grade_id") if isinstance(nbg.get("grade_id"), str) else None
        points = nbg.get("points", 0)
        cells.append(Cell(str(c.get("cell_type")), _text(c.get("source", c.get("input"))), gid, _kind(nbg),
                          float(points) if isinstance(points, (int, float)) else 0.0))
    return cells


def read_submission(path: Path) -> dict:
    """A submitted notebook's JSON (at most MAX_NOTEBOOK_MB), or SubmissionError saying why there is none.

    Never follows a symbolic link: a notebook (or its folder) that is one, or anything but a regular file,
    is refused, so that a submission cannot point the grader at a file of the course.
    """
    path = Path(path)
    try:
        if path.parent.is_symlink():
            raise SubmissionError("not_regular", f"the folder of {path.name} is a symbolic link; submit the notebook "
                                                 "itself")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            raise SubmissionError("missing", f"{path.name} was not found in the submission") from None
        except OSError as err:
            if path.is_symlink():
                raise SubmissionError("not_regular", f"{path.name} is a symbolic link, not a notebook; submit the "
                                                     "notebook itself") from None
            raise SubmissionError("not_json", f"{path.name} could not be opened ({type(err).__name__})") from None
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise SubmissionError("not_regular", f"{path.name} is not a regular file")
            if info.st_size > MAX_NOTEBOOK_MB * 2**20:
                raise SubmissionError("too_large", f"{path.name} is larger than {MAX_NOTEBOOK_MB} MB")
            data = f.read(MAX_NOTEBOOK_MB * 2**20 + 1)
        if len(data) > MAX_NOTEBOOK_MB * 2**20:
            raise SubmissionError("too_large", f"{path.name} is larger than {MAX_NOTEBOOK_MB} MB")
        return json.loads(data.decode("utf-8"))
    except SubmissionError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        why = f"{type(err).__name__}: {str(err)[:200]}"
        raise SubmissionError("not_json", f"{path.name} is not a readable notebook ({why})") from None


def submitted_cells(path: Path) -> list[Cell]:
    """The cells of a submitted notebook, or SubmissionError saying why there are none."""
    return _cells(read_submission(path))


def read_source(path: Path) -> Source:
    """The instructor's source notebook: its cells, test cells with points, and where each function is defined."""
    cells = _cells(json.loads(Path(path).read_text(encoding="utf-8")))
    tests = {c.grade_id: c.points for c in cells if c.kind == "test" and c.grade_id and c.cell_type == "code"}
    defined_in = {}
    for c in cells:
        if c.kind == "solution" and c.cell_type == "code" and c.grade_id:
            for name in top_level_names(c.text):
                defined_in.setdefault(name, c.grade_id)
    return Source(cells, tests, defined_in)


def top_level_names(code: str | ast.Module) -> list[str]:
    """Names bound at the top level of a cell (def, class, assignment, import)."""
    try:
        tree = code if isinstance(code, ast.Module) else ast.parse(strip_magics(code))
    except (SyntaxError, ValueError, RecursionError):
        return []
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [t.id for t in targets if isinstance(t, ast.Name)]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names += [(a.asname or a.name).split(".")[0] for a in node.names]
    return names


_MAGIC = re.compile(r"^(\s*)(?:[%!]|[\w.]+\s*=\s*[%!])")
_KEEP_CELL_MAGICS = ("%%time", "%%timeit", "%%capture")


def strip_magics(code: str) -> str:
    """Code without IPython magics and shell escapes (``%...``, ``!...``, ``x = !ls``).

    A cell magic other than %%time / %%capture means the cell is not Python: it is dropped.
    """
    lines = code.splitlines()
    if lines and lines[0].lstrip().startswith("%%"):
        if not lines[0].lstrip().startswith(_KEEP_CELL_MAGICS):
            return ""
        lines = lines[1:]
    out = []
    for line in lines:
        match = _MAGIC.match(line)
        out.append(f"{match.group(1)}pass  # magic removed" if match else line)
    return "\n".join(out)


def build_script(source: Source, submitted: list[Cell]) -> Script:
    """The code to run, in order, with notes on deleted, duplicated and edited cells."""
    by_id = source.by_id()
    script = Script(cells=[], student_cells=[])
    done: set[str] = set()
    edited: list[str] = []
    restored: list[str] = []

    def restore_locked_before(position: int) -> None:
        for cell in source.cells[:position]:
            locked_code = cell.cell_type == "code" and cell.kind in ("locked", "other")
            if locked_code and cell.grade_id and cell.grade_id not in done:
                done.add(cell.grade_id)
                restored.append(cell.grade_id)
                script.cells.append((cell.grade_id, strip_magics(cell.text)))

    for number, cell in enumerate(submitted, start=1):
        if cell.cell_type != "code":
            continue
        match = by_id.get(cell.grade_id) if cell.grade_id else None
        if match is None:  # a cell the student added (or renamed)
            label = cell.grade_id or f"#{number} (added)"
            script.cells.append((label, strip_magics(cell.text)))
            script.student_cells.append((label, cell.text))
            continue
        position, original = match
        if original.grade_id in done:
            if original.grade_id in restored:  # moved further down, not deleted: it already ran in place
                restored.remove(original.grade_id)
            else:
                script.duplicates.append(original.grade_id)
            continue
        restore_locked_before(position)
        done.add(original.grade_id)
        if original.kind == "test":
            continue
        if original.kind == "solution":
            script.cells.append((original.grade_id, strip_magics(cell.text)))
            script.student_cells.append((original.grade_id, cell.text))
        else:
            if cell.text.strip() != original.text.strip():
                edited.append(original.grade_id)
            script.cells.append((original.grade_id, strip_magics(original.text)))
    restore_locked_before(len(source.cells))

    for c in source.cells:
        if c.cell_type == "code" and c.grade_id not in done:
            if c.kind == "solution":
                script.deleted.append(c.grade_id)
            elif c.kind == "test":
                script.missing_tests.append(c.grade_id)
    if edited:
        script.notes.append(f"locked cell(s) {', '.join(edited)} were edited; the original code was run instead")
    if restored:
        script.notes.append(f"locked cell(s) {', '.join(restored)} were missing; the original code was run in place")
    return script


# ---------------------------------------------------------------------------- cells the scoring child may skip

_OPAQUE_NAMES = {"globals", "locals", "vars", "exec", "eval", "__main__", "__name__"}  # reach names unnamed
_OPAQUE_ATTRIBUTES = {"__dict__", "__globals__", "f_globals", "f_locals", "f_back", "_getframe", "currentframe",
                      "__main__"}


def _base_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _global_uses(table: symtable.SymbolTable, top: bool = True) -> set[str]:
    """The names a cell reads from the notebook's namespace, in its own code or in the functions it defines."""
    names = {sym.get_name() for sym in table.get_symbols()
             if sym.is_referenced() and (top or sym.is_global())}
    for child in table.get_children():
        names |= _global_uses(child, top=False)
    return names


def _bindings(code: str, tree: ast.Module, modules: set[str]) -> tuple[set[str], set[str]] | None:
    """(names the cell may bind or change, names it reads), or None when that cannot be read from its text
    (a star import, globals(), exec, ...). A change: assignment, import, def, ``del``,
    ``x.a = ...``, ``x[i] = ...``, or a method call ``x.f(...)`` on anything but an imported name
    (``model.eval()``); read: a name the cell or one of its functions looks up in the notebook's namespace."""
    try:
        table = symtable.symtable(code, "<cell>", "exec")
    except (SyntaxError, ValueError, RecursionError):
        return None
    bound = {sym.get_name() for sym in table.get_symbols() if sym.is_assigned() or sym.is_imported()
             or sym.is_namespace()}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in _OPAQUE_NAMES:
            return None
        if isinstance(node, ast.Attribute) and node.attr in _OPAQUE_ATTRIBUTES:
            return None
        if isinstance(node, ast.Constant) and node.value == "__main__":  # sys.modules["__main__"]
            return None
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any(a.name in ("*", "__main__") for a in node.names):
            return None
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            bound.update(node.names)
            continue
        if isinstance(node, (ast.Attribute, ast.Subscript)) and not isinstance(node.ctx, ast.Load):
            base = _base_name(node)  # a store changes even a module (torch.backends... = ...)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            base = _base_name(node.func)  # x.f(...) may change x, unless x is a module (np.mean(...))
            base = None if base in modules else base
        else:
            continue
        if base is not None:
            bound.add(base)
    return bound, _global_uses(table)


def scoring_cells(script: Script, experiments: Iterable[str] = ()) -> tuple[list[tuple[str, str]], list[str]]:
    """The cells the scoring child runs, and the labels of the ``experiments`` it skips.

    The graded functions are called after every cell has run, so what matters of the instructor's cells is the
    names they leave behind. ``experiments`` are instructor's cells that only train, print or plot for the reader
    (the caller vouches that they change no module state but the random generators, which the child reseeds
    before each probe). One of them is skipped unless
    it binds or changes a name that a running cell reads (to a fixed point); every other cell runs. Anything the
    text cannot tell (a syntax error, a star import, ``globals()``, ``exec``) runs everything."""
    experiments = set(experiments) - {label for label, _ in script.student_cells}
    try:
        trees = [ast.parse(code) for _, code in script.cells]
    except (SyntaxError, ValueError, RecursionError):
        return script.cells, []
    modules = {(a.asname or a.name).split(".")[0] for tree in trees for node in ast.walk(tree)
               if isinstance(node, (ast.Import, ast.ImportFrom)) for a in node.names}
    info = [_bindings(code, tree, modules) for (_, code), tree in zip(script.cells, trees)]
    if not experiments or any(names is None for names in info):
        return script.cells, []
    run = [label not in experiments for label, _ in script.cells]
    wanted = set().union(*(used for keep, (_, used) in zip(run, info) if keep))
    changed = True
    while changed:
        changed = False
        for i, (bound, used) in enumerate(info):
            if not run[i] and bound & wanted:
                run[i], changed = True, True
                wanted |= used
    return ([cell for cell, keep in zip(script.cells, run) if keep],
            [label for (label, _), keep in zip(script.cells, run) if not keep])
