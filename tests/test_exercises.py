"""Every lab's graded exercises, checked in this process on their own examples (autograder/exercises/<lab>.py).

For each exercise: the source notebook's solution gets full marks from the judge's
checks, each declared solution too, each classic mistake exactly its share with its
message, and the student-visible self-check (the test cell's visible part) accepts
the solution and rejects the demo mistake. Hostile examples need the jail's runtime
tripwires and are graded through the real judge (tests/test_judge.py for lab 1's
mini notebook, tests/test_grading_e2e.py for every lab). Nothing here types a score.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from autograder import exercises
from autograder.course import Labs
from autograder.exercises import kit
from autograder.exercises.kit import examples

LABS = [lab for lab in Labs().names() if exercises.load(lab)]
EXERCISES = [(lab, ex) for lab in LABS for ex in exercises.load(lab).values()]
MISTAKES = [(lab, ex, m) for lab, ex in EXERCISES for m in ex.mistakes]
SOLUTIONS = [(lab, ex, s) for lab, ex in EXERCISES for s in ex.solutions]
# exercises whose probes train or plot: too slow to grade forty times
SLOW = {"supervised_encoder_test", "probe_test", "model_rsms_test", "rsm_histogram_test"}


def _id(value):
    return getattr(value, "grade_id", None) or getattr(value, "label", None) or str(value)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_every_lab_with_a_notebook_has_exercises():
    assert LABS == [lab for lab in Labs().names() if exercises.load(lab)]
    assert {"lab1_autoencoders", "lab4_representations"} <= set(LABS)


@pytest.mark.parametrize("lab, exercise", EXERCISES, ids=_id)
def test_the_function_is_defined_at_the_top_level_of_a_solution_cell(lab, exercise):
    assert examples.solution_cell_of(exercise, Labs().source(lab))
    assert exercise.checks and exercise.total_weight > 0


@pytest.mark.parametrize("lab, exercise", EXERCISES, ids=_id)
def test_the_source_solution_gets_full_marks(lab, exercise):
    score, notes = examples.grade(exercise, Labs().source(lab))
    assert score == pytest.approx(1.0), notes


@pytest.mark.parametrize("lab, exercise, solution", SOLUTIONS, ids=_id)
def test_declared_solutions_get_full_marks(lab, exercise, solution):
    score, notes = examples.grade(exercise, Labs().source(lab), solution)
    assert score == pytest.approx(1.0), notes


@pytest.mark.parametrize("lab, exercise, mistake", MISTAKES, ids=_id)
def test_a_mistake_gets_its_share_and_its_message(lab, exercise, mistake):
    score, notes = examples.grade(exercise, Labs().source(lab), mistake)
    assert score == pytest.approx(mistake.share, abs=1e-3), notes
    assert any(mistake.message in note for note in notes), notes


@pytest.mark.parametrize("lab, exercise, mistake", [m for m in MISTAKES if m[1].grade_id not in SLOW], ids=_id)
def test_a_mistake_scores_the_same_on_every_seed(lab, exercise, mistake):
    """The judge draws fresh inputs per submission: a given answer must earn the same share whatever they are
    (a CI run once gave the unnormalized NT-Xent an extra half point on a lucky draw)."""
    function = examples.function_of(exercise, Labs().source(lab), mistake)
    shares = {round(examples.grade_in_process(exercise, function, seed=seed)[0], 6) for seed in range(40)}
    assert len(shares) == 1 and shares.pop() == pytest.approx(mistake.share, abs=1e-3)


@pytest.mark.parametrize("lab, exercise", EXERCISES, ids=_id)
def test_the_self_check_accepts_the_solution(lab, exercise):
    source = Labs().source(lab)
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        exec(examples.visible_test(exercise, source), examples.namespace(source))
    assert printed.getvalue().strip(), "a passing self-check says so"


@pytest.mark.parametrize("lab, exercise, mistake", [m for m in MISTAKES if m[2].self_check], ids=_id)
def test_the_self_check_rejects_the_mistake(lab, exercise, mistake):
    source = Labs().source(lab)
    scope = examples.namespace(source, {examples.solution_cell_of(exercise, source): mistake.code})
    with pytest.raises(AssertionError), contextlib.redirect_stdout(io.StringIO()):
        exec(examples.visible_test(exercise, source), scope)


def test_the_worked_example_in_the_tas_checklist_grades_as_it_says():
    readme = (Path(exercises.__file__).parent / "README.md").read_text()
    code = readme.split("```python\n")[1].split("```")[0]
    assert len(code.strip().splitlines()) <= 15
    scope = {"np": np, "kit": kit, "Example": kit.Example, "Exercise": kit.Exercise}
    exec(code, scope)
    exercise = scope["SQUARE_SUM"]
    assert examples.grade_in_process(exercise, lambda x: (x ** 2).sum())[0] == 1.0
    wrong = {}
    exec(exercise.mistakes[0].code, wrong)
    score, notes = examples.grade_in_process(exercise, wrong["square_sum"])
    assert score == exercise.mistakes[0].share and exercise.mistakes[0].message in notes[0]


# ---------------------------------------------------------------------------- degenerate answers

def _degenerate(kind: str):
    """An answer that ignores what it is asked: built from its first tensor argument (or, for a builder with no
    tensor argument, a module that does the same to its input)."""
    def transform(t: torch.Tensor):
        t = t.float()
        return {"constant": (t * 1e-3).sum() - (t * 1e-3).sum().detach() + 1.2345,  # a fake gradient, too
                "zeros": torch.zeros_like(t), "zero": t.sum() * 0,
                "identity": torch.eye(len(t)) if len(t) <= 2048 else torch.eye(*t.shape[:2]),  # (N, N), kept small
                "echo": t, "nan": torch.full_like(t, float("nan")), "inf": torch.full_like(t, float("inf")),
                "nan_scalar": t.sum() * float("nan"), "inf_scalar": t.sum() + float("inf"),
                "random": torch.randn_like(t), "random_scalar": torch.randn(()) + t.sum() * 0}[kind]

    class Degenerate(torch.nn.Module):
        def forward(self, x):
            return transform(x), transform(x)

    def answer(*args, **kwargs):
        tensors = [a for a in [*args, *kwargs.values()] if isinstance(a, torch.Tensor)]
        return transform(tensors[0]) if tensors else Degenerate()

    return answer


DEGENERATE = ["constant", "zeros", "zero", "identity", "echo", "nan", "inf", "nan_scalar", "inf_scalar", "random",
              "random_scalar"]


@pytest.mark.parametrize("lab, exercise", EXERCISES, ids=_id)
def test_no_degenerate_answer_earns_anything(lab, exercise):
    """Constant, zero, identity, echo, NaN, infinite and random answers score 0: never above an honest wrong
    answer (the untouched stub scores 0). Every exercise of every lab, present and future (the slow ones, whose
    probes train or plot, on one draw)."""
    for kind in DEGENERATE:
        for seed in range(1 if exercise.grade_id in SLOW else 3):
            score, notes = examples.grade_in_process(exercise, _degenerate(kind), seed=seed)
            assert score == 0.0, (kind, seed, notes)


def test_a_shipped_encoder_returned_as_trained_earns_nothing():
    """Pre-made results: the shipped supervised encoder (whose file a submission could carry) with its accuracy."""
    from labkit import pretrained

    exercise = exercises.load("lab4_representations")["supervised_encoder_test"]
    score, notes = examples.grade_in_process(
        exercise, lambda *args, **kwargs: (pretrained.load_encoder("supervised", device="cpu"), 97.5), seed=0)
    assert score == 0.0 and "shipped 'supervised' encoder" in notes[0], notes


def test_the_stubs_leave_no_reference_to_call(tmp_path):
    """In the scoring child's copy of labkit, each forbidden reference raises however it is reached."""
    import shutil
    import subprocess
    import sys

    import labkit
    from autograder.judge.stubs import stub_references

    lib = tmp_path / "lib"
    shutil.copytree(Path(labkit.__file__).parent, lib / "labkit", ignore=shutil.ignore_patterns("*.pt"))
    forbidden = sorted({ref for _, ex in EXERCISES for ref in ex.forbidden})
    assert stub_references(lib, forbidden) == []
    probe = f"""
import copy, importlib, inspect, sys
sys.path.insert(0, {str(lib)!r})
failures = []
for reference in {forbidden!r}:
    module_name, _, name = reference.rpartition(".")
    module = importlib.import_module(module_name)
    ways = [getattr(module, name), inspect.unwrap(getattr(module, name))]
    scope = {{"__name__": module.__name__, "__package__": module.__package__, "__file__": module.__file__}}
    exec(compile(open(module.__file__).read(), module.__file__, "exec"), scope)  # its own source file
    ways.append(scope[name])
    ways.append(getattr(importlib.reload(module), name))
    for way in ways:
        try:
            way(*[None] * 4) if not isinstance(way, type) else way()
            failures.append(reference)
        except RuntimeError as err:
            assert "is not available while your notebook is graded" in str(err)
        except TypeError:
            pass  # a stub with fewer parameters: it still cannot compute anything
print(failures)
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr[-2000:]


def test_lab4s_figure_is_graded_with_the_reference_rsm():
    """A wrong custom_torch_RSM_fct, in its own cell, costs its points in rsm_test only: plot_model_rsms, which calls
    it, is graded (and self-checked) with the reference RSM in its place, and the student's RSM is back afterwards."""
    lab = "lab4_representations"
    source, graded = Labs().source(lab), exercises.load(lab)
    wrong_rsm = graded["rsm_test"].demo_mistake
    scope = examples.namespace(source, {examples.solution_cell_of(graded["rsm_test"], source): wrong_rsm.code})
    student_rsm = scope["custom_torch_RSM_fct"]
    assert examples.grade_in_process(graded["rsm_test"], student_rsm, seed=0)[0] == pytest.approx(wrong_rsm.share)
    score, notes = examples.grade_in_process(graded["model_rsms_test"], scope["plot_model_rsms"], seed=0)
    assert score == pytest.approx(1.0), notes
    assert scope["custom_torch_RSM_fct"] is student_rsm
    with contextlib.redirect_stdout(io.StringIO()):
        exec(examples.visible_test(graded["model_rsms_test"], source), scope)
    assert scope["custom_torch_RSM_fct"] is student_rsm


def test_a_predicate_held_by_the_gate_and_a_check_runs_once_per_submission():
    from autograder.judge.evidence import Evidence
    from autograder.judge.grade import score_checks

    calls = []

    def expensive(ev):  # stands for a reference trained on the case
        calls.append(ev)
        return None if ev.get("a", "y") > 0 else "not positive"

    ex = kit.Exercise(grade_id="t_test", function="f", cases=lambda rng: {"a": {}}, probe=lambda f, a: {},
                      checks=[kit.holds(1.0, expensive), kit.holds(1.0, lambda ev: None)],
                      gate=kit.holds(0, kit.all_pass(kit.holds(0, expensive))))
    for y, score in ((1.0, 1.0), (-1.0, 0.0)):
        before = len(calls)
        assert score_checks(ex, 1.0, Evidence("f", {"a": {}}, {"a": {"y": np.array(y)}}, {}))[0] == score
        assert len(calls) == before + 1
