"""End to end grading, in the style of nbgrader's own tests: a course directory in tmp_path,
known submissions, ``autograde``, then exact scores read back FROM THE GRADEBOOK.

Two courses:

- the fixture lab (tests/fixtures/labs, two exercises, 2 + 3 points, and one written
  answer) graded by a stand-in judge (tests/fixtures/fake_judge.py), with nbgrader's real
  kernel step in the sandbox: hostile and broken submissions must cost nobody anything;
- lab 1 with the real judge (autograder.judge), kernel step skipped to stay fast (the
  fixture course covers it): perfect, untouched, classic mistakes and forged submissions.
"""
from __future__ import annotations

import csv
import io
import sqlite3
import uuid
from pathlib import Path

import nbformat
import pytest

from tests.fixtures.processes import processes_with

from autograder.__main__ import main
from autograder.course import Course, Labs
from autograder.demo import hostile, mistake_submissions, perfect, submit, with_cells
from autograder.feedback import HideHiddenTests, feedback
from autograder.grading import autograde
from autograder.report import grade_rows
from autograder.feedback_jail import FeedbackJail, KernelLimits
from tests.fixtures import fake_judge

FIXTURE_LABS = Path(__file__).parent / "fixtures" / "labs"
LAB = "fixture_lab"
LIMITS = KernelLimits(cell_timeout=10, wall_timeout=120, memory_mb=2048)

SQUARE_OK = "def square_sum(x):\n    return (x ** 2).sum()\n"
# Hostile code that only acts in nbgrader's kernel (NBGRADER_EXECUTION is set there): the stand-in
# judge runs cells without a sandbox, the real judge has its own tests (tests/test_judge.py).
IN_KERNEL = "import os\nif os.environ.get('NBGRADER_EXECUTION'):\n"
GRADEBOOK_ATTACK = IN_KERNEL + """    for target in {targets!r}:
        try:
            with open(target, "wb") as f:
                f.write(b"garbage" * 1000)
            print("wrote", target)
        except OSError as err:
            print("could not write", target, err)
"""
DAEMON = IN_KERNEL + """    import subprocess, sys
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "{marker}"], start_new_session=True,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
"""
FLOOD_AND_MEMORY_BOMB = IN_KERNEL + "    print('x' * 10**7)\n    hog = [bytearray(2**28) for _ in range(64)]  # 16 GB\n"

# (test_square_sum, test_normalize_rows) that each student must get from the judge
EXPECTED = {
    "perfect": (2, 3), "stubs": (0, 0), "broken_json": (0, 0), "missing": (0, 0), "kernel_killer": (0, 3),
    "gradebook_writer": (2, 3), "forger": (0, 0), "looper": (2, 0), "forker": (2, 3), "memory_hog": (2, 3),
}


def grades(course: Course, lab: str) -> dict[str, dict[str, tuple]]:
    """{student: {grade cell: (auto_score, manual_score, needs_manual_grade)}} from the gradebook."""
    with course.gradebook() as gb:
        return {
            sub.student_id: {g.name: (g.auto_score, g.manual_score, g.needs_manual_grade)
                             for g in gb.find_submission_notebook(lab, lab, sub.student_id).grades}
            for sub in gb.find_assignment(lab).submissions
        }


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The fixture course, every submission autograded and fed back; returns (course, results, log, marker)."""
    root = tmp_path_factory.mktemp("course")
    course = Course(root, labs=Labs(FIXTURE_LABS))
    release_nb = nbformat.read(course.prepare(LAB), as_version=4)
    source_nb = nbformat.read(course.labs.source(LAB), as_version=4)
    good = perfect(source_nb, release_nb)
    jail = FeedbackJail(LIMITS, hide=[course.root, course.labs.source_dir])
    # the real gradebook's absolute path is only a target where the kernel step hides it
    targets = ["../../../gradebook.db"] + ([str(course.root / "gradebook.db")] if jail.unshare else [])
    marker = f"autograder-test-daemon-{uuid.uuid4().hex}"
    submissions = {
        "perfect": good,
        "stubs": release_nb,
        "kernel_killer": with_cells(good, {"square_sum": "import os\nos._exit(1)\n" + SQUARE_OK}),
        "gradebook_writer": with_cells(good, {"square_sum": GRADEBOOK_ATTACK.format(targets=targets) + SQUARE_OK}),
        "forger": hostile(release_nb),
        "looper": with_cells(good, {"normalize_rows": "while True:\n    pass\n"}),
        "forker": with_cells(good, {"square_sum": DAEMON.format(marker=marker) + SQUARE_OK}),
        "memory_hog": with_cells(good, {"square_sum": FLOOD_AND_MEMORY_BOMB + SQUARE_OK}),
    }
    for student, nb in submissions.items():
        submit(course, LAB, student, nb)
    broken = course.path("submitted", LAB, "broken_json") / f"{LAB}.ipynb"
    broken.parent.mkdir(parents=True)
    broken.write_text(nbformat.writes(good)[:500])  # cut off mid-file
    renamed = course.path("submitted", LAB, "missing") / f"Copy of {LAB}.ipynb"
    renamed.parent.mkdir(parents=True)
    nbformat.write(good, renamed)

    log: list[str] = []
    results = autograde(course, LAB, judge=fake_judge.judge_notebook, limits=LIMITS, jail=jail, out=log.append)
    feedback(course, LAB, out=log.append)
    return course, {r.student: r for r in results}, log, marker


def test_scores_in_the_gradebook_are_the_judges(graded):
    course, results, _, _ = graded
    book = grades(course, LAB)
    assert set(book) == set(EXPECTED)
    for student, (square, normalize) in EXPECTED.items():
        assert book[student]["test_square_sum"][0] == square, student
        assert book[student]["test_normalize_rows"][0] == normalize, student
        assert results[student].score == square + normalize
        assert not book[student]["test_square_sum"][2]  # autograded cells need no manual grading


def test_written_answers_wait_for_a_grader_unless_left_empty(graded):
    book = grades(graded[0], LAB)
    assert book["perfect"]["written_answer"] == (None, None, True)
    for student in ("stubs", "broken_json", "missing"):
        assert book[student]["written_answer"] == (0.0, None, False)


def test_the_batch_finished_with_one_line_per_student_and_the_isolation(graded):
    _, results, log, _ = graded
    assert set(results) == set(EXPECTED)
    for student in EXPECTED:
        assert sum(line.startswith(f"[autograde] {student}: ") for line in log) == 1
    assert sum("isolation, kernel step" in line for line in log) == 1
    assert sum("isolation, judge: fake judge" in line for line in log) == 1


def test_hostile_kernels_hit_only_their_own_throwaway_course(graded):
    course, results, _, marker = graded
    with sqlite3.connect(course.root / "gradebook.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert "gradebook was damaged" in results["gradebook_writer"].kernel  # the relative path hit the throwaway
    assert "kernel died" in results["kernel_killer"].kernel
    for student in ("perfect", "looper", "memory_hog", "forker"):  # interrupted / MemoryError / forked: the rest ran
        assert results[student].kernel == "ok", student
    hog = nbformat.read(course.path("autograded", LAB, "memory_hog") / f"{LAB}.ipynb", as_version=4)
    cell = next(c for c in hog.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "square_sum")
    assert [o.get("ename") for o in cell.outputs if o.output_type == "error"] == ["MemoryError"]
    assert len(nbformat.writes(hog)) < 200_000  # the 10 MB print was cut
    assert processes_with(marker) == []  # the daemon forked by the kernel is gone


def test_unreadable_submissions_get_zero_and_say_why(graded):
    course, results, _, _ = graded
    assert "is not valid JSON" in results["broken_json"].problem
    assert "No fixture_lab.ipynb" in results["missing"].problem and "Copy of fixture_lab.ipynb" in results["missing"].problem
    for student, phrase in [("broken_json", "is not valid JSON"), ("missing", "No fixture_lab.ipynb"),
                            ("kernel_killer", "kernel died")]:
        html = (course.path("feedback", LAB, student) / f"{LAB}.html").read_text()
        assert phrase in html, student


def test_feedback_shows_the_verdicts_not_the_hidden_tests(graded):
    course = graded[0]
    for student, (square, normalize) in EXPECTED.items():
        html = (course.path("feedback", LAB, student) / f"{LAB}.html").read_text()
        assert f"Judge: {square:g} / 2 points" in html and f"Judge: {normalize:g} / 3 points" in html, student
        for hidden in ("HIDDEN TESTS", "manual_seed(0)", "functional.normalize(y"):
            assert hidden not in html, (student, hidden)


def test_hidden_test_blocks_are_blanked_in_any_autograded_notebook():
    """Autograded notebooks made by plain nbgrader still carry hidden tests; the feedback drops them."""
    source = nbformat.read(FIXTURE_LABS / "source" / LAB / f"{LAB}.ipynb", as_version=4)
    cell = next(c for c in source.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_square_sum")
    cell, _ = HideHiddenTests().preprocess_cell(cell, {}, 0)
    assert "manual_seed" not in cell.source and "HIDDEN" not in cell.source
    assert "assert torch.allclose(square_sum(x), torch.tensor(14.0))" in cell.source
    assert "# (hidden tests: not shown" in cell.source


def test_report_csv_has_a_row_per_student(graded, capsys):
    course = graded[0]
    code = main(["--labs-dir", str(FIXTURE_LABS), "report", LAB, "--course-dir", str(course.root),
                 "--format", "csv", "--per-test"])
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["student"] for r in rows] == sorted(EXPECTED)
    for row in rows:
        square, normalize = EXPECTED[row["student"]]
        assert (row["lab"], float(row["score"]), float(row["max_score"])) == (LAB, square + normalize, 5.0)
        assert (float(row["test_square_sum"]), float(row["test_normalize_rows"])) == (square, normalize)
        assert float(row["manual_max_score"]) == 1.0
    assert {r["student"]: r["manual_pending"] for r in rows}["perfect"] == "1"


def test_regrading_one_student_keeps_manual_grades_and_everyone_else(graded):
    course = graded[0]
    with course.gradebook() as gb:
        grade = gb.find_grade("written_answer", LAB, LAB, "perfect")
        grade.manual_score = 1.0
        gb.db.commit()
    before = grades(course, LAB)
    autograde(course, LAB, student="perfect", judge=fake_judge.judge_notebook, execute=False, out=lambda line: None)
    after = grades(course, LAB)
    assert after == before
    assert after["perfect"]["written_answer"] == (None, 1.0, True)
    columns, rows = grade_rows(course, LAB)
    assert {r["student"]: r["total_score"] for r in rows}["perfect"] == 6.0


def test_cli_errors_say_what_to_do(tmp_path, capsys):
    assert main(["--labs-dir", str(FIXTURE_LABS), "autograde", "nope", "--course-dir", str(tmp_path)]) == 2
    assert "unknown lab 'nope'; known labs: fixture_lab" in capsys.readouterr().err
    assert main(["--labs-dir", str(FIXTURE_LABS), "autograde", LAB, "--course-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no submitted/ folder" in err and f"{tmp_path}/submitted/<student>/<lab>/<lab>.ipynb" in err


# -- labs 1 and 4 with the real judge ------------------------------------------------------------
# Expected scores come from each exercise's examples (autograder/exercises/<lab>.py) and the source's points.

def _real_judge():
    try:
        from autograder.exercises import judge_lab
    except ImportError:
        return None
    return judge_lab


def _points(lab: str) -> dict[str, float]:
    from autograder.judge.notebook import read_source

    return read_source(Labs().source(lab)).tests


def _example(ex, which: str):
    """The exercise's demo mistake (``"mistakes"``), its i-th hostile example (``"hostile_<i>"``), or None."""
    if which == "mistakes":
        return ex.demo_mistake
    i = int(which.rpartition("_")[2])
    return ex.hostile[i] if i < len(ex.hostile) else None


def _expected(lab: str, which: str) -> dict[str, float]:
    """Each test cell's points times the share of the exercise's example ``which``; full points where there is
    none (for a hostile example the share is the most it may get)."""
    from autograder import exercises

    graded = exercises.load(lab)
    return {gid: points * (example.share if (example := _example(graded[gid], which)) else 1.0)
            for gid, points in _points(lab).items()}


def _hostile_students(lab: str) -> dict[str, dict[str, str]]:
    """``{"hostile_<i>": {solution cell: code}}``: student i answers each exercise with its i-th hostile example."""
    from autograder import exercises
    from autograder.exercises.kit.examples import solution_cell_of

    source, graded = Labs().source(lab), list(exercises.load(lab).values())
    return {f"hostile_{i}": {solution_cell_of(ex, source): ex.hostile[i].code for ex in graded if i < len(ex.hostile)}
            for i in range(max((len(ex.hostile) for ex in graded), default=0))}


def _demo_course(tmp_path_factory, lab: str, forger: bool) -> Course:
    """A course with the demo's students for ``lab`` (perfect, untouched, mistakes, optionally the forger) and the
    hostile students of its exercises' examples, autograded by the real judge and given feedback."""
    labs = Labs()
    if lab not in labs.names() or _real_judge() is None:
        pytest.skip(f"needs labs/source/{lab}/{lab}.ipynb and autograder.judge")
    course = Course(tmp_path_factory.mktemp(f"{lab}-course"), labs=labs)
    release_nb = nbformat.read(course.prepare(lab), as_version=4)
    good = perfect(nbformat.read(labs.source(lab), as_version=4), release_nb)
    submit(course, lab, "perfect", good)
    submit(course, lab, "untouched", release_nb)
    if forger:
        submit(course, lab, "forger", hostile(release_nb))
    mistakes = mistake_submissions(labs, lab)
    assert "mistakes" in mistakes, f"no exercise of autograder/exercises/{lab}.py has a demo mistake"
    submit(course, lab, "mistakes", with_cells(good, mistakes["mistakes"]))
    for student, cells in _hostile_students(lab).items():
        submit(course, lab, student, with_cells(good, cells))
    log: list[str] = []
    autograde(course, lab, judge=_real_judge(), execute=False, out=log.append)
    feedback(course, lab, out=log.append)
    return course


def _auto(course: Course, lab: str) -> dict[str, dict[str, float]]:
    points = _points(lab)
    return {student: {name: g[0] for name, g in cells.items() if name in points}
            for student, cells in grades(course, lab).items()}


LAB1 = "lab1_autoencoders"


@pytest.fixture(scope="module")
def lab1(tmp_path_factory):
    return _demo_course(tmp_path_factory, LAB1, forger=True)


def test_lab1_scores_from_the_real_judge(lab1):
    auto, full = _auto(lab1, LAB1), _points(LAB1)
    assert auto["perfect"] == full
    assert auto["untouched"] == dict.fromkeys(full, 0.0)
    assert auto["forger"] == dict.fromkeys(full, 0.0)
    assert auto["mistakes"] == pytest.approx(_expected(LAB1, "mistakes"), abs=0.01)
    for student in _hostile_students(LAB1):
        over = {gid: (auto[student][gid], limit) for gid, limit in _expected(LAB1, student).items()
                if auto[student][gid] > limit + 1e-9}
        assert not over, f"{student} scored above its limit (score, limit): {over}"


def test_lab1_feedback_hides_the_hidden_tests(lab1):
    for student in ("perfect", "untouched", "forger", "mistakes"):
        html = (lab1.path("feedback", LAB1, student) / f"{LAB1}.html").read_text()
        assert "HIDDEN TESTS" not in html and "thorough=True" not in html, student  # the hidden calls
        assert html.count("Judge: ") == len(_points(LAB1)), student


LAB4 = "lab4_representations"


@pytest.fixture(scope="module")
def lab4(tmp_path_factory):
    return _demo_course(tmp_path_factory, LAB4, forger=False)


def test_lab4_scores_from_the_real_judge(lab4):
    auto, full = _auto(lab4, LAB4), _points(LAB4)
    assert auto["perfect"] == full
    assert auto["untouched"] == dict.fromkeys(full, 0.0)
    assert auto["mistakes"] == pytest.approx(_expected(LAB4, "mistakes"), abs=0.01)
    for student in _hostile_students(LAB4):
        over = {gid: (auto[student][gid], limit) for gid, limit in _expected(LAB4, student).items()
                if auto[student][gid] > limit + 1e-9}
        assert not over, f"{student} scored above its limit (score, limit): {over}"


LAB2 = "lab2_simclr"


@pytest.fixture(scope="module")
def lab2(tmp_path_factory):
    return _demo_course(tmp_path_factory, LAB2, forger=False)


def test_lab2_scores_from_the_real_judge(lab2):
    """Both parts of lab 2: the demo's mistakes student repeats the seeds' bugs (seed 000's nt_xent_loss, seed 001's
    pairing), each hostile answer stays under its limit."""
    auto, full = _auto(lab2, LAB2), _points(LAB2)
    assert auto["perfect"] == full
    assert auto["untouched"] == dict.fromkeys(full, 0.0)
    assert auto["mistakes"] == pytest.approx(_expected(LAB2, "mistakes"), abs=0.01)
    assert auto["mistakes"]["nt_xent_loss_test"] <= full["nt_xent_loss_test"] / 2  # the seed's own loss
    for student in _hostile_students(LAB2):
        over = {gid: (auto[student][gid], limit) for gid, limit in _expected(LAB2, student).items()
                if auto[student][gid] > limit + 1e-9}
        assert not over, f"{student} scored above its limit (score, limit): {over}"
