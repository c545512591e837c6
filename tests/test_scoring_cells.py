"""Which of the instructor's cells the scoring child skips (autograder.judge.notebook.scoring_cells)."""
from __future__ import annotations

from autograder import exercises
from autograder.course import Labs
from autograder.judge.notebook import Script, build_script, read_source, scoring_cells

SETUP = "import torch\nfrom labkit import training"


def script(student: dict[str, str], locked: dict[str, str]) -> Script:
    cells = [("setup", SETUP), *locked.items(), *student.items()]
    return Script(cells=cells, student_cells=list(student.items()))


def run_labels(s: Script, experiments) -> list[str]:
    return [label for label, _ in scoring_cells(s, experiments)[0]]


def test_an_experiment_nobody_reads_is_skipped_and_a_plain_cell_runs():
    s = script({"answer": "def f(x):\n    return torch.relu(x) * SCALE"},
               {"config": "SCALE = 2", "experiment": "acc = training.train_classifier(None)\nprint(acc)",
                "table": "print(acc)"})
    assert run_labels(s, ["experiment", "table"]) == ["setup", "config", "answer"]
    assert run_labels(s, []) == ["setup", "config", "experiment", "table", "answer"]


def test_an_experiment_runs_when_a_running_cell_reads_what_it_binds_to_a_fixed_point():
    s = script({"answer": "def f(x):\n    return x * model_scale"},
               {"data": "images = torch.zeros(3)", "train": "model_scale = float(images.sum())",
                "plot": "print(model_scale)"})
    assert run_labels(s, ["data", "train", "plot"]) == ["setup", "data", "train", "answer"]


def test_a_method_call_or_item_assignment_counts_as_changing_the_object():
    s = script({"answer": "def f():\n    return encoder"},
               {"make": "encoder = torch.nn.Linear(2, 2)", "mode": "encoder.eval()",
                "item": "table = {}", "fill": "table['x'] = 1", "use": "print(table)"})
    assert run_labels(s, ["mode", "item", "fill", "use"]) == ["setup", "make", "mode", "answer"]


def test_what_the_text_cannot_tell_runs_everything():
    for opaque in ("g = globals()['acc']", "exec('print(1)')", "from math import *", "def f(:",
                   "import sys\ng = sys.modules['__main__'].acc", "import sys\ng = sys._getframe().f_globals"):
        s = script({"answer": opaque}, {"experiment": "acc = 1"})
        assert run_labels(s, ["experiment"]) == ["setup", "experiment", "answer"], opaque


def test_a_student_cell_is_never_skipped():
    s = script({"answer": "x = 1"}, {})
    assert run_labels(s, ["answer"]) == ["setup", "answer"]


def test_each_labs_experiments_are_its_locked_cells_and_the_solution_skips_them():
    labs = Labs()
    for lab in labs.names():
        listed = exercises.experiments(lab)
        if not listed:
            continue
        source = read_source(labs.source(lab))
        locked = {c.grade_id for c in source.cells if c.cell_type == "code" and c.kind in ("locked", "other")}
        assert set(listed) <= locked, f"{lab}: EXPERIMENTS names cells that are not locked: {set(listed) - locked}"
        cells, skipped = scoring_cells(build_script(source, source.cells), listed)
        assert set(skipped) == set(listed), f"{lab}: the solution reads what {set(listed) - set(skipped)} bind"
