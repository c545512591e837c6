"""The kernel step of ``autograde``: per student, nbgrader's kernel run in the feedback jail, for the outputs
the feedback shows (never a score; :mod:`autograder.feedback_jail` is the jail itself).

One throwaway course directory per batch whose source is the *release* (no hidden
tests), copied per student into a box of its own with that student's submission (its
regular files only: :mod:`autograder.submission_files`) and a throwaway gradebook;
the jail runs ``nbgrader autograde`` there while the judge scores.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import nbformat
from nbgrader.converters import GenerateAssignment

from .course import REPO_ROOT, Course, nbgrader_config, run_nbgrader
from .feedback_jail import FeedbackJail, KernelRun, new_box
from .submission_files import copy_regular, regular_files


def template(course: Course, lab: str, tmp: Path) -> Path:
    """A course directory whose source is the *release* (no hidden tests), with its own gradebook."""
    root = tmp / "template"
    shutil.copytree(course.path("release", lab), root / "source" / lab)
    run_nbgrader(GenerateAssignment, nbgrader_config(root), assignment=lab, student=".", force=True)
    return root


class KernelStep:
    """One student's kernel step in a throwaway course directory, started at once. ``refused``: the entries of
    the submission folder that were not copied (``"path (why)"``), for the student's feedback."""

    def __init__(self, jail: FeedbackJail, template: Path, folder: Path, lab: str, student: str):
        self.box = new_box()
        try:
            course = self.box / "course"
            shutil.copytree(template / "source", course / "source")
            shutil.copy2(template / "gradebook.db", course / "gradebook.db")  # the throwaway copy
            files, self.refused = regular_files(folder)
            target = course / "submitted" / student / lab
            target.mkdir(parents=True)
            for rel in files:
                try:
                    copy_regular(folder, rel, target / rel)
                except (OSError, ValueError) as err:  # changed since it was listed
                    self.refused.append(f"{rel} ({err.__class__.__name__})")
            seed_home(course / "home")
            self.running = jail.start(self.box, lab, student)
        except BaseException:
            shutil.rmtree(self.box, ignore_errors=True)
            raise

    def cancel(self) -> None:
        self.running.kill()
        shutil.rmtree(self.box, ignore_errors=True)

    def finish(self) -> tuple[KernelRun, nbformat.NotebookNode | None]:
        """The jail's :class:`KernelRun` and the executed notebook (None when there is none)."""
        try:
            run = self.running.wait()
            try:
                executed = nbformat.reads(run.notebook.read_text(encoding="utf-8"), as_version=4) if run.ok else None
            except Exception as err:  # the kernel may have overwritten it
                run.ok, run.problem, executed = False, f"the executed notebook was unreadable ({err.__class__.__name__})", None
            return run, executed
        finally:
            shutil.rmtree(self.box, ignore_errors=True)


def seed_home(home: Path) -> None:
    """What the kernel's fresh HOME takes from the grader's: matplotlib's font list (so that it is not rebuilt,
    seconds, for every student) and labkit's per-user data_paths.toml (so that the kernel picks the same site)."""
    for folder in (os.environ.get("MPLCONFIGDIR"), "~/.cache/matplotlib", "~/.config/matplotlib"):
        cached = sorted(Path(folder).expanduser().glob("fontlist-*.json")) if folder else []
        if cached:
            (home / "matplotlib").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cached[-1], home / "matplotlib" / cached[-1].name)
            break
    try:
        from labkit.config import USER_FILE
    except ImportError:
        return
    if USER_FILE.is_file():
        (home / ".config" / "labkit").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(USER_FILE, home / ".config" / "labkit" / "data_paths.toml")


def prepare_data() -> None:
    """Write labkit's synthetic stand-ins now if the data site wants them: the kernel step may run
    as a user who cannot write there."""
    os.environ.setdefault("LABKIT_DATA_PATHS", str(REPO_ROOT / "data_paths.toml"))
    try:
        from labkit import config
        from labkit.datasets import standins

        site = config.get_site()
        if site.synthetic:
            standins.write_standins(site.root)
    except Exception as err:  # the notebook will say what is missing
        print(f"[autograde] could not prepare labkit's stand-in data: {err}", file=sys.stderr)


def hidden_paths(course: Course) -> list[Path]:
    """What the kernel step must not see even should a folder it reads hold it: the course directory, the lab
    sources, the repository with its history, tests and judge (the jail's root holds none of them anyway)."""
    candidates = [course.root, course.labs.source_dir, REPO_ROOT, *(REPO_ROOT / name for name in (".git", "tests", "autograder"))]
    return [p.resolve() for p in candidates if p.is_dir()]


def save_log(course: Course, lab: str, student: str, log: str) -> None:
    path = course.root / "logs" / lab / f"{student}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(log)
