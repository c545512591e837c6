"""The files of a submission folder that the grader handles: real folders and regular files, nothing else.

A submission folder is the student's: a symbolic link in it may point at the source notebook or the
gradebook, a FIFO hangs whoever opens it, a device is not a file at all. :func:`regular_files` lists what
may be used and says, in words for the student, what was refused; :func:`copy_regular` copies one file
without following any link. Used for the kernel step's throwaway course and for the autograded folder.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from .kernel_boot import open_regular

MAX_FILES_MB = 256  # all regular files of one submission together, the notebook included
SKIPPED = (".ipynb_checkpoints",)  # Jupyter's autosaves: neither used nor reported


def regular_files(folder: Path, *, max_mb: int = MAX_FILES_MB) -> tuple[list[str], list[str]]:
    """``(files, refused)``: the relative paths of the regular files under ``folder`` (real folders only,
    sorted, at most ``max_mb`` together) and ``"path (why)"`` for everything else found there. Nothing if
    ``folder`` or the student's folder above it is a symbolic link."""
    linked = [p for p in (folder, folder.parent) if p.is_symlink()]
    if linked:
        return [], [f"{linked[0].name}/ (a symbolic link, not a folder)"]
    if not folder.is_dir():
        return [], []
    files, refused, budget = [], [], max_mb * 2**20

    def walk(path: Path, rel: str) -> None:
        nonlocal budget
        with os.scandir(path) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                name = f"{rel}{entry.name}"
                if entry.is_symlink():
                    refused.append(f"{name} (a symbolic link)")
                elif entry.is_dir(follow_symlinks=False):
                    if entry.name not in SKIPPED:
                        walk(Path(entry.path), f"{name}/")
                elif not entry.is_file(follow_symlinks=False):
                    refused.append(f"{name} (not a regular file)")
                else:
                    budget -= entry.stat(follow_symlinks=False).st_size
                    if budget < 0:
                        refused.append(f"{name} (over the {max_mb} MB allowed for the files of a submission)")
                    else:
                        files.append(name)

    walk(folder, "")
    return files, refused


def copy_regular(folder: Path, rel: str, dest: Path) -> None:
    """Copy ``folder/rel`` to ``dest`` if it is still a regular file reached through real folders (OSError or
    ValueError if not)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open_regular(str(folder), rel) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out)
