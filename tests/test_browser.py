"""The student's and the instructor's day in a real browser (headless Chromium, Selenium).

- Student: JupyterLab on a released lab; one exercise filled by pasting its solution, the next
  left as the stub; Run All Cells at the ``ci`` scale offline; what the page shows (the setup
  line, the self-check's pass message and, for the stub, its error, figures, no other error);
  nbgrader's Validate button reports the stub.
- Instructor: a small course graded with ``python -m autograder autograde`` and ``feedback``;
  JupyterLab's formgrader lists the lab and its submissions with the judge's scores, refuses its
  own Autograde, takes a written answer's grade by hand, which ``report`` then shows; the
  student's feedback page shows the judge's messages, no hidden test code, and figures that fit.

Screenshots of each step go to $BROWSER_SCREENSHOTS (default: the test's tmp_path). The tests
need Debian's chromium and chromium-driver and are skipped, saying so, without them.
"""
from __future__ import annotations

import csv
import io
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest

from autograder.course import REPO_ROOT, Course, Labs, copy_lab_folder
from autograder.demo import mistake_submissions, perfect, submit, with_cells
from tests.browser_support import (
    CELLS, KERNEL_IDLE, RUN_FINISHED, RUN_STARTED, TABLE_HAS_ROW, WIDE_FIGURES, Screenshots, browser_missing,
    chromium, click_menu, jupyterlab, paste_into_cell, poll, server_env, wait_for,
)

MISSING = browser_missing()
# The timeout (pytest-timeout) only ends a hung test: its servers and browser are stopped all the same.
pytestmark = [pytest.mark.browser, pytest.mark.skipif(MISSING is not None, reason=MISSING or ""),
              pytest.mark.timeout(1200)]

LAB = "lab1_autoencoders"
# The offline stand-in datasets of the repository's data_paths.toml (data/offline, shared with the
# other tests and written once) rather than new ones in each temporary home.
LABKIT_ENV = {"LABKIT_SCALE": "ci", "LABKIT_SITE": "offline",
              "LABKIT_DATA_PATHS": str(REPO_ROOT / "data_paths.toml")}


@pytest.fixture
def screenshots(tmp_path) -> Path:
    return Path(os.environ.get("BROWSER_SCREENSHOTS") or tmp_path / "screenshots")


@contextmanager
def explained(shots: Screenshots, driver, lab):
    """On failure: a screenshot of the moment and the tail of the server's log, then the error."""
    try:
        yield
    except BaseException:
        try:
            print(f"screenshot: {shots.save(driver, 'failure')}")
        finally:
            print(f"JupyterLab log (tail):\n{lab.log_tail()}")
        raise


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def exercises(nb) -> list[tuple[int, int]]:
    """(solution cell, its check cell) index pairs: each graded code answer and the test cell after it."""
    pairs = []
    for i, cell in enumerate(nb.cells):
        meta = nbgrader_meta(cell)
        if cell.cell_type == "code" and meta.get("solution") and not meta.get("grade"):
            check = next(j for j in range(i + 1, len(nb.cells))
                         if nb.cells[j].cell_type == "code" and nbgrader_meta(nb.cells[j]).get("grade")
                         and not nbgrader_meta(nb.cells[j]).get("solution"))
            pairs.append((i, check))
    return pairs


def autograder_cli(*args: str, cwd: Path, timeout: float = 900) -> str:
    env = {**os.environ, **LABKIT_ENV}
    run = subprocess.run([sys.executable, "-m", "autograder", *args], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=timeout)
    assert run.returncode == 0, f"python -m autograder {' '.join(args)} failed:\n{run.stdout}\n{run.stderr}"
    return run.stdout


def report_rows(course_dir: Path) -> dict[str, dict[str, str]]:
    text = autograder_cli("report", LAB, "--course-dir", str(course_dir), "--format", "csv", cwd=REPO_ROOT)
    return {row["student"]: row for row in csv.DictReader(io.StringIO(text))}


def squash(text: str) -> str:
    return " ".join(text.split())


# ------------------------------------------------------------------------------- student
def test_student_runs_a_released_lab(tmp_path, screenshots):
    labs = Labs()
    release_nb = nbformat.read(labs.release(LAB), as_version=4)
    answers = perfect(nbformat.read(labs.source(LAB), as_version=4), release_nb)
    (filled, filled_check), (stub, stub_check) = exercises(release_nb)[:2]
    stub_function = re.search(r"def (\w+)", release_nb.cells[stub].source).group(1)

    work, home = tmp_path / "work", tmp_path / "home"
    shutil.copytree(labs.release_dir / LAB, work / LAB)  # the folder as a student downloads it
    shots = Screenshots(screenshots, "student")
    with jupyterlab(work, home, server_env(home, **LABKIT_ENV)) as lab, chromium(tmp_path / "chromium") as driver:
        with explained(shots, driver, lab):
            driver.get(lab.url(f"lab/tree/{LAB}/{LAB}.ipynb"))
            wait_for(driver, "return document.querySelectorAll('.jp-Notebook .jp-Cell').length === arguments[0]",
                     len(release_nb.cells), timeout=180, what="the notebook's cells")
            # a click, as a student's first: JupyterLab's current widget follows the page's focus, and headless
            # Chromium (150 here) opens the page unfocused, so without it no notebook is current
            driver.find_element("css selector", ".jp-Notebook .jp-Cell").click()
            wait_for(driver, KERNEL_IDLE, timeout=180, what="the kernel")
            shots.save(driver, "opened")

            solution = answers.cells[filled].source
            paste_into_cell(driver, filled, solution)
            wait_for(driver, "return window.jupyterapp.shell.currentWidget.content.widgets[arguments[0]]"
                     ".model.sharedModel.getSource() === arguments[1]", filled, solution,
                     timeout=30, what="the pasted solution in the cell")
            shots.save(driver, "filled")

            click_menu(driver, "Run", "Run All Cells")
            wait_for(driver, RUN_STARTED, timeout=120, what="Run All Cells to start")
            # Run All stops at the first error, here the stub's check (or an earlier cell that failed)
            wait_for(driver, RUN_FINISHED, stub_check, timeout=600, interval=1.0, what="Run All Cells to finish")
            wait_for(driver, RUN_FINISHED, stub_check, timeout=60, what="the run to stay finished")
            cells = driver.execute_script(CELLS)
            height = driver.execute_script(
                "const cells = document.querySelectorAll('.jp-Notebook .jp-Cell'); cells[0].scrollIntoView();"
                "return cells[arguments[0]].getBoundingClientRect().bottom - cells[0].getBoundingClientRect().top;",
                stub_check)
            shots.save(driver, "run-all", full_height=height + 400)

            setup = next(c for c in cells if c["type"] == "code")
            assert "scale 'ci'" in setup["shown"] and "site 'offline'" in setup["shown"], setup["shown"]
            wrong = [(c["index"], c["shown"][:500]) for c in cells if c["index"] != stub_check
                     and any(o["output_type"] == "error" or o["name"] == "stderr" for o in c["outputs"])]
            assert not wrong, f"error or stderr output outside the stub's check: {wrong}"

            passed = cells[filled_check]
            assert passed["outputs"] and all(o["name"] == "stdout" for o in passed["outputs"]), passed
            assert passed["shown"].strip(), "the filled exercise's check printed nothing"

            hint = cells[stub_check]
            errors = [o for o in hint["outputs"] if o["output_type"] == "error"]
            assert errors and errors[0]["ename"] in ("NotImplementedError", "AssertionError"), hint
            assert stub_function in hint["shown"], hint["shown"]

            plotting = [c for c in cells if c["execution_count"] is not None
                        and re.search(r"\b(plots|plt)\.", c["source"])]
            assert plotting, "no figure-making cell ran"
            blank = [c["index"] for c in plotting if not any(img["width"] > 0 for img in c["images"])]
            assert not blank, f"cells {blank} made a figure that the page does not show"

            driver.execute_script("window.jupyterapp.shell.currentWidget.content.activeCellIndex = 0")
            poll(lambda: next((b for b in driver.find_elements("css selector", ".jp-Toolbar-item")
                               if b.text.strip() == "Validate"), None), timeout=30, what="the Validate button").click()
            text = wait_for(driver, "const d = document.querySelector('.jp-Dialog');"
                            "return d && /Validation Results|Success/.test(d.innerText) && d.innerText;",
                            timeout=600, interval=1.0, what="nbgrader's validation result")
            shots.save(driver, "validate")
            stub_check_line = release_nb.cells[stub_check].source.strip().splitlines()[-1]
            filled_check_line = release_nb.cells[filled_check].source.strip().splitlines()[-1]
            assert "The following cell failed" in text and stub_check_line in text, text[:3000]
            assert errors[0]["ename"] in text, text[:3000]
            assert filled_check_line not in text, f"Validate reports the filled exercise:\n{text[:3000]}"


# ---------------------------------------------------------------------------- instructor
@pytest.fixture
def graded_course(tmp_path) -> Course:
    """A course with two submissions of lab 1, autograded and fed back by the CLI: ``alice`` perfect
    (the judge only, no kernel run), ``bob`` with the lab's demo mistakes (with the kernel run, so
    his feedback has figures)."""
    labs = Labs()
    course = Course(tmp_path / "course")
    release_nb = nbformat.read(labs.release(LAB), as_version=4)
    good = perfect(nbformat.read(labs.source(LAB), as_version=4), release_nb)
    submit(course, LAB, "alice", good)
    submit(course, LAB, "bob", with_cells(good, mistake_submissions(labs, LAB).get("mistakes", {})))
    where = ["--course-dir", str(course.root)]
    autograder_cli("autograde", LAB, *where, "--student", "bob", cwd=REPO_ROOT)
    autograder_cli("autograde", LAB, *where, "--student", "alice", "--no-execute", cwd=REPO_ROOT)
    autograder_cli("feedback", LAB, *where, cwd=REPO_ROOT)
    return course


def judge_messages(course: Course, student: str) -> list[str]:
    """The judge's verdict lines (text form) in the test cells of the autograded notebook."""
    nb = nbformat.read(course.path("autograded", LAB, student) / f"{LAB}.ipynb", as_version=4)
    lines = []
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            for output in cell.get("outputs", []):
                text = output.get("data", {}).get("text/plain", "")
                lines += [line.lstrip("- ").strip() for line in text.splitlines() if line.strip()]
    return lines


def hidden_test_lines(labs: Labs) -> list[str]:
    """Lines of the source's hidden test blocks that appear nowhere in the release."""
    released = nbformat.read(labs.release(LAB), as_version=4)
    visible = {line.strip() for cell in released.cells for line in cell.source.splitlines()}
    hidden, inside = [], False
    for cell in nbformat.read(labs.source(LAB), as_version=4).cells:
        for line in cell.source.splitlines():
            if "BEGIN HIDDEN TESTS" in line:
                inside = True
            elif "END HIDDEN TESTS" in line:
                inside = False
            elif inside and line.strip() and line.strip() not in visible:
                hidden.append(line.strip())
    return hidden


def check_feedback_page(driver, course: Course, labs: Labs, student: str) -> None:
    """The HTML that ``feedback`` wrote, as the student opens it: every line of the judge's verdicts,
    no hidden test code (not even in the page source), figures within the page."""
    driver.get((course.path("feedback", LAB, student) / f"{LAB}.html").as_uri())
    wait_for(driver, "return document.readyState === 'complete' && [...document.images].every(i => i.complete)",
             timeout=60, what="the feedback page")
    page, html = squash(driver.execute_script("return document.body.innerText")), driver.page_source
    messages = judge_messages(course, student)
    tests = len(exercises(nbformat.read(labs.release(LAB), as_version=4)))
    assert sum(m.startswith("Judge:") for m in messages) == tests, messages
    missing = [m for m in messages if squash(m) not in page]
    assert not missing, f"judge's messages not on the feedback page: {missing}"
    leaked = [line for line in hidden_test_lines(labs) if line in html]
    assert not leaked and "BEGIN HIDDEN TESTS" not in html, f"hidden test code in the feedback: {leaked}"
    wide = driver.execute_script(WIDE_FIGURES)
    assert wide == 0, f"{wide} figure(s) run off the feedback page"


def open_formgrader(driver, lab) -> None:
    """JupyterLab's menu Nbgrader > Formgrader, then into its frame."""
    driver.get(lab.url("lab"))
    click_menu(driver, "Nbgrader", "Formgrader", timeout=180)
    frame = poll(lambda: driver.find_elements("css selector", "iframe[src*='formgrader']"), timeout=60,
                 what="the formgrader's frame")[0]
    driver.switch_to.frame(frame)


def formgrader_scores(driver) -> dict[str, str]:
    """{student id: score text} of the formgrader's Manage Submissions table."""
    rows = driver.execute_script("return [...document.querySelectorAll('table tbody tr')]"
                                 ".map(r => [...r.cells].map(c => c.innerText.trim()));")
    header = driver.execute_script("return [...document.querySelectorAll('table thead th')]"
                                   ".map(c => c.innerText.trim());")
    sid, score = header.index("Student ID"), header.index("Score")
    return {row[sid]: row[score] for row in rows if len(row) > max(sid, score)}


def student_row(driver, student: str, inner: str = ""):
    return driver.find_elements("xpath", f"//table//tr[td[normalize-space()='{student}']]{inner}")


def test_instructor_grades_in_the_formgrader(tmp_path, screenshots, graded_course):
    course, labs = graded_course, Labs()
    home = tmp_path / "home"
    shots = Screenshots(screenshots, "instructor")
    before = report_rows(course.root)
    written = [nbgrader_meta(c)["grade_id"] for c in nbformat.read(labs.release(LAB), as_version=4).cells
               if c.cell_type == "markdown" and nbgrader_meta(c).get("grade")]

    with jupyterlab(course.root, home, server_env(home, **LABKIT_ENV)) as lab, \
            chromium(tmp_path / "chromium") as driver:
        with explained(shots, driver, lab):
            check_feedback_page(driver, course, labs, "bob")
            shots.save(driver, "feedback", full_height=driver.execute_script("return document.body.scrollHeight"))

            # the lab and its two submissions, each with the judge's score out of the lab's total
            open_formgrader(driver, lab)
            row = wait_for(driver, TABLE_HAS_ROW, LAB, timeout=120, what="the lab in Manage Assignments")
            assert re.search(r"\b2\b", row), row
            driver.find_element("xpath", f"//table//tr[contains(., '{LAB}')]//a[normalize-space()='2']").click()
            for student in before:
                wait_for(driver, TABLE_HAS_ROW, student, timeout=60, what=f"{student} in Manage Submissions")
            listed = formgrader_scores(driver)
            for student, r in before.items():
                total, out_of = float(r["total_score"]), float(r["max_score"]) + float(r["manual_max_score"])
                shown = [float(x) for x in re.findall(r"[\d.]+", listed[student])]
                assert shown == [total, out_of], f"{student}: formgrader {listed[student]!r}, report {total} / {out_of}"
            shots.save(driver, "formgrader-submissions")

            # its own Autograde refuses, naming the command; the judge's score and notebook stay
            student_row(driver, "bob", "//*[contains(@class, 'glyphicon-flash')]")[0].click()
            message = wait_for(driver, "const m = document.querySelector('#error-modal, #success-modal');"
                               "return m && /autograder autograde/.test(m.innerText) && m.innerText;",
                               timeout=120, what="the formgrader's answer to Autograde")
            assert "python -m autograder autograde" in message, message
            wait_for(driver, "const m = document.querySelector('#error-modal');"  # faded in
                     "return getComputedStyle(m).opacity === '1' && getComputedStyle(m.querySelector('.modal-dialog'))"
                     ".transform.replace(/ /g, '') in {none: 1, 'matrix(1,0,0,1,0,0)': 1};", timeout=30,
                     what="the dialog to show")
            shots.save(driver, "formgrader-autograde-refused")
            assert report_rows(course.root)["bob"]["score"] == before["bob"]["score"]
            assert (course.path("autograded", LAB, "bob") / f"{LAB}.ipynb").is_file()
            driver.find_element("css selector", "#error-modal button").click()
            wait_for(driver, "return !document.querySelector('#error-modal')", timeout=30, what="the dialog to close")

            # a written answer graded by hand: bob's name, his notebook, the answer's Full credit button
            poll(lambda: student_row(driver, "bob", "//a[contains(@href, 'manage_students')]"), timeout=60,
                 what="bob's name as a link")[0].click()
            poll(lambda: driver.find_elements("css selector", "a[href*='/formgrader/submissions/']"), timeout=60,
                 what="bob's notebook in Manage Students")[0].click()
            box = poll(lambda: driver.find_elements("id", written[0]), timeout=120, what="the answer's score box")[0]
            wide = driver.execute_script(WIDE_FIGURES)
            assert wide == 0, f"{wide} figure(s) run off the formgrader's page"
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
            box.find_element("xpath", "ancestor::div[contains(@class, 'panel-heading')]"
                                      "//button[contains(@class, 'full-credit')]").click()

            def graded_by_hand():
                with course.gradebook() as gb:
                    grade = gb.find_grade(written[0], LAB, LAB, "bob")
                    return not grade.needs_manual_grade and grade.manual_score

            points = poll(graded_by_hand, timeout=60, what="the manual grade in the gradebook")
            shots.save(driver, "formgrader-manual-grade")

    after = report_rows(course.root)["bob"]
    assert float(after["manual_score"]) == points
    assert int(after["manual_pending"]) == int(before["bob"]["manual_pending"]) - 1
    assert float(after["total_score"]) == float(before["bob"]["total_score"]) + points
    assert after["score"] == before["bob"]["score"]


def test_formgrader_makes_a_new_gradebook_without_the_venv_on_path(tmp_path, screenshots):
    """JupyterLab started as ``.venv/bin/jupyter lab`` (the venv not on PATH) on a course directory
    whose gradebook does not exist yet: the formgrader creates a whole one (nbgrader runs
    ``alembic`` from PATH to stamp it)."""
    labs = Labs()
    course = Course(tmp_path / "course", labs=labs)
    (course.root / "submitted").mkdir(parents=True)
    copy_lab_folder(labs.source_dir / LAB, course.path("source", LAB))  # the formgrader lists it from here
    course.write_nbgrader_config()
    gradebook = course.root / "gradebook.db"
    home = tmp_path / "home"
    shots = Screenshots(screenshots, "new-gradebook")

    def stamped():
        if not gradebook.is_file():
            return None
        with sqlite3.connect(gradebook) as db:
            try:
                return db.execute("SELECT version_num FROM alembic_version").fetchall()
            except sqlite3.OperationalError:  # no such table (yet)
                return None

    def failed() -> bool:
        return "Uncaught exception" in lab.log.read_text(errors="replace")

    with jupyterlab(course.root, home, server_env(home, **LABKIT_ENV)) as lab, \
            chromium(tmp_path / "chromium") as driver:
        with explained(shots, driver, lab):
            open_formgrader(driver, lab)
            poll(lambda: stamped() or failed(), timeout=120, what="the formgrader to create the gradebook")
            assert not failed(), lab.log_tail()
            assert stamped(), "the gradebook has no alembic version"
            wait_for(driver, TABLE_HAS_ROW, LAB, timeout=60, what="the lab in Manage Assignments")
            shots.save(driver, "formgrader")
