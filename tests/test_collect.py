"""``collect LAB --zip FILE``: LMS downloads (Canvas, Moodle, plain) into submitted/<student>/<lab>/, and what
it refuses before writing anything (path traversal, links, oversized archives, duplicate students)."""
from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest

from autograder.__main__ import main
from autograder.collect import collect
from autograder.course import Course, CourseError, Labs

FIXTURE_LABS = Path(__file__).parent / "fixtures" / "labs"
LAB = "fixture_lab"
NB = b'{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'


def make_zip(path: Path, entries: dict[str, bytes], links: dict[str, str] = {}) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in links.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


@pytest.fixture
def course(tmp_path):
    return Course(tmp_path / "course", labs=Labs(FIXTURE_LABS))


def submitted(course: Course) -> dict[str, list[str]]:
    root = course.root / "submitted"
    return {p.parent.name: sorted(str(f.relative_to(p)) for f in p.rglob("*") if f.is_file())
            for p in sorted(root.glob(f"*/{LAB}"))} if root.is_dir() else {}


def test_canvas_download(course, tmp_path):
    archive = make_zip(tmp_path / "canvas.zip", {
        f"smithjane_12345_678_{LAB}.ipynb": NB,
        f"doejohn_late_23456_789_{LAB}-1.ipynb": NB,  # late, resubmitted: Canvas's -1
        "leeann_34567_890_data.csv": b"1,2\n",  # no notebook
    })
    lines: list[str] = []
    result = collect(course, LAB, archive, fmt="canvas", out=lines.append)
    assert submitted(course) == {"doejohn": [f"{LAB}.ipynb"], "leeann": ["data.csv"], "smithjane": [f"{LAB}.ipynb"]}
    assert result.without_notebook == ["leeann"]
    assert any("leeann: no fixture_lab.ipynb (found: data.csv)" in line for line in lines)


def test_moodle_and_plain_downloads(course, tmp_path):
    moodle = make_zip(tmp_path / "moodle.zip", {
        f"Jane Smith_101_assignsubmission_file_/{LAB}.ipynb": NB,
        "José Núñez_102_assignsubmission_file_/extra/notes.txt": b"hi",
        "__MACOSX/._junk": b"",
    })
    collect(course, LAB, moodle, fmt="moodle", out=lambda line: None)
    assert submitted(course) == {"jane_smith": [f"{LAB}.ipynb"], "jos_n_ez": ["extra/notes.txt"]}
    plain = make_zip(tmp_path / "plain.zip", {f"alice/{LAB}.ipynb": NB, f"bob/{LAB}/{LAB}.ipynb": NB,
                                              "jane_smith/other.ipynb": NB})
    collect(course, LAB, plain, fmt="plain", out=lambda line: None)
    found = submitted(course)
    assert found["alice"] == found["bob"] == [f"{LAB}.ipynb"]
    assert found["jane_smith"] == ["other.ipynb"]  # the new download replaces the student's folder


@pytest.mark.parametrize("entries, links, fmt, message", [
    ({f"../evil/{LAB}.ipynb": NB}, {}, "plain", "../evil/fixture_lab.ipynb: a path outside"),
    ({f"/etc/{LAB}.ipynb": NB}, {}, "plain", "/etc/fixture_lab.ipynb: a path outside"),
    ({f"alice/{LAB}.ipynb": NB}, {f"bob/{LAB}.ipynb": "/work/course/gradebook.db"}, "plain",
     "bob/fixture_lab.ipynb: a symbolic link"),
    ({f"smith_1_2_{LAB}.ipynb": NB, f"smith_3_4_{LAB}.ipynb": NB}, {}, "canvas",
     "the same file twice for student 'smith'"),
    ({f"Ann Lee_1_assignsubmission_file_/{LAB}.ipynb": NB, f"Ann  Lee_2_assignsubmission_file_/{LAB}.ipynb": NB},
     {}, "moodle", "the same file twice for student 'ann_lee'"),
    ({f"{LAB}.ipynb": NB}, {}, "canvas", "not a Canvas submission name"),
])
def test_refused_archives_write_nothing_and_name_the_entry(course, tmp_path, entries, links, fmt, message):
    archive = make_zip(tmp_path / "bad.zip", {f"good/{LAB}.ipynb": NB} if fmt == "plain" else {}, {})
    with zipfile.ZipFile(archive, "a") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in links.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    with pytest.raises(CourseError, match=message.replace("(", r"\(").replace("'", "'")):
        collect(course, LAB, archive, fmt=fmt, out=lambda line: None)
    assert submitted(course) == {}
    assert not (tmp_path / "evil").exists()


def test_an_archive_over_the_size_limit_is_refused(course, tmp_path):
    archive = make_zip(tmp_path / "big.zip", {f"alice/{LAB}.ipynb": NB, "bob/data.bin": b"\0" * (3 * 2**20)})
    with pytest.raises(CourseError, match=r"more than 2 MB uncompressed \(at bob/data.bin\)"):
        collect(course, LAB, archive, max_mb=2, out=lambda line: None)
    assert submitted(course) == {}


def test_the_cli_collects_and_says_what_is_wrong(course, tmp_path, capsys):
    archive = make_zip(tmp_path / "plain.zip", {f"alice/{LAB}.ipynb": NB})
    args = ["--labs-dir", str(FIXTURE_LABS), "collect", LAB, "--course-dir", str(course.root), "--zip"]
    assert main([*args, str(archive)]) == 0
    assert submitted(course) == {"alice": [f"{LAB}.ipynb"]}
    assert main([*args, str(tmp_path / "missing.zip")]) == 2
    assert "missing.zip: not a readable zip archive" in capsys.readouterr().err
