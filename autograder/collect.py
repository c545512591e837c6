"""``collect LAB --zip FILE``: an LMS download unpacked into ``submitted/<student>/<lab>/``, as nbgrader's
``zip_collect`` would, after checking the whole archive first.

Formats (the student id is taken from each entry's name):

- ``canvas``: flat files ``<name>[_late]_<user id>_<submission id>_<file>`` (Canvas's "Download
  Submissions"); the student is ``<name>``, Canvas's ``-1``, ``-2`` resubmission suffix is dropped from the
  file name (``lab1-1.ipynb`` -> ``lab1.ipynb``);
- ``moodle``: folders ``<Full Name>_<participant id>_assignsubmission_file_/<file>``; the student is the
  name in lower case with ``_`` for anything but letters and digits;
- ``plain``: ``<student>/<file>`` (or ``<student>/<lab>/<file>``), one folder per student.

Nothing is written unless the whole archive passes: an entry with an absolute path or ``..`` (path
traversal), a symbolic link, an archive whose files add up to more than ``max_mb`` (or one entry over the
notebook limit), two entries that give one student the same file, or a student id that is not a plain name
is refused with a message naming the entry. A student whose files hold no ``<lab>.ipynb`` is reported (the
grader then tells the student so). Each student's ``submitted/<student>/<lab>/`` is replaced by the
archive's files.
"""
from __future__ import annotations

import re
import shutil
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .course import Course, CourseError

FORMATS = ("canvas", "moodle", "plain")
MAX_MB = 2048  # all files of the archive together, uncompressed
MAX_FILE_MB = 256  # one file (the grader reads notebooks up to 50 MB and a submission's files up to 256 MB)
STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
CANVAS = re.compile(r"(?P<student>[A-Za-z0-9]+?)(?:_late)?_(?P<uid>\d+)_(?P<sid>\d+)_(?P<file>.+)")
MOODLE = re.compile(r"(?P<name>.+?)_(?P<id>\d+)_assignsubmission_(?:file|onlinetext)_?")
SKIP = ("__MACOSX/", ".DS_Store")


@dataclass
class Collected:
    students: dict[str, list[str]] = field(default_factory=dict)  # student -> files written
    without_notebook: list[str] = field(default_factory=list)


def _target(info: zipfile.ZipInfo, fmt: str, lab: str) -> tuple[str, str] | None:
    """(student, file path inside the lab folder) for an entry, None for an entry to skip; CourseError if it
    does not follow the format."""
    name = info.filename
    parts = PurePosixPath(name).parts
    if fmt == "canvas":
        base = parts[-1]
        match = CANVAS.fullmatch(base)
        if match is None:
            raise CourseError(f"{name}: not a Canvas submission name (<name>[_late]_<user id>_<id>_<file>)")
        file = re.sub(r"-\d+(\.[^.]+)$", r"\1", match["file"])
        return match["student"].lower(), file
    if fmt == "moodle":
        match = MOODLE.fullmatch(parts[0]) if len(parts) > 1 else None
        if match is None:
            raise CourseError(f"{name}: not in a Moodle submission folder (<Full Name>_<id>_assignsubmission_file_/)")
        student = re.sub(r"[^a-z0-9]+", "_", match["name"].lower()).strip("_")
        return student, "/".join(parts[1:])
    if len(parts) < 2:
        raise CourseError(f"{name}: not in a student's folder (<student>/<file>)")
    rest = parts[2:] if len(parts) > 2 and parts[1] == lab else parts[1:]
    return parts[0], "/".join(rest)


def _check(info: zipfile.ZipInfo) -> None:
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise CourseError(f"{name}: a symbolic link; refused (the archive is not unpacked)")
    path = PurePosixPath(name.replace("\\", "/"))
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name) or ".." in path.parts:
        raise CourseError(f"{name}: a path outside the archive's folder (path traversal); refused (the archive is not "
                          "unpacked)")
    if info.file_size > MAX_FILE_MB * 2**20:
        raise CourseError(f"{name}: {info.file_size / 2**20:.0f} MB, over the {MAX_FILE_MB} MB allowed for one file")


def collect(course: Course, lab: str, archive: Path, *, fmt: str = "plain", max_mb: int = MAX_MB,
            out=print) -> Collected:
    """Unpack ``archive`` into ``course``'s ``submitted/`` (see the module docstring)."""
    if fmt not in FORMATS:
        raise CourseError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    archive = Path(archive)
    try:
        zf = zipfile.ZipFile(archive)
    except (OSError, zipfile.BadZipFile) as err:
        raise CourseError(f"{archive}: not a readable zip archive ({err})") from None
    with zf:
        plan: dict[tuple[str, str], zipfile.ZipInfo] = {}
        total = 0
        for info in zf.infolist():
            _check(info)
            if info.is_dir() or any(s in info.filename for s in SKIP):
                continue
            total += info.file_size
            if total > max_mb * 2**20:
                raise CourseError(f"{archive}: more than {max_mb} MB uncompressed (at {info.filename}); refused")
            student, file = _target(info, fmt, lab)
            if not STUDENT_ID.fullmatch(student):
                raise CourseError(f"{info.filename}: {student!r} is not a usable student id")
            if not file or ".." in PurePosixPath(file).parts:
                raise CourseError(f"{info.filename}: no file name after the student's part")
            if (student, file) in plan:
                raise CourseError(f"{info.filename} and {plan[student, file].filename}: the same file twice for "
                                  f"student {student!r} (two students with one id?); refused")
            plan[student, file] = info
        result = Collected()
        for (student, file), info in sorted(plan.items()):
            result.students.setdefault(student, []).append(file)
        if not result.students:
            raise CourseError(f"{archive}: no submissions in it")
        submitted = (course.root / "submitted").resolve()
        for student, files in result.students.items():
            folder = course.path("submitted", lab, student)
            if folder.exists():
                shutil.rmtree(folder)
            for file in files:
                dest = (folder / file).resolve()
                if submitted not in dest.parents:  # checked above; never written outside
                    raise CourseError(f"{plan[student, file].filename}: would be written outside {submitted}")
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(plan[student, file]) as src, open(dest, "wb") as sink:
                    shutil.copyfileobj(src, sink, 1 << 20)
            if f"{lab}.ipynb" not in files:
                result.without_notebook.append(student)
    out(f"[collect] {lab}: {len(result.students)} student(s), {len(plan)} file(s) from {archive.name} "
        f"({fmt}) into {course.root / 'submitted'}/<student>/{lab}/")
    for student in result.without_notebook:
        out(f"[collect]   {student}: no {lab}.ipynb (found: {', '.join(result.students[student])})")
    return result
