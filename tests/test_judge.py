"""The judge (autograder/judge): exact scores for correct, broken and hostile submissions.

Each test grades a small synthetic lab-1 notebook (two graded functions:
``vae_loss`` 3 points, ``interpolate`` 1 point) built here with nbformat from
lab 1's own solution cells and examples (autograder/exercises/lab1_autoencoders.py).
Hostile submissions are graded at the same time as a correct one (two threads,
two children), and both scores are asserted: an attack earns nothing and
disturbs nobody else. Every lab's exercises are checked in-process on their
examples in tests/test_exercises.py.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from itertools import zip_longest

import nbformat
import pytest

from tests.fixtures.processes import processes_with

from autograder import exercises
from autograder.course import Labs
from autograder.exercises import judge_lab
from autograder.exercises.kit.examples import solution_cells
from autograder.judge import Isolation
from autograder.judge.scoring_jail import capabilities

LAB = "lab1_autoencoders"
FULL = {"vae_loss_test": 3.0, "interpolate_test": 1.0}
ZERO = {"vae_loss_test": 0.0, "interpolate_test": 0.0}
LIMITS = {"time_limit_s": 60, "memory_limit_mb": 2048}
VAE, INTERP = (exercises.load(LAB)[gid] for gid in FULL)

SETUP = "import numpy as np\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"
_SOLUTIONS = solution_cells(Labs().source(LAB))
VAE_OK, INTERP_OK = _SOLUTIONS["vae_loss_solution"] + "\n", _SOLUTIONS["interpolate_solution"] + "\n"
VAE_STUB = "def vae_loss(x_recon, x, mu, logvar):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"
INTERP_STUB = "def interpolate(z_start, z_end, num_steps):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"
CORRECT = {"vae_loss_solution": VAE_OK, "interpolate_solution": INTERP_OK}
STUBS = {"vae_loss_solution": VAE_STUB, "interpolate_solution": INTERP_STUB}
VISIBLE_TEST = "from labkit import checks\nchecks.check_{}({})\n"
HIDDEN = "### BEGIN HIDDEN TESTS\nassert True\n### END HIDDEN TESTS\n"


def _cell(kind: str, grade_id: str, text: str, points: float = 0):
    cell = nbformat.v4.new_code_cell(text)
    cell.metadata["nbgrader"] = {"grade": kind == "test", "grade_id": grade_id, "locked": kind != "solution",
                                 "schema_version": 3, "solution": kind == "solution"}
    if kind == "test":
        cell.metadata["nbgrader"]["points"] = points
    return cell


def _notebook(solutions: dict[str, str]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A mini lab 1"),
        _cell("locked", "setup", SETUP),
        _cell("solution", "vae_loss_solution", solutions["vae_loss_solution"]),
        _cell("test", "vae_loss_test", VISIBLE_TEST.format("vae_loss", "vae_loss") + HIDDEN, 3),
        _cell("solution", "interpolate_solution", solutions["interpolate_solution"]),
        _cell("test", "interpolate_test", VISIBLE_TEST.format("interpolate", "interpolate") + HIDDEN, 1),
        _cell("locked", "goodbye", "print('done')\n"),
    ]
    return nb


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("source") / f"{LAB}.ipynb"
    nbformat.write(_notebook({k: f"{v}    ### BEGIN SOLUTION\n    ### END SOLUTION\n" for k, v in CORRECT.items()}),
                   path)
    return path


def submit(folder: Path, solutions: dict | None = None, before: list[str] = (), after: list[str] = (),
           edit=None) -> Path:
    """A student's notebook in its own folder: solution cells filled in, cells (no metadata) added before/after."""
    nb = _notebook({**CORRECT, **(solutions or {})})
    nb.cells = ([nb.cells[0], nb.cells[1]] + [nbformat.v4.new_code_cell(c) for c in before] + nb.cells[2:]
                + [nbformat.v4.new_code_cell(c) for c in after])
    if edit:
        edit(nb.cells)
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / f"{LAB}.ipynb")
    return folder / f"{LAB}.ipynb"


def scores(verdicts) -> dict[str, float]:
    return {gid: v.score for gid, v in verdicts.items()}


def messages(verdicts, gid: str) -> str:
    return " | ".join(verdicts[gid].messages)


def grade_with_correct(source: Path, tmp_path: Path, *hostile: Path, **limits):
    """Grade the hostile notebooks and a correct one concurrently; the correct one must get full marks."""
    correct = submit(tmp_path / "correct_student")
    with ThreadPoolExecutor(2) as pool:
        jobs = [pool.submit(judge_lab, LAB, nb, source=source, **{**LIMITS, **limits})
                for nb in (correct, *hostile)]
        results = [job.result()[0] for job in jobs]
    assert scores(results[0]) == FULL, results[0]
    return results[1:] if len(results) > 2 else results[1]


# ---------------------------------------------------------------------------- plain submissions

def test_correct_gets_full_marks_and_stubs_get_zero(source, tmp_path):
    stubs = grade_with_correct(source, tmp_path, submit(tmp_path / "s", STUBS))
    assert scores(stubs) == ZERO
    assert "NotImplementedError" in messages(stubs, "vae_loss_test")


def grade_pairs(source: Path, tmp_path: Path, vae_examples, interp_examples):
    """lab 1's examples of vae_loss and interpolate, in pairs, each pair one submission graded by the real judge
    (next to a correct one): [(verdicts, (vae example or None, interpolate example or None)), ...]."""
    pairs = list(zip_longest(vae_examples, interp_examples))
    notebooks = [submit(tmp_path / f"s{i}", {cell: example.code for cell, example in
                                              (("vae_loss_solution", vae), ("interpolate_solution", interp)) if example})
                 for i, (vae, interp) in enumerate(pairs)]
    graded = grade_with_correct(source, tmp_path, *notebooks)
    return [(verdicts, dict(zip(FULL, examples))) for verdicts, examples in zip(graded if len(pairs) > 1 else [graded],
                                                                                 pairs)]


def test_classic_mistakes_get_exact_partial_credit_and_name_the_mistake(source, tmp_path):
    for verdicts, examples in grade_pairs(source, tmp_path, VAE.mistakes, INTERP.mistakes):
        for gid, example in examples.items():
            if example is not None:
                assert verdicts[gid].score == pytest.approx(FULL[gid] * example.share, abs=1e-3), example.label
                assert example.message in messages(verdicts, gid), example.label


# ---------------------------------------------------------------------------- forged results

def test_patched_comparisons_earn_nothing(source, tmp_path):
    mistake = VAE.mistakes[0]
    patch = ("import numpy, torch\ntorch.allclose = lambda *a, **k: True\nnumpy.allclose = lambda *a, **k: True\n"
             "torch.Tensor.__eq__ = lambda *a: torch.tensor(True)\nassert torch.allclose(torch.zeros(1), torch.ones(1))\n")
    hostile = grade_with_correct(source, tmp_path, submit(tmp_path / "h", {"vae_loss_solution": mistake.code},
                                                          after=[patch]))
    assert scores(hostile) == pytest.approx({"vae_loss_test": 3.0 * mistake.share, "interpolate_test": 1.0}, abs=1e-3)


def test_always_equal_objects_score_zero(source, tmp_path):
    cls = "class Same:\n    __eq__ = lambda self, other: True\n    __float__ = lambda self: 0.0\n    shape = (3,)\n"
    hostile = grade_with_correct(source, tmp_path, submit(tmp_path / "h", {
        "vae_loss_solution": cls + "def vae_loss(x_recon, x, mu, logvar):\n    return Same()\n",
        "interpolate_solution": cls + "def interpolate(z_start, z_end, num_steps):\n    return Same()\n"}))
    assert scores(hostile) == ZERO
    assert "should be a torch.Tensor, got Same" in messages(hostile, "vae_loss_test")


def test_suppressed_tracebacks_change_nothing(source, tmp_path):
    quiet = "import os, sys\nsys.excepthook = lambda *a: None\nsys.stderr = open(os.devnull, 'w')\n"
    hostile = grade_with_correct(source, tmp_path, submit(tmp_path / "h", {"interpolate_solution": INTERP_STUB},
                                                          before=[quiet]))
    assert scores(hostile) == {"vae_loss_test": 3.0, "interpolate_test": 0.0}
    assert "NotImplementedError" in messages(hostile, "interpolate_test")


def test_hostile_examples_earn_at_most_their_share(source, tmp_path):
    """lab 1's declared hostile answers of vae_loss and interpolate (delegation in disguise, hard-coded answers,
    answers replayed from inputs read at cell time) through the real judge: stubs and fresh inputs in force."""
    for verdicts, examples in grade_pairs(source, tmp_path, VAE.hostile, INTERP.hostile):
        for gid, example in examples.items():
            if example is not None:
                assert verdicts[gid].score <= FULL[gid] * example.share + 1e-9, example.label
                assert example.message in messages(verdicts, gid), example.label


# ---------------------------------------------------------------------------- the child misbehaves

def test_exit_and_kill_in_a_cell(source, tmp_path):
    exits = ["import sys\nsys.exit()\n", "import os\nos._exit(0)\n", "import os, signal\nos.kill(os.getpid(), 9)\n"]
    start = time.monotonic()
    soft, hard, killed = grade_with_correct(source, tmp_path, *[submit(tmp_path / f"h{i}", after=[code])
                                                                  for i, code in enumerate(exits)])
    assert time.monotonic() - start < 60
    assert scores(soft) == FULL  # SystemExit is an exception like any other: the next cells still run
    assert scores(hard) == scores(killed) == ZERO  # the process died before anything was checked
    assert "exited with code 0" in messages(hard, "vae_loss_test")
    assert "killed (signal 9" in messages(killed, "interpolate_test")


def test_infinite_loops_hit_the_time_limits(source, tmp_path):
    in_function = INTERP_OK.replace("    t =", "    while True:\n        pass\n    t =")
    stubborn = "import time\nwhile True:\n    try:\n        time.sleep(0.5)\n    except BaseException:\n        pass\n"
    start = time.monotonic()
    slow_function, stubborn_cell = grade_with_correct(
        source, tmp_path, submit(tmp_path / "a", {"interpolate_solution": in_function}),
        submit(tmp_path / "b", after=[stubborn]), time_limit_s=20)
    assert time.monotonic() - start < 45
    assert scores(slow_function) == {"vae_loss_test": 3.0, "interpolate_test": 0.0}
    assert "did not finish within 10 s" in messages(slow_function, "interpolate_test")
    assert scores(stubborn_cell) == ZERO
    assert "ran past the time limit of 20 s" in messages(stubborn_cell, "vae_loss_test")


def test_memory_bombs_hit_the_memory_limit(source, tmp_path):
    cell_bomb = """def bomb():
    blocks = []
    for _ in range(200):
        blocks.append(bytearray(100 * 2**20))  # 20 GB in all

bomb()
"""
    in_function = VAE_OK.replace("    bce =", "    hog = torch.ones(2**33)\n    bce =")  # 32 GB
    hostile = grade_with_correct(source, tmp_path, submit(tmp_path / "h", {"vae_loss_solution": in_function},
                                                          before=[cell_bomb]), memory_limit_mb=1536)
    assert scores(hostile) == {"vae_loss_test": 0.0, "interpolate_test": 1.0}
    assert "can't allocate memory" in messages(hostile, "vae_loss_test")


def test_output_floods_are_bounded(source, tmp_path):
    floods = ["print('x' * 10**8)\n", "import os\nos.write(1, b'y' * 10**8)\n",
              "import sys\nfor _ in range(1000):\n    sys.stderr.write('z' * 10**5)\n"]
    start = time.monotonic()
    hostile = grade_with_correct(source, tmp_path, submit(tmp_path / "h", before=floods))
    assert scores(hostile) == FULL
    assert time.monotonic() - start < 60


def test_warnings_on_stderr_cost_nothing(source, tmp_path):
    noisy = VAE_OK.replace("    bce =", "    import warnings\n    warnings.warn('deprecated!')\n"
                                        "    torch.tensor(torch.zeros(1))  # torch's UserWarning about copying\n    bce =")
    hostile = grade_with_correct(source, tmp_path, submit(tmp_path / "h", {"vae_loss_solution": noisy}))
    assert scores(hostile) == FULL


# ---------------------------------------------------------------------------- the child reaches out

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the child can only be confined when grading as root")


@needs_root
def test_reading_the_source_notebook_and_repository_is_prevented(source, tmp_path):
    repo = Path(__file__).resolve().parents[1]
    paths = [str(source), str(repo / "labkit" / "losses.py"), str(repo / "README.md")]
    probe = f"""readable = []
for path in {paths!r}:
    try:
        open(path).read(1)
        readable.append(path)
    except OSError:
        pass
if not readable:  # signal the outcome through the score
    def interpolate(z_start, z_end, num_steps):
        raise PermissionError('nothing readable')
"""
    hostile = grade_with_correct(source, tmp_path, submit(tmp_path / "h", after=[probe]))
    expected = 0.0 if capabilities().jail else 1.0  # without namespaces, only file permissions protect them
    assert scores(hostile) == {"vae_loss_test": 3.0, "interpolate_test": expected}


@needs_root
def test_writing_outside_its_folder_fails(source, tmp_path):
    gradebook = tmp_path / "course" / "gradebook.db"
    gradebook.parent.mkdir()
    gradebook.write_bytes(b"SQLite format 3\x00 grades")
    gradebook.chmod(0o666)  # even a world-writable file is out of reach
    targets = [str(gradebook), str(tmp_path / "course" / "new.txt"), str(source.parent / "x.ipynb")]
    probe = f"""written = []
for path in {targets!r}:
    try:
        open(path, 'a').write('hacked')
        written.append(path)
    except OSError:
        pass
if written:  # signal the outcome through the score
    def interpolate(z_start, z_end, num_steps):
        raise RuntimeError(written)
"""
    hostile = grade_with_correct(source, tmp_path, submit(tmp_path / "h", after=[probe]))
    assert scores(hostile) == FULL  # every write failed
    assert gradebook.read_bytes() == b"SQLite format 3\x00 grades"
    assert not (tmp_path / "course" / "new.txt").exists() and not (source.parent / "x.ipynb").exists()


def forking_cell() -> tuple[str, str]:
    """A cell leaving three sleepers that escape its process group, and the marker to find them by."""
    marker = f"{1000 + uuid.uuid4().int % 10**6}.5"  # a unique sleep duration
    return marker, f"""import os, subprocess
subprocess.Popen(['sleep', '{marker}'], start_new_session=True)
subprocess.Popen(['sh', '-c', '(sleep {marker} &) ; exit'])
if os.fork() == 0:
    os.setsid()
    os.execvp('sleep', ['sleep', '{marker}'])
"""


def test_processes_forked_by_the_student_are_killed(source, tmp_path):
    marker, forks = forking_cell()
    hostile = grade_with_correct(source, tmp_path, submit(tmp_path / "h", after=[forks]))
    assert scores(hostile) == FULL
    assert processes_with(marker) == []


# ---------------------------------------------------------------------------- broken notebooks

def test_corrupt_and_missing_notebooks_score_zero_with_a_reason(source, tmp_path):
    corrupt = tmp_path / "corrupt" / f"{LAB}.ipynb"
    corrupt.parent.mkdir()
    corrupt.write_text('{"cells": [ {"cell_type": "code", "source": "1 +')
    not_a_notebook = tmp_path / "list" / f"{LAB}.ipynb"
    not_a_notebook.parent.mkdir()
    not_a_notebook.write_text("[1, 2, 3]")
    bad, weird, missing = (judge_lab(LAB, nb, source=source, **LIMITS)[0]
                           for nb in (corrupt, not_a_notebook, tmp_path / "nobody" / f"{LAB}.ipynb"))
    assert scores(bad) == scores(weird) == scores(missing) == ZERO
    assert "not a readable notebook (JSONDecodeError" in messages(bad, "vae_loss_test")
    assert "JSON but not a notebook" in messages(weird, "interpolate_test")
    assert "was not found" in messages(missing, "vae_loss_test")
    assert {v.max_score for v in bad.values()} == {3.0, 1.0}  # points from the source, always


def test_deleted_and_duplicated_cells(source, tmp_path):
    def delete(cells):  # the interpolate solution cell, the vae_loss test cell and the locked setup cell
        cells[:] = [c for c in cells if c.metadata.get("nbgrader", {}).get("grade_id")
                    not in ("interpolate_solution", "vae_loss_test", "setup")]

    def copy(cell, **changes):
        return nbformat.from_dict({**json.loads(json.dumps(cell)), "id": uuid.uuid4().hex[:8], **changes})

    def duplicate(cells):  # a wrong second copy of a solution cell, and a copy of a test cell
        cells[3:3] = [copy(cells[2], source=VAE_STUB), copy(cells[3])]

    deleted, duplicated = grade_with_correct(source, tmp_path, submit(tmp_path / "a", edit=delete),
                                             submit(tmp_path / "b", edit=duplicate))
    assert scores(deleted) == {"vae_loss_test": 3.0, "interpolate_test": 0.0}
    assert "Cell interpolate_solution was deleted" in messages(deleted, "interpolate_test")
    assert "interpolate is not defined" in messages(deleted, "interpolate_test")
    assert "test cell vae_loss_test was deleted; it was graded from the original" in messages(deleted, "vae_loss_test")
    assert "locked cell(s) setup were missing; the original code was run in place" in messages(deleted, "vae_loss_test")
    assert scores(duplicated) == FULL
    assert "Cell vae_loss_solution appears more than once; only the first copy" in messages(duplicated, "vae_loss_test")
    assert "The test cell vae_loss_test appears more than once" in messages(duplicated, "vae_loss_test")


def test_edited_locked_cells_run_the_original_and_extra_cells_are_kept(source, tmp_path):
    def edit(cells):
        cells[1].source = "import torch\nF = None  # breaks vae_loss if it ran\n"  # the locked setup cell
        for cell in cells:
            if cell.metadata.get("nbgrader", {}).get("grade_id") == "interpolate_test":
                cell.source = "torch.allclose = lambda *a, **k: True\n"  # test cells never run

    helper = "def _kl(mu, logvar):\n    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())\n"
    uses_helper = VAE_OK.replace("-0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())", "_kl(mu, logvar)")
    hostile = grade_with_correct(source, tmp_path, submit(tmp_path / "h", {"vae_loss_solution": uses_helper},
                                                          before=[helper, "%matplotlib inline\n!ls\n"], edit=edit))
    assert scores(hostile) == FULL
    assert "locked cell(s) setup were edited; the original code was run" in messages(hostile, "vae_loss_test")


# ---------------------------------------------------------------------------- isolation and registry

def test_isolation_says_what_was_in_force(source, tmp_path):
    _, isolation = judge_lab(LAB, tmp_path / "missing.ipynb", source=source, **LIMITS)
    assert isinstance(isolation, Isolation) and isolation.separate_process
    assert isolation.memory_limit_mb == 2048 and isolation.time_limit_s == 60
    text = isolation.describe()
    assert "DATA 2048 MB" in text
    if capabilities().jail:
        assert "namespaces: mount, pid, net" in text and "fresh uid" in isolation.user


def test_without_namespaces_or_root_it_still_grades_and_says_so(source, tmp_path, monkeypatch):
    from autograder.judge import scoring_jail

    weak = scoring_jail.Capabilities(root=False, jail=False, drop_user=False, notes=("not root: (simulated)",))
    monkeypatch.setattr(scoring_jail, "capabilities", lambda: weak)
    marker, forks = forking_cell()
    patch = "import torch\ntorch.allclose = lambda *a, **k: True\n"
    hostile = grade_with_correct(source, tmp_path, submit(tmp_path / "s", {"vae_loss_solution": VAE_STUB},
                                                          after=[patch, forks]))
    assert scores(hostile) == {"vae_loss_test": 0.0, "interpolate_test": 1.0}
    assert processes_with(marker) == []  # found by the token in their environment
    _, isolation = judge_lab(LAB, tmp_path / "missing.ipynb", source=source, **LIMITS)
    assert "grader's own user" in isolation.user and "not root: (simulated)" in isolation.describe()


def test_a_notebook_that_is_a_symlink_is_refused(source, tmp_path):
    """A submitted notebook pointing at the course's source notebook (the solutions) is not read through."""
    folder = tmp_path / "linker"
    folder.mkdir()
    (folder / f"{LAB}.ipynb").symlink_to(source)
    linked = grade_with_correct(source, tmp_path, folder / f"{LAB}.ipynb")
    assert scores(linked) == ZERO
    assert "is a symbolic link" in messages(linked, "vae_loss_test")


def test_the_result_format_is_bounded():
    """A record that claims more than it holds, or more elements than allowed, ends the parse: nothing is allocated
    for it (the old npz channel let overlapping zip entries exhaust the grader's memory)."""
    import struct

    import numpy as np

    from autograder.judge.arrays import MAX_ELEMENTS, decode, encode

    good = encode({"a:x": np.arange(3.0)})
    lying = struct.pack("<H", 3) + b"a:y" + b"f" + struct.pack("<B", 2) + struct.pack("<2Q", 10**9, 10**9)
    huge = struct.pack("<H", 3) + b"a:z" + b"f" + struct.pack("<B", 1) + struct.pack("<Q", MAX_ELEMENTS + 1)
    for tail in (lying, huge + b"\0" * 64):
        found = decode(good + tail)
        assert list(found) == ["a:x"] and found["a:x"].tolist() == [0.0, 1.0, 2.0]
