"""The kernel step of ``autograde``: per student, nbgrader's kernel run in the feedback jail, for the outputs
the feedback shows (never a score; :mod:`autograder.feedback_jail` is the jail itself).

One throwaway course directory per batch whose source is the *release* (no hidden
tests), copied per student with that student's submission and a throwaway
gradebook; the jail runs ``nbgrader autograde`` there while the judge scores.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat
from nbgrader.converters import GenerateAssignment

from .course import REPO_ROOT, Course, nbgrader_config, run_nbgrader
from .feedback_jail import FeedbackJail, KernelRun


def template(course: Course, lab: str, tmp: Path) -> Path:
    """A course directory whose source is the *release* (no hidden tests), with its own gradebook."""
    root = tmp / "template"
    shutil.copytree(course.path("release", lab), root / "source" / lab)
    run_nbgrader(GenerateAssignment, nbgrader_config(root), assignment=lab, student=".", force=True)
    return root


class KernelStep:
    """One student's kernel step in a throwaway course directory, started at once."""

    def __init__(self, jail: FeedbackJail, template: Path, folder: Path, lab: str, student: str):
        self.work = Path(tempfile.mkdtemp(prefix="autograder-kernel-"))
        shutil.copytree(template / "source", self.work / "source")
        shutil.copy2(template / "gradebook.db", self.work / "gradebook.db")  # the throwaway copy
        shutil.copytree(folder, self.work / "submitted" / student / lab, symlinks=True,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        self.running = jail.start(self.work, lab, student)

    def cancel(self) -> None:
        self.running.kill()
        shutil.rmtree(self.work, ignore_errors=True)

    def finish(self) -> tuple[KernelRun, nbformat.NotebookNode | None]:
        """The jail's :class:`KernelRun` and the executed notebook (None when there is none)."""
        try:
            run = self.running.wait()
            try:
                executed = nbformat.read(run.notebook, as_version=4) if run.ok else None
            except Exception as err:  # the kernel may have overwritten it
                run.ok, run.problem, executed = False, f"the executed notebook was unreadable ({err.__class__.__name__})", None
            return run, executed
        finally:
            shutil.rmtree(self.work, ignore_errors=True)


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
    except Exception as err:  # the notebook will say what is missing; grading goes on
        print(f"[autograde] could not prepare labkit's stand-in data: {err}", file=sys.stderr)


def hidden_paths(course: Course) -> list[Path]:
    """What the kernel step must not see: the course directory, the lab sources and the judge
    (skipping any that would hide what the kernel needs: the interpreter, labkit, the temp dir)."""
    needed = [Path(tempfile.gettempdir()), Path(sys.prefix), Path(sys.executable), REPO_ROOT / "labkit"]
    needed = [p.resolve() for p in needed]
    candidates = [course.root, course.labs.source_dir.resolve(), REPO_ROOT / "autograder"]
    return [p for p in candidates if p.is_dir() and not any(n == p or p in n.parents for n in needed)]


def save_log(course: Course, lab: str, student: str, log: str) -> None:
    path = course.root / "logs" / lab / f"{student}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(log)
