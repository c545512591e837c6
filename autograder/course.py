"""The labs in this repository and a grading workspace (nbgrader's course directory).

A lab is a folder ``labs/source/<lab>/`` holding the nbgrader source notebook
``<lab>.ipynb`` (solutions and hidden tests); its student version is generated
into ``labs/release/<lab>/`` (see :mod:`autograder.release`).

A course directory is nbgrader's layout, outside the repository::

    <course-dir>/
        submitted/<student>/<lab>/<lab>.ipynb   what students handed in (the only part you provide)
        source/<lab>/                          copied from labs/source on every run
        release/<lab>/                         nbgrader's student version, regenerated on every run
        autograded/<student>/<lab>/            executed notebooks, the judge's verdicts in the test cells
        feedback/<student>/<lab>/<lab>.html    what students get back
        gradebook.db                           nbgrader's gradebook (or any SQLAlchemy URL, --db)
        nbgrader_config.py                     generated, so that nbgrader's formgrader works there
        logs/<lab>/<student>.log               the kernel step's nbgrader log, per student

nbgrader is driven in-process with a :class:`traitlets.config.Config` built here;
nothing depends on the caller's working directory or on ``nbgrader_config.py``. That
file is for nbgrader's own commands run in the course directory (the formgrader in
JupyterLab): see :func:`configure_nbgrader_commands`.
"""
from __future__ import annotations

import functools
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from nbconvert.exporters import NotebookExporter
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from traitlets import Bool
from traitlets.config import Config

REPO_ROOT = Path(__file__).resolve().parent.parent
LABS_DIR = REPO_ROOT / "labs"
# Files in a lab folder that never reach students or a course directory.
IGNORE = [".ipynb_checkpoints", "__pycache__", "*.pyc", ".DS_Store", "demo_submissions"]


class CourseError(Exception):
    """A problem the user can fix (unknown lab, wrong layout, ...); the CLI prints it without a traceback."""


def use_venv_path() -> None:
    """Put this interpreter's bin/ first on PATH: nbgrader runs the ``alembic`` executable from PATH
    (without it a new gradebook is half-created). Also asks alembic only once per process: nbgrader
    runs ``alembic heads`` in a subprocess for every new gradebook (seconds on a busy machine)."""
    import nbgrader.api

    bin_dir = str(Path(sys.executable).parent)
    parts = os.environ.get("PATH", "").split(os.pathsep)
    if parts[0] != bin_dir:
        os.environ["PATH"] = os.pathsep.join([bin_dir, *[p for p in parts if p != bin_dir]])
    if not hasattr(nbgrader.api.get_alembic_version, "cache_info"):
        nbgrader.api.get_alembic_version = functools.lru_cache(maxsize=1)(nbgrader.api.get_alembic_version)


# nbconvert's classic template (the feedback page, the formgrader's view of a submission) shows a
# figure at its pixel size: a row of ten images (1,500 px) ran off the right edge of the page.
# Scaled down to the column instead, as JupyterLab does.
FIT_FIGURES_CSS = "div.output_subarea img { max-width: 100%; height: auto; }"


class FitFigures(CSSHTMLHeaderPreprocessor):
    """nbconvert's inlined CSS (code highlighting) plus :data:`FIT_FIGURES_CSS`. It replaces what
    nbconvert's own CSS preprocessor wrote, so it runs after it or in its place."""

    enabled = Bool(True).tag(config=True)

    def preprocess(self, nb, resources):
        nb, resources = super().preprocess(nb, resources)
        resources["inlining"]["css"].append(FIT_FIGURES_CSS)
        return nb, resources


class JudgeOnly(NotebookExporter):
    """The exporter nbgrader's Autograde and GenerateFeedback get in a course directory: it refuses
    before they touch anything, naming the command to use instead (see :func:`configure_nbgrader_commands`)."""

    def __init__(self, *args, parent=None, **kwargs):
        from nbgrader.converters import GenerateFeedback

        coursedir = getattr(parent, "coursedir", None)
        lab = getattr(coursedir, "assignment_id", "") or "<lab>"
        root = getattr(coursedir, "root", "") or "<course-dir>"
        # one short line each: the formgrader shows the message in a <pre> that does not wrap
        if isinstance(parent, GenerateFeedback):
            raise CourseError(
                "\nFeedback for this course comes from\n"
                f"    python -m autograder feedback {lab} --course-dir {root}\n"
                "(the judge's verdicts, manual grades, hidden tests blanked, figures fitted to the page);\n"
                "nbgrader's own Generate Feedback is switched off here.")
        raise CourseError(
            "\nThis course is graded by the judge:\n"
            f"    python -m autograder autograde {lab} --course-dir {root}\n"
            "nbgrader's own Autograde is switched off here: it would replace the judge's scores\n"
            "with the kernel's test results, which student code can forge.")


def configure_nbgrader_commands(c: Config) -> None:
    """What the generated ``nbgrader_config.py`` adds for nbgrader's own commands in a course
    directory (the formgrader in JupyterLab, ``nbgrader ...`` in a terminal there):

    - this interpreter's bin/ on PATH, so that nbgrader finds ``alembic`` when the formgrader
      creates a gradebook (JupyterLab started as ``.venv/bin/jupyter lab`` lacks it: error 500 and
      a half-made gradebook);
    - Autograde and GenerateFeedback (the formgrader's buttons) refuse with the command to run:
      scores come from the judge, feedback from :mod:`autograder.feedback`;
    - the formgrader's view of a submission fits wide figures to the page (:class:`FitFigures`).
    """
    use_venv_path()
    c.Autograde.exporter_class = JudgeOnly
    c.GenerateFeedback.exporter_class = JudgeOnly
    c.HTMLExporter.preprocessors = [FitFigures]
    c.CSSHTMLHeaderPreprocessor.enabled = False  # the template's own would run after it, dropping the extra CSS


@dataclass(frozen=True)
class Labs:
    """The labs under ``root`` (``labs/`` in this repository): ``source/<lab>/<lab>.ipynb`` each."""

    root: Path = LABS_DIR

    @property
    def source_dir(self) -> Path:
        return self.root / "source"

    @property
    def release_dir(self) -> Path:
        return self.root / "release"

    def names(self) -> list[str]:
        if not self.source_dir.is_dir():
            return []
        return sorted(p.name for p in self.source_dir.iterdir() if (p / f"{p.name}.ipynb").is_file())

    def check(self, lab: str) -> str:
        if lab not in self.names():
            known = ", ".join(self.names()) or f"none yet (no labs/source/<lab>/<lab>.ipynb under {self.root})"
            raise CourseError(f"unknown lab {lab!r}; known labs: {known}")
        return lab

    def source(self, lab: str) -> Path:
        return self.source_dir / lab / f"{lab}.ipynb"

    def release(self, lab: str) -> Path:
        return self.release_dir / lab / f"{lab}.ipynb"


def copy_lab_folder(src: Path, dest: Path) -> None:
    """Replace ``dest`` with ``src``, leaving out :data:`IGNORE` (caches, the demo submissions)."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(*IGNORE))


def nbgrader_config(root: Path, db_url: str | None = None, *, cell_timeout: int | None = None) -> Config:
    """nbgrader settings for a course directory at ``root``."""
    c = Config()
    c.CourseDirectory.root = str(root)
    c.CourseDirectory.db_url = db_url or f"sqlite:///{root / 'gradebook.db'}"
    c.CourseDirectory.ignore = [*IGNORE, "*.log"]
    c.NbGraderAPI.log_level = "WARN"
    if cell_timeout is not None:
        c.Execute.timeout = cell_timeout
    return c


def run_nbgrader(converter_cls, config: Config, *, assignment: str, student: str = "*", **traits) -> str:
    """Run one nbgrader converter (GenerateAssignment, GenerateFeedback, ...) in-process; returns its log.

    Raises :class:`CourseError` with the tail of nbgrader's log when it fails.
    """
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.utils import capture_log

    use_venv_path()
    coursedir = CourseDirectory(config=config)
    coursedir.assignment_id = assignment
    coursedir.student_id = student
    app = converter_cls(coursedir=coursedir, config=config)
    for name, value in traits.items():
        setattr(app, name, value)
    result = capture_log(app)
    if not result["success"]:
        tail = "\n".join((result.get("log", "") + result.get("error", "")).strip().splitlines()[-15:])
        raise CourseError(f"nbgrader {converter_cls.__name__} failed for {assignment!r}:\n{tail}")
    return result.get("log", "")


def hide_password(db_url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(db_url).render_as_string(hide_password=True)


@dataclass
class Course:
    """A grading workspace in nbgrader's layout (see the module docstring)."""

    root: Path
    labs: Labs = field(default_factory=Labs)
    db_url: str | None = None
    course_id: str = ""  # nbgrader's default; one gradebook per course directory

    def __post_init__(self):
        self.root = Path(self.root).expanduser().resolve()
        if self.db_url is None:
            self.db_url = f"sqlite:///{self.root / 'gradebook.db'}"

    # -- layout ---------------------------------------------------------------
    def path(self, step: str, lab: str, student: str | None = None) -> Path:
        """``<root>/<step>/<student>/<lab>`` (or ``<root>/<step>/<lab>`` for source/release)."""
        return self.root / step / student / lab if student else self.root / step / lab

    def require_layout(self) -> None:
        if not (self.root / "submitted").is_dir():
            raise CourseError(
                f"{self.root} has no submitted/ folder. Expected nbgrader's layout: "
                f"{self.root}/submitted/<student>/<lab>/<lab>.ipynb (everything else is created)."
            )

    def submitted_students(self, lab: str) -> list[str]:
        """Students with a ``submitted/<student>/<lab>/`` folder (the notebook may still be missing)."""
        self.require_layout()
        return sorted(p.parent.name for p in (self.root / "submitted").glob(f"*/{lab}") if p.is_dir())

    def graded_students(self, lab: str) -> list[str]:
        return sorted(p.parent.name for p in (self.root / "autograded").glob(f"*/{lab}") if p.is_dir())

    def gradebook(self):
        from nbgrader.api import Gradebook

        use_venv_path()
        return Gradebook(self.db_url, self.course_id)

    def config(self, **kwargs) -> Config:
        c = nbgrader_config(self.root, self.db_url, **kwargs)
        c.CourseDirectory.course_id = self.course_id
        return c

    # -- set-up ---------------------------------------------------------------
    def prepare(self, lab: str, *, cell_timeout: int | None = None) -> Path:
        """Copy the lab's source in, write nbgrader_config.py, (re)generate the release and the
        gradebook's record of the assignment. Returns the release notebook."""
        from nbgrader.converters import GenerateAssignment

        self.labs.check(lab)
        self.root.mkdir(parents=True, exist_ok=True)
        copy_lab_folder(self.labs.source_dir / lab, self.path("source", lab))
        self.write_nbgrader_config(cell_timeout=cell_timeout)
        run_nbgrader(GenerateAssignment, self.config(), assignment=lab, student=".", force=True)
        return self.path("release", lab) / f"{lab}.ipynb"

    def write_nbgrader_config(self, *, cell_timeout: int | None = None) -> None:
        lines = [
            "# Generated by `python -m autograder` (autograder/course.py) on every run; edits are overwritten.",
            "# For nbgrader's own commands in this course directory: the formgrader (JupyterLab started",
            "# here, menu Nbgrader > Formgrader) for manual grading. Autograde and feedback are",
            "# `python -m autograder autograde|feedback`; nbgrader's own versions refuse here.",
            "import sys",
            "",
            "c = get_config()  # noqa: F821",
            f"c.CourseDirectory.root = {str(self.root)!r}",
            f"c.CourseDirectory.db_url = {self.db_url!r}",
            f"c.CourseDirectory.course_id = {self.course_id!r}",
            f"c.CourseDirectory.ignore = {[*IGNORE, '*.log']!r}",
        ]
        if cell_timeout is not None:
            lines.append(f"c.Execute.timeout = {cell_timeout!r}")
        lines += [
            "",
            "# The repository's autograder (not installed: used from the checkout).",
            f"if {str(REPO_ROOT)!r} not in sys.path:",
            f"    sys.path.append({str(REPO_ROOT)!r})",
            "from autograder.course import configure_nbgrader_commands  # noqa: E402",
            "",
            "configure_nbgrader_commands(c)",
        ]
        (self.root / "nbgrader_config.py").write_text("\n".join(lines) + "\n")

    def submitted_timestamp(self, lab: str, student: str):
        """The submission time nbgrader's ``collect`` writes to ``timestamp.txt``, if any."""
        from nbgrader.utils import parse_utc

        path = self.path("submitted", lab, student) / "timestamp.txt"
        try:
            return parse_utc(path.read_text().strip()) if path.is_file() else None
        except (ValueError, OverflowError):
            return None
