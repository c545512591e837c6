"""The scoring jail, parent side: the child whose arrays become scores. Prepare its folder, start it confined,
stop it, read back arrays. (nbgrader's kernel run, which only makes feedback outputs, is autograder/feedback_jail.py.)

What is in force depends on the machine, probed once per process (:func:`capabilities`):

- always: a separate process in a new session; resource limits (memory as
  RLIMIT_DATA, since torch maps GBs of address space it never uses: import torch
  + labkit needs ~0.9 GB of RLIMIT_DATA but ~3.6 GB of RLIMIT_AS, so RLIMIT_AS is
  only a loose backstop), CPU, file size, open files, no core dumps; a wall-clock
  limit after which the whole process group is killed; stdout/stderr into files
  of which only the first KBs are read; results only as numeric arrays, sent
  through a pipe (:mod:`.channel`) of which only the first MBs are kept;
- as root, where ``unshare`` works: new mount, PID, network, IPC and UTS
  namespaces, the jail of :mod:`autograder.judge.confine`, and a per-run uid
  with no account (so RLIMIT_NPROC binds and every process it leaves can be killed);
- as root without namespaces: the per-run uid only if the Python installation
  is reachable by other users, else root (said so);
- not root: the same user, said so; processes that left the process group are
  found by a token in their environment and killed.
"""
from __future__ import annotations

import functools
import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import channel
from .arrays import encode
from .processes import chown_tree, fresh_uid, kill_all
from .results import MAX_OUTPUT_BYTES, read_arrays, read_status
from .stubs import stub_references, withhold
from .verdicts import Isolation

ENGINE = __package__  # "autograder.judge"
BOOT = ("import sys; sys.path.insert(0, sys.argv[1] + '/lib'); "
        f"from {ENGINE}.scoring_child import main; main(sys.argv[1])")
NAMESPACES = ["--mount", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child"]
MAX_WORK_BYTES = 256 * 2**20
LOG_HEAD = 16 * 1024


@dataclass(frozen=True)
class Limits:
    time_s: float = 300.0
    memory_mb: int = 4096
    file_mb: int = 64
    nproc: int = 256
    nofile: int = 1024
    tmp_mb: int = 256  # the jail's /tmp
    work_mb: int = 512  # the jail's work folder (both tmpfs: RAM, but bounded)
    stream_cap: int = 64 * 1024  # characters of stdout/stderr kept, the rest is dropped
    address_space_extra_mb: int = 8192  # RLIMIT_AS = memory + this (library mappings, thread stacks)

    @property
    def cell_s(self) -> float:
        return max(5.0, self.time_s / 2)

    @property
    def probe_s(self) -> float:
        return max(10.0, self.time_s / 5)

    def rlimits(self, nproc: bool) -> dict:
        return {"data_mb": self.memory_mb, "as_mb": self.memory_mb + self.address_space_extra_mb,
                "cpu_s": int(2 * self.time_s + 10), "fsize_mb": self.file_mb, "nofile": self.nofile,
                "core": 0, "nproc": self.nproc if nproc else None}


@dataclass(frozen=True)
class Capabilities:
    root: bool
    jail: bool
    drop_user: bool
    notes: tuple[str, ...] = ()


@dataclass
class ChildRun:
    """What came back: arrays per exercise and case, the child's status report, and how it ended."""

    outputs: dict = field(default_factory=dict)  # grade_id -> case -> key -> array
    status: dict = field(default_factory=dict)
    returncode: int | None = None
    timed_out: bool = False
    seconds: float = 0.0
    stdout: str = ""
    stderr: str = ""


def _head(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(LOG_HEAD).decode("utf-8", "replace")
    except OSError:
        return ""


# ---------------------------------------------------------------------------- the child's folder

def _copy_package(lib: Path, dotted: str) -> None:
    """A copy of the importable package ``dotted`` under ``lib`` (its parents get empty ``__init__`` files)."""
    spec = importlib.util.find_spec(dotted)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"{dotted!r} is not an importable package")
    target = lib.joinpath(*dotted.split("."))
    if target.exists():
        return
    shutil.copytree(next(iter(spec.submodule_search_locations)), target,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for parent in target.relative_to(lib).parents:
        init = lib / parent / "__init__.py"
        if parent != Path(".") and not init.exists():
            init.write_text('"""Part of the scoring child\'s copy of the code it needs."""\n')


def _copy_lib(lib: Path, packages) -> None:
    """The child's own copy of the engine, of the exercises' package and of ``packages`` (no path into the
    repository). ``packages`` holds dotted names of packages or modules; a module brings its package."""
    lib.mkdir(parents=True)
    for dotted in (ENGINE, *packages):
        spec = importlib.util.find_spec(dotted)
        _copy_package(lib, dotted if spec is not None and spec.submodule_search_locations else
                      dotted.rpartition(".")[0])


def _copy_files(folder: Path | None, skip: str, work: Path) -> None:
    """The submission folder's other files (no symlinks followed, at most MAX_WORK_BYTES)."""
    if folder is None or not folder.is_dir():
        return
    budget = MAX_WORK_BYTES
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d != ".ipynb_checkpoints" and not os.path.islink(os.path.join(root, d))]
        rel = Path(root).relative_to(folder)
        (work / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            src = Path(root) / name
            if (rel == Path(".") and name == skip) or src.is_symlink() or not src.is_file():
                continue
            try:
                budget -= src.stat().st_size
                if budget < 0:
                    return
                shutil.copyfile(src, work / rel / name)
            except OSError:  # vanished or unreadable: the child simply does not get it
                continue


def _seed_font_cache(target: Path) -> None:
    """matplotlib's font list from the grader's cache, so that the child does not rebuild it (~1 s) on import."""
    for folder in (os.environ.get("MPLCONFIGDIR"), "~/.cache/matplotlib", "~/.config/matplotlib"):
        cached = sorted(Path(folder).expanduser().glob("fontlist-*.json")) if folder else []
        if cached:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cached[-1], target / cached[-1].name)
            return




def _feed(pipe, data: bytes) -> None:
    """Write ``data`` to the child's stdin and close it; a child that never reads (or died) just ends it."""
    try:
        pipe.write(data)
    except OSError:
        pass
    finally:
        try:
            pipe.close()
        except OSError:
            pass


def _reachable_by_others(path: Path) -> bool:
    """Every folder above ``path`` can be traversed by other users."""
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in [path, *path.parents])


@functools.cache
def capabilities() -> Capabilities:
    """What this machine allows, tried for real once (a jailed child that drops its uid and imports numpy)."""
    if os.geteuid() != 0:
        return Capabilities(False, False, False, ("not root: the child runs as the grader's own user",))
    notes = []
    if shutil.which("unshare"):
        probe = ScoringJail(Capabilities(True, True, True), Limits(time_s=60, memory_mb=2048))
        run = probe.run({"selftest": True}, {}, None, "", ())
        if run.returncode == 0 and run.status.get("progress") == "selftest":
            return Capabilities(True, True, True)
        notes.append(f"namespaces unavailable (unshare failed: {run.stderr.strip()[-200:] or run.returncode})")
    else:
        notes.append("namespaces unavailable (no unshare)")
    python_ok = all(_reachable_by_others(Path(p)) for p in (sys.prefix, os.path.realpath(sys.base_prefix)))
    if not python_ok:
        notes.append("the Python installation is not reachable by other users: the child stays root")
    return Capabilities(True, False, python_ok, tuple(notes))


class ScoringJail:
    """Runs one child under the limits, with the isolation the machine allows."""

    def __init__(self, caps: Capabilities | None = None, limits: Limits = Limits()):
        self.caps = caps or capabilities()
        self.limits = limits

    def isolation(self) -> Isolation:
        lim, caps = self.limits, self.caps
        other = list(caps.notes)
        if caps.jail:
            other += ["namespaces: mount, pid, net, ipc, uts (util-linux unshare); no network",
                      "filesystem: chroot into a tmpfs root with read-only /usr, selected /etc files, the Python "
                      "installation and venv, the judge's copy of its code and labkit; the repository (source "
                      "notebooks), the course directory (gradebook) and home folders are absent; nothing on the "
                      f"host's disk is writable: its work folder is a {lim.work_mb} MB tmpfs holding a copy of the "
                      f"submission's files, /tmp a {lim.tmp_mb} MB tmpfs"]
        rl = lim.rlimits(caps.drop_user)
        other.append(f"rlimits: DATA {rl['data_mb']} MB, AS {rl['as_mb']} MB, CPU {rl['cpu_s']} s, FSIZE "
                     f"{rl['fsize_mb']} MB, NOFILE {rl['nofile']}, CORE 0"
                     + (f", NPROC {rl['nproc']}" if rl["nproc"] else ""))
        other.append(f"time: {lim.time_s:.0f} s wall clock for the run (then its process group"
                     f"{' and every process of its uid are' if caps.drop_user else ' is'} killed), "
                     f"{lim.cell_s:.0f} s per cell, {lim.probe_s:.0f} s per graded function")
        other.append(f"inputs through stdin, read only after the student's cells ran; references the exercises "
                     "reimplement are stubs in the child's copy of labkit, shipped weights withheld; "
                     f"results: numeric arrays only (a bounded record format, no zip, no pickle) through a pipe, first "
                     f"{MAX_OUTPUT_BYTES // 2**20} MB kept; stdout/stderr capped at {lim.stream_cap // 1024} KB; "
                     "OMP/MKL threads 1")
        if caps.drop_user:
            user = "a fresh uid per run (no account, no groups, no_new_privs)"
        else:
            user = ("root (no unprivileged user possible)" if caps.root
                    else f"uid {os.geteuid()} (the grader's own user)")
        return Isolation(separate_process=True, user=user, memory_limit_mb=lim.memory_mb, time_limit_s=lim.time_s,
                         other=other)

    def run(self, plan: dict, inputs: dict[str, np.ndarray], folder: Path | None, skip: str,
            packages: tuple[str, ...], hide: tuple[Path, ...] = (), withheld: tuple[str, ...] = ()) -> ChildRun:
        """Run the child on ``plan`` and ``inputs`` with ``folder``'s files (but ``skip``) and a copy of
        ``packages``; never raises for anything the child does. ``hide``: folders to blank out should the
        jail's bound folders hold them; ``withheld``: glob patterns of files left out of the packages' copy.
        ``plan["tripwires"]`` are also stubbed out of that copy (:mod:`.stubs`)."""
        box = Path(tempfile.mkdtemp(prefix="judge-"))
        uid = fresh_uid() if self.caps.drop_user else None
        read_end, write_end = os.pipe()
        reader = channel.Reader(read_end, MAX_OUTPUT_BYTES)
        try:
            try:
                plan = self._prepare(box, plan, inputs, folder, skip, packages, uid, write_end, hide, withheld)
                reader.start()
                proc, start = self._start(box, write_end), time.monotonic()
            finally:
                os.close(write_end)  # the child holds the only write end now: end of file when it is gone
            # The inputs go down the child's stdin, which it reads only after the student's cells have run:
            # nothing on its disk tells the student's code at cell time what the probes will ask.
            threading.Thread(target=_feed, args=(proc.stdin, encode(inputs)), daemon=True).start()
            return self._finish(proc, start, box, plan, uid, reader)
        finally:
            if reader.is_alive():
                reader.stop()
            os.close(read_end)  # only now: the reader thread is done with it
            shutil.rmtree(box, ignore_errors=True)

    def _prepare(self, box: Path, plan: dict, inputs, folder, skip, packages, uid, channel_fd: int, hide,
                 withheld) -> dict:
        os.chmod(box, 0o711)
        for name in ("io", "work"):
            (box / name).mkdir()
        _copy_lib(box / "lib", packages)
        stub_references(box / "lib", plan.get("tripwires", ()))
        withhold(box / "lib", withheld)
        _copy_files(folder, skip, box / "work")
        _seed_font_cache(box / "work" / ".config" / "matplotlib")
        lim = self.limits
        plan = {**plan, "work": str(box / "work"), "uid": uid, "gid": uid, "channel_fd": channel_fd,
                "limits": lim.rlimits(uid is not None), "cell_s": lim.cell_s, "probe_s": lim.probe_s,
                "stream_cap": lim.stream_cap, "jail": None}
        if self.caps.jail:
            (box / "jail").mkdir()
            ro = [sys.prefix, os.path.realpath(sys.base_prefix), str(box / "lib"), str(box / "io")]
            needed = [Path(p) for p in ro] + [box]
            hidden = [Path(p).resolve() for p in hide]  # never a folder that holds what the child needs
            hidden = [str(p) for p in hidden if not any(p == q or p in q.parents for q in needed)]
            plan["jail"] = {"root": str(box / "jail"), "tmp_mb": lim.tmp_mb, "work": str(box / "work"),
                            "work_mb": lim.work_mb, "ro": ro, "hide": hidden}
        (box / "io" / "plan.json").write_text(json.dumps(plan))
        for path in box.rglob("*"):
            if not path.is_symlink():
                path.chmod(0o755 if path.is_dir() else 0o644)
        if uid is not None:
            chown_tree(box / "work", uid, uid)
            (box / "work").chmod(0o700)
        return plan

    def _environment(self, box: Path) -> dict:
        work = str(box / "work")
        return {"JUDGE_RUN": box.name, "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
                "HOME": work,
                "USER": "student", "LOGNAME": "student", "LANG": "C.UTF-8",
                "TMPDIR": "/tmp" if self.caps.jail else work, "MPLBACKEND": "Agg",
                "MPLCONFIGDIR": f"{work}/.config/matplotlib", "XDG_CACHE_HOME": f"{work}/.cache",
                "LABKIT_SCALE": "grade", "NBGRADER_EXECUTION": "autograde", "PYTHONDONTWRITEBYTECODE": "1",
                "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                "TQDM_DISABLE": "1"}

    def _start(self, box: Path, write_end: int) -> subprocess.Popen:
        cmd = [sys.executable, "-I", "-c", BOOT, str(box)]
        if self.caps.jail:
            cmd = [shutil.which("unshare"), *NAMESPACES, *cmd]
        with open(box / "stdout.log", "wb") as out, open(box / "stderr.log", "wb") as err:
            return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=err, cwd=box / "io",
                                    env=self._environment(box), start_new_session=True, pass_fds=(write_end,))

    def _finish(self, proc: subprocess.Popen, start: float, box: Path, plan: dict, uid: int | None,
                reader: channel.Reader) -> ChildRun:
        """Wait for the child within the time limit, kill everything it left, and read what it sent."""
        run = ChildRun()
        try:
            run.returncode = proc.wait(timeout=self.limits.time_s)
        except subprocess.TimeoutExpired:
            run.timed_out = True
        finally:
            kill_all(proc, marker=f"JUDGE_RUN={box.name}", uid=uid)
        reader.join(timeout=5)
        reader.stop()
        run.seconds = time.monotonic() - start
        run.stdout, run.stderr = _head(box / "stdout.log"), _head(box / "stderr.log")
        status, arrays = None, {}
        for kind, name, payload in channel.parse(bytes(reader.data)):
            if kind == b"S":
                status = payload
            elif kind == b"A":
                arrays[name] = payload
        run.status = read_status(status)
        for exercise in plan.get("exercises", []):
            run.outputs[exercise["grade_id"]] = read_arrays(arrays.get(exercise["grade_id"]))
        return run
