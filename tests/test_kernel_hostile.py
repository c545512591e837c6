"""Hostile kernels against the kernel step (issue 11, second round): nbgrader's real kernel step in the feedback
jail, end to end on the fixture lab with the stand-in judge, in the style of tests/test_grading_e2e.py.

One course, graded once (module fixture): a perfect student, an honest wrong one (the stubs) and one student
per attack, each otherwise perfect, so every score is known exactly. The attacks act only in nbgrader's
kernel (``NBGRADER_EXECUTION`` is set there), never in the stand-in judge:

- ``reader``: reads the repository's .git and tests/, the source notebooks, the course's gradebook, tries
  ``git show`` and to unmount whatever hides them, and prints all it got;
- ``swapper``: leaves a process behind that swaps the executed notebook and the old log file for symbolic
  links to the source notebook once nbgrader writes them;
- ``filler``: leaves files in /tmp, /var/tmp and /dev/shm and fills every place it can write;
- ``escaper``: HTML, Markdown, JavaScript, SVG, widget and broken image outputs, an imitation of the judge's
  verdict box, a ``<script>`` in a Markdown cell and in a raw HTML cell;
- ``forged``: grade cells of its own in the notebook metadata (a new grade_id, and a test cell's grade_id
  on a Markdown cell);
- ``bad_markdown``: a Markdown cell showing an attachment it does not have (nbconvert cannot render it);
- ``linker``: symbolic links (to the source notebook and folder) and a FIFO in the submission folder.

Markers unique to this run are put in the source's solutions and hidden tests (a copy of the fixture lab),
and the perfect student's answers are written here, so no legitimate page holds them.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
import uuid
from pathlib import Path

import nbformat
import pytest

from tests.fixtures.processes import processes_with

from autograder.course import REPO_ROOT, Course, Labs
from autograder.demo import submit, with_cells
from autograder.feedback import feedback
from autograder.feedback_jail import FeedbackJail, KernelLimits, kernel_needs, new_box
from autograder.grading import autograde
from autograder.kernel_boot import read_regular
from autograder.kernel_step import hidden_paths
from autograder.student_content import sanitized
from autograder.submission_files import regular_files
from tests.fixtures import fake_judge

FIXTURE_LABS = Path(__file__).parent / "fixtures" / "labs"
LAB = "fixture_lab"
LIMITS = KernelLimits(cell_timeout=20, wall_timeout=180, memory_mb=2048, work_mb=96, tmp_mb=48, shm_mb=32)
RUN = uuid.uuid4().hex[:12]
SOLUTION, HIDDEN, ANSWER = f"solution-{RUN}", f"hidden-{RUN}", f"answer-{RUN}"
RESIDUE = f"kernel-residue-{RUN}"
DAEMON = f"kernel-daemon-{RUN}"
# Only in this file and in the committed fixture's hidden tests: neither may reach a student's page.
REPO_ONLY = ("TESTS-FOLDER-CANARY-4e1f", "manual_seed(0)", "BEGIN HIDDEN TESTS", "BEGIN SOLUTION")

needs_jail = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                reason="needs root and util-linux unshare (namespaces) for the kernel step's jail")

SQUARE_OK = "def square_sum(x):\n    return x.pow(2).sum()\n"
NORMALIZE_OK = "def normalize_rows(x):\n    return x / x.norm(dim=1, keepdim=True)\n"
IN_KERNEL = "import os\nif os.environ.get('NBGRADER_EXECUTION'):\n"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="

READER = IN_KERNEL + """    import ctypes, json, subprocess
    targets = {targets!r}
    def grab():
        found = {{}}
        for target in targets:
            try:
                with open(target, "rb") as f:
                    found[target] = f.read(200_000).decode("utf-8", "replace")
            except OSError as err:
                found[target] = "unreadable: " + err.__class__.__name__
        return found
    before = grab()
    shown = subprocess.run(["git", "-C", {repo!r}, "show", "HEAD:tests/fixtures/labs/source/fixture_lab/fixture_lab.ipynb"],
                           capture_output=True, text=True)
    libc = ctypes.CDLL(None, use_errno=True)
    points = [line.split()[4] for line in open("/proc/self/mountinfo")]
    undone = sum(libc.umount2(p.encode(), 2) == 0 for p in reversed(points))
    listing = {{}}
    for folder in ("/", "/root", {repo!r}, {course!r}):
        try:
            listing[folder] = sorted(os.listdir(folder))
        except OSError as err:
            listing[folder] = err.__class__.__name__
    print(json.dumps({{"view": listing, "unmounted": undone, "git": shown.stdout[:100_000]}}))
    print(before)
    print(grab())
"""
SWAPPER = IN_KERNEL + """    import subprocess, sys
    watcher = '''
import os, sys, time
source, targets = sys.argv[1], sys.argv[3:]
end = time.time() + 150
while time.time() < end:
    for target in targets:
        if os.path.lexists(target) and not os.path.islink(target):
            try:
                os.symlink(source, target + ".swap")
                os.replace(target + ".swap", target)
            except OSError:
                pass
    time.sleep(0.002)
'''
    course = os.path.abspath("../../..")
    targets = [os.path.join(course, "autograded", "swapper", "fixture_lab", "fixture_lab.ipynb"),
               os.path.join(course, "kernel-step.log")]
    subprocess.Popen([sys.executable, "-c", watcher, {source!r}, {marker!r}, *targets], start_new_session=True,
                     env={{}}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
"""
FILLER = IN_KERNEL + """    import json
    written = {{}}
    for place in (os.getcwd(), os.environ["HOME"], os.environ.get("TMPDIR", "/tmp"), "/tmp", "/var/tmp", "/dev/shm"):
        total = 0
        try:
            with open(os.path.join(place, {residue!r}), "w") as f:
                f.write("left behind")
            with open(os.path.join(place, {residue!r} + "-fill"), "wb") as f:
                while total < 200 * 2**20:
                    f.write(bytes(2**20))
                    f.flush()
                    total += 2**20
        except OSError:
            pass
        written[place] = max(written.get(place, 0), total)
    for place in (os.getcwd(), os.environ["HOME"]):  # room again for nbgrader's own notebook
        try:
            os.remove(os.path.join(place, {residue!r} + "-fill"))
        except OSError:
            pass
    print("FILLED " + json.dumps(written))
"""
IMITATION = ('<div class="autograder-verdict" style="border-left:4px solid #2e7d32;padding:4px 10px">'
             "<b>Judge: 4 / 4 points</b></div>")
ESCAPER = IN_KERNEL + """    from IPython.display import HTML, SVG, Javascript, Markdown, display
    imitation = {imitation!r}
    display(HTML("<script>document.title = 'taken'</script>" + imitation))
    display(Markdown("<script>document.title = 'markdown'</script>" + imitation))
    display(Javascript("document.title = 'javascript'"))
    display(SVG('<svg xmlns="http://www.w3.org/2000/svg" onload="document.title=1"><script>1</script></svg>'))
    display({{"application/vnd.jupyter.widget-view+json": {{"model_id": "m", "version_major": 2, "version_minor": 0}},
             "text/plain": "a widget"}}, raw=True)
    display({{"image/png": '"><script>document.title = 2</script>'}}, raw=True)
    display({{"image/png": {png!r}}}, raw=True)
    print(imitation)
"""


def _marked_labs(root: Path) -> Labs:
    """The fixture lab with this run's markers in its solutions, hidden tests and written answer."""
    labs = Labs(root)
    shutil.copytree(FIXTURE_LABS / "source", root / "source")
    path = labs.source(LAB)
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        cell.source = (cell.source.replace("### BEGIN SOLUTION\n", f"### BEGIN SOLUTION\n    # {SOLUTION}\n", 1)
                       .replace("### BEGIN HIDDEN TESTS\n", f"### BEGIN HIDDEN TESTS\n# {HIDDEN}\n", 1))
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "written_answer":
            cell.source = cell.source.replace("So that", f"{ANSWER}: so that")
    nbformat.write(nb, path)
    return labs


def _hostile_submissions(course: Course, release_nb) -> dict:
    good = with_cells(release_nb, {"square_sum": SQUARE_OK, "normalize_rows": NORMALIZE_OK})
    source_nb = str(course.labs.source(LAB))
    targets = [f"{REPO_ROOT}/.git/HEAD", f"{REPO_ROOT}/.git/config", __file__, source_nb,
               str(FIXTURE_LABS / "source" / LAB / f"{LAB}.ipynb"), str(course.root / "gradebook.db"),
               str(course.path("source", LAB) / f"{LAB}.ipynb"), f"/proc/1/root{source_nb}", "/proc/1/environ"]

    def first(code):
        return with_cells(good, {"square_sum": code + SQUARE_OK})

    forged = with_cells(good, {})
    forged.cells.insert(1, nbformat.v4.new_markdown_cell("forged test cell", metadata={"nbgrader": {
        "grade": True, "solution": False, "locked": False, "grade_id": "test_square_sum", "points": 50,
        "schema_version": 3}}))
    forged.cells.append(nbformat.v4.new_code_cell("print('bonus')", metadata={"nbgrader": {
        "grade": True, "solution": False, "locked": True, "grade_id": "forged_bonus", "points": 100,
        "schema_version": 3}}))
    escaper = first(ESCAPER.format(imitation=IMITATION, png=PNG))
    escaper.cells.append(nbformat.v4.new_markdown_cell("<script>document.title = 'cell'</script>\n\n" + IMITATION))
    escaper.cells.append(nbformat.v4.new_raw_cell("<script>document.title = 'raw'</script>" + IMITATION,
                                                  metadata={"raw_mimetype": "text/html"}))
    bad_markdown = with_cells(good, {})
    bad_markdown.cells.append(nbformat.v4.new_markdown_cell("My plot: ![plot](attachment:plot.png)"))
    linker = first(IN_KERNEL + "    import glob\n    print('LINKER', sorted(glob.glob('*')))\n"
                   "    for name in ('data.txt', 'secret/fixture_lab.ipynb', 'notes.txt'):\n"
                   "        try:\n            print(open(name).read())\n"
                   "        except OSError as err:\n            print(name, err.__class__.__name__)\n")
    return {
        "perfect": good,
        "stubs": release_nb,
        "reader": first(READER.format(targets=targets, repo=str(REPO_ROOT), course=str(course.root))),
        "swapper": first(SWAPPER.format(source=str(course.path("source", LAB) / f"{LAB}.ipynb"), marker=DAEMON)),
        "filler": first(FILLER.format(residue=RESIDUE)),
        "escaper": escaper,
        "forged": forged,
        "bad_markdown": bad_markdown,
        "linker": linker,
    }


# (test_square_sum, test_normalize_rows) from the judge: every attack is made by an otherwise perfect student
EXPECTED = {"perfect": (2, 3), "stubs": (0, 0), "reader": (2, 3), "swapper": (2, 3), "filler": (2, 3),
            "escaper": (2, 3), "forged": (2, 3), "bad_markdown": (2, 3), "linker": (2, 3)}


def _residue() -> list[str]:
    found = []
    for folder in ("/tmp", "/var/tmp", "/dev/shm"):
        try:
            found += [f"{folder}/{name}" for name in os.listdir(folder) if RUN in name]
        except OSError:
            pass
    return found


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The course, graded and fed back once: (course, {student: StudentResult}, autograde + feedback log)."""
    labs = _marked_labs(tmp_path_factory.mktemp("labs"))
    course = Course(tmp_path_factory.mktemp("course"), labs=labs)
    release_nb = nbformat.read(course.prepare(LAB), as_version=4)
    assert HIDDEN not in nbformat.writes(release_nb) and SOLUTION not in nbformat.writes(release_nb)
    for student, nb in _hostile_submissions(course, release_nb).items():
        submit(course, LAB, student, nb)
    linker = course.path("submitted", LAB, "linker")
    (linker / "notes.txt").write_text(f"regular-{RUN}")
    (linker / "data.txt").symlink_to(course.labs.source(LAB))
    (linker / "secret").symlink_to(course.labs.source(LAB).parent, target_is_directory=True)
    os.mkfifo(linker / "pipe")
    assert _residue() == []

    jail = FeedbackJail(LIMITS, hide=hidden_paths(course))
    log: list[str] = []
    results = autograde(course, LAB, judge=fake_judge.judge_notebook, limits=LIMITS, jail=jail, out=log.append)
    feedback(course, LAB, out=log.append)
    return course, {r.student: r for r in results}, log


def _page(course: Course, student: str) -> str:
    return (course.path("feedback", LAB, student) / f"{LAB}.html").read_text()


def _executed(course: Course, student: str):
    return nbformat.read(course.path("autograded", LAB, student) / f"{LAB}.ipynb", as_version=4)


def _printed(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


@needs_jail
def test_every_score_is_exactly_the_judges(graded):
    course, results, _ = graded
    with course.gradebook() as gb:
        for student, (square, normalize) in EXPECTED.items():
            book = {g.name: g.auto_score for g in gb.find_submission_notebook(LAB, LAB, student).grades}
            assert (book["test_square_sum"], book["test_normalize_rows"]) == (square, normalize), student
            assert "forged_bonus" not in book
            assert results[student].score == square + normalize and results[student].max_score == 5
    with sqlite3.connect(course.root / "gradebook.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@needs_jail
def test_no_hidden_test_or_solution_reaches_a_page_or_a_log(graded):
    course, results, log = graded
    texts = {f"feedback/{s}": _page(course, s) for s in EXPECTED}
    texts |= {f"autograded/{s}": nbformat.writes(_executed(course, s)) for s in EXPECTED}
    texts |= {str(p): p.read_text() for p in (course.root / "logs").rglob("*.log")}
    texts["autograde and feedback log"] = "\n".join(log)
    assert len(texts) > 2 * len(EXPECTED)
    for name, text in texts.items():
        for secret in (SOLUTION, HIDDEN, ANSWER, *REPO_ONLY):
            assert secret not in text, (name, secret)
    assert results["reader"].kernel == "ok" and results["perfect"].kernel == "ok"


@needs_jail
def test_the_kernel_sees_neither_the_repository_nor_the_course_and_cannot_unmount(graded):
    course = graded[0]
    printed = _printed(_executed(course, "reader"))
    report = json.loads(next(line for line in printed.splitlines() if line.startswith('{"view"')))
    assert report["unmounted"] == 0 and report["git"] == ""
    needs = kernel_needs()
    assert report["view"][str(REPO_ROOT)] == sorted({p.relative_to(REPO_ROOT).parts[0] for p in needs
                                                     if REPO_ROOT in p.parents})  # no .git, no tests
    assert report["view"][str(course.root)] == "FileNotFoundError"
    assert set(report["view"]["/"]) <= {"bin", "course", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc",
                                        "root", "sbin", "tmp", "usr", "var", *(p.parts[1] for p in needs)}
    assert "unreadable: FileNotFoundError" in printed and "unreadable: PermissionError" in printed  # /proc/1/...


@needs_jail
def test_no_process_outlives_its_step_and_links_it_made_are_not_followed(graded):
    course, results, _ = graded
    assert processes_with(DAEMON) == []
    page = _page(course, "swapper")
    assert "Judge: 2 / 2 points" in page and "Judge: 3 / 3 points" in page
    # whether the swap came in time or not (then nbgrader or the hand-back refuses the link), nothing of the
    # source notebook is read: see test_no_hidden_test_or_solution_reaches_a_page_or_a_log
    assert "Judge:" not in results["swapper"].kernel


@needs_jail
def test_nothing_written_by_a_kernel_outlives_the_batch_and_filling_hurts_nobody_else(graded):
    course, results, _ = graded
    assert _residue() == []
    assert results["filler"].kernel == "ok"
    filled = json.loads(next(line for line in _printed(_executed(course, "filler")).splitlines()
                             if line.startswith("FILLED "))[len("FILLED "):])
    limits = {"/tmp": LIMITS.tmp_mb, "/var/tmp": LIMITS.tmp_mb, "/dev/shm": LIMITS.shm_mb}
    for place, written in filled.items():  # each a full private tmpfs, never the grader's disk
        assert written <= limits.get(place, LIMITS.work_mb) * 2**20, place
    assert all(filled[place] > 0 for place in limits)
    # the next student (graded after the filler) keeps full marks and a working kernel step
    assert sorted(EXPECTED).index("perfect") > sorted(EXPECTED).index("filler")
    assert results["perfect"].score == 5 and results["perfect"].kernel == "ok"


@needs_jail
def test_kernel_outputs_are_text_on_the_page_and_only_the_judge_is_styled(graded):
    course = graded[0]
    page, baseline = _page(course, "escaper"), _page(course, "perfect")
    for tag in ("<script", "<svg", "<iframe", '<div class="autograder-verdict"', "<b>Judge"):  # markup, not text
        assert page.count(tag) == baseline.count(tag), tag
    assert page.count('<div class="autograder-verdict"') == 2  # the judge's own two boxes
    assert page.count('&lt;div class="autograder-verdict"') >= 4  # the imitations: outputs and Markdown, as text
    assert "[text/html output, shown as text]" in page and "[application/javascript output, shown as text]" in page
    assert f'src="data:image/png;base64,{PNG}"' in page  # a real image stays an image


@needs_jail
def test_a_forged_grade_cell_is_an_ordinary_cell_and_a_bad_notebook_costs_only_its_page(graded):
    course, _, log = graded
    for student in EXPECTED:
        assert (course.path("feedback", LAB, student) / f"{LAB}.html").is_file(), student
    forged = _page(course, "forged")
    assert "forged_bonus" not in forged and "Judge: 2 / 2 points" in forged and forged.count("Test cell</a>") == 2
    bad = _page(course, "bad_markdown")
    assert "could not be made" in bad and "Judge:" not in bad
    failed = [line for line in log if "FAILED" in line]
    assert len(failed) == 1 and failed[0].startswith("[feedback] bad_markdown: FAILED") and "attachment" in failed[0]
    assert "Judge: 3 / 3 points" in _page(course, "perfect")


@needs_jail
def test_links_and_special_files_in_a_submission_are_refused_and_named(graded):
    course = graded[0]
    printed = _printed(_executed(course, "linker"))
    assert "LINKER ['fixture_lab.ipynb', 'notes.txt']" in printed and f"regular-{RUN}" in printed
    page = _page(course, "linker")
    for refused in ("data.txt (a symbolic link)", "pipe (not a regular file)", "secret (a symbolic link)"):
        assert refused in page, refused
    assert sorted(p.name for p in course.path("autograded", LAB, "linker").iterdir()) == [f"{LAB}.ipynb", "notes.txt"]


# -- the pieces, without nbgrader ----------------------------------------------------------------

@needs_jail
def test_the_jail_shows_a_needed_folder_under_a_private_one_and_blanks_what_a_bind_carries(tmp_path):
    """The repository under a 0700 folder: what the kernel needs is bound back alone (the private folder is a
    plain 0755 folder in the jail's root) and a hidden folder inside a bound one stays covered."""
    private = tmp_path / "private"
    (private / "repo" / "needed" / "secret").mkdir(parents=True)
    (private / "repo" / "other.txt").write_text(HIDDEN)
    (private / "repo" / "needed" / "file.txt").write_text("needed")
    (private / "repo" / "needed" / "secret" / "key.txt").write_text(HIDDEN)
    private.chmod(0o700)
    jail = FeedbackJail(LIMITS, hide=[private / "repo" / "needed" / "secret", private])
    jail.binds = [*jail.binds, (private / "repo" / "needed").resolve()]
    needed = (private / "repo" / "needed").resolve()
    probe = ("import os, json, ctypes\n"
             f"root = {str(needed)!r}\n"
             "libc = ctypes.CDLL(None)\n"
             "undone = [p for p in (root + '/secret', root) if libc.umount2(p.encode(), 2) == 0]\n"
             "seen = {'file': open(root + '/file.txt').read(), 'secret': os.listdir(root + '/secret'),\n"
             "        'repo': sorted(os.listdir(os.path.dirname(root))), 'uid': os.getuid(), 'undone': undone}\n"
             "open('seen.json', 'w').write(json.dumps(seen))\n")
    box = new_box()
    try:
        run = jail.launch(box, [sys.executable, "-c", probe], "seen.json", wall_timeout=120).wait()
        assert run.ok, run.log[-2000:]
        seen = json.loads(run.notebook.read_text())
    finally:
        shutil.rmtree(box, ignore_errors=True)
    assert seen == {"file": "needed", "secret": [], "repo": ["needed"], "uid": seen["uid"], "undone": []}
    assert seen["uid"] != 0


def test_read_regular_follows_no_link_and_opens_no_fifo(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "a.txt").write_text("a")
    (tmp_path / "elsewhere.txt").write_text(HIDDEN)
    (tmp_path / "real" / "link.txt").symlink_to(tmp_path / "elsewhere.txt")
    (tmp_path / "linked").symlink_to(tmp_path / "real", target_is_directory=True)
    os.mkfifo(tmp_path / "real" / "fifo")
    assert read_regular(str(tmp_path), "real/a.txt", 10) == b"a"
    for rel in ("real/link.txt", "linked/a.txt", "real/fifo", "real/../elsewhere.txt"):
        with pytest.raises((OSError, ValueError)):
            read_regular(str(tmp_path), rel, 10)
    with pytest.raises(ValueError, match="larger"):
        read_regular(str(tmp_path), "real/a.txt", 0)


def test_regular_files_refuses_links_and_special_files_by_name(tmp_path):
    folder = tmp_path / "student" / "lab"
    (folder / "sub" / ".ipynb_checkpoints").mkdir(parents=True)
    (folder / "lab.ipynb").write_text("{}")
    (folder / "sub" / "data.csv").write_text("1")
    (folder / "sub" / ".ipynb_checkpoints" / "lab-checkpoint.ipynb").write_text("{}")
    (folder / "up").symlink_to(tmp_path, target_is_directory=True)
    os.mkfifo(folder / "fifo")
    assert regular_files(folder) == (["lab.ipynb", "sub/data.csv"], ["fifo (not a regular file)", "up (a symbolic link)"])
    linked = tmp_path / "other"
    linked.symlink_to(folder, target_is_directory=True)
    assert regular_files(linked) == ([], ["other/ (a symbolic link, not a folder)"])


def test_sanitized_keeps_text_and_images_and_vouches_only_for_the_releases_grade_cells():
    release = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    release.cells = [nbformat.v4.new_code_cell("x = 1", metadata={"nbgrader": {"grade_id": "ex", "grade": True, "points": 2,
                                                                                "solution": False, "locked": True}})]
    student = {"metadata": {"widgets": {"state": "<script>"}}, "cells": [
        {"cell_type": "markdown", "source": "note", "metadata": {"nbgrader": {"grade_id": "ex", "grade": True, "points": 9}}},
        {"cell_type": "code", "source": ["x ", "= 2"], "execution_count": "9<b>", "metadata": {
            "tags": ['"><script>'], "nbgrader": {"grade_id": "ex", "points": 99}}, "outputs": [
            {"output_type": "stream", "name": 'stdout"><script>', "text": ["a", "b"]},
            {"output_type": "display_data", "data": {"text/html": "<b>x</b>", "text/plain": "p", "image/png": PNG},
             "metadata": {"image/png": {"width": 3, "height": "1 onload=x"}, "text/html": {"isolated": True}}},
            {"output_type": "execute_result", "execution_count": 3, "data": {"image/jpeg": "<not base64>"}, "metadata": {}},
            {"output_type": "nonsense"}, "not an output"]},
        {"cell_type": "code", "source": "y", "metadata": {"nbgrader": {"grade_id": "ex"}}, "outputs": []},
        {"cell_type": "raw", "source": "<script>", "metadata": {"raw_mimetype": "text/html"}},
    ]}
    clean = sanitized(student, release)
    nbformat.validate(clean)
    assert clean.metadata == release.metadata
    markdown, code, duplicate, raw = clean.cells
    assert "nbgrader" not in markdown.metadata and "nbgrader" not in duplicate.metadata  # wrong type; second copy
    assert code.metadata == {"nbgrader": release.cells[0].metadata.nbgrader} and code.source == "x = 2"
    assert code.execution_count is None and raw.metadata == {}
    stream, display, result = code.outputs
    assert (stream.name, stream.text) == ("stdout", "ab")
    assert display.data == {"image/png": PNG, "text/plain": "[text/html output, shown as text]\n<b>x</b>"}
    assert display.metadata == {"image/png": {"width": 3}}
    assert result.data == {"text/plain": ""} and result.execution_count == 3
