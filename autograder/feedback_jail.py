"""The feedback jail: nbgrader's kernel run for one student, for the outputs shown in feedback, never a score.

The student's code can do no harm to the batch here, and sees nothing it should not.

The kernel step only produces the outputs students see in their feedback; no
score comes from it (the judge grades, in its own scoring jail: :mod:`autograder.judge.scoring_jail`). It runs
``nbgrader autograde LAB --student S`` on a throwaway course directory (the submission's regular files, the
*release* notebook as nbgrader's source and a throwaway gradebook built from it: no hidden tests, no other
student, never the real gradebook; :mod:`autograder.kernel_step` stages it in a folder of its own, a *box*), with:

- a per-cell timeout (nbgrader's ``Execute.timeout``, the cell is interrupted
  and the run goes on) and a wall-clock limit for the whole run, after which
  everything is killed;
- resource limits inherited by nbgrader and the kernel: heap/anonymous memory
  (``RLIMIT_DATA``), file size, core dumps off, number of processes;
- a scrubbed environment (HOME and Jupyter's folders inside the throwaway course);
- where Linux namespaces are available (root, or unprivileged user namespaces), the jail of
  :mod:`autograder.kernel_boot`: new mount, PID, network, IPC and UTS namespaces; a new root that holds,
  read-only, only /usr, a few /etc files, the Python installation, its venv, labkit and the data site
  (:func:`kernel_needs`), so the repository (its .git, tests, sources, the judge), the course directory and
  home folders are not there at all; the throwaway course and /tmp, /var/tmp, /dev/shm on private
  size-limited tmpfs, so filling them touches neither the grader's disk nor its temporary folder and nothing
  written there outlives the step; when nbgrader ends, PID 1 kills every other process and hands the
  executed notebook back through a file descriptor, read as the student's uid without following a link;
- as root: a fresh uid per student (no account, no groups, no capabilities, no_new_privs); after the step
  every process of that uid (and every one carrying the run's token) is killed, so none outlives it;
- nbgrader's output reaches the grader through a pipe of which the last part is kept, never through a file
  the student could swap for a link.

Without namespaces the step runs in the box on the grader's disk and can read whatever its user can; the
executed notebook is then read back, once every process of the run is gone, without following links.
:meth:`FeedbackJail.describe` says which of these are in force, and the autograde log prints it.
"""
from __future__ import annotations

import importlib.util
import json
import os
import pwd
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .course import REPO_ROOT
from .judge.processes import chown_tree, fresh_uid, kill_all
from .kernel_boot import read_regular

BOOT = Path(__file__).with_name("kernel_boot.py")
INSIDE = Path("/course")  # the throwaway course's path in the jail's root
MAX_NOTEBOOK_BYTES = 64 * 2**20  # an executed notebook larger than this is not handed back
LOG_KEPT = 200_000  # characters of nbgrader's output kept (the end)


@dataclass(frozen=True)
class KernelLimits:
    cell_timeout: int = 120  # s per cell: nbgrader interrupts the cell and continues
    wall_timeout: int = 900  # s for the whole kernel step of one student
    memory_mb: int = 4096  # RLIMIT_DATA per process (torch's baseline is ~0.9 GB of it)
    file_mb: int = 512  # RLIMIT_FSIZE: largest file any of them may write
    processes: int = 512  # RLIMIT_NPROC (only binds an unprivileged uid)
    work_mb: int = 1024  # tmpfs of the throwaway course (the notebook, its outputs, what the kernel writes there)
    tmp_mb: int = 256  # tmpfs of each of /tmp and /var/tmp
    shm_mb: int = 256  # tmpfs of /dev/shm

    def describe(self) -> str:
        return (
            f"cell timeout {self.cell_timeout} s, wall {self.wall_timeout} s, memory {self.memory_mb} MB/process "
            f"(RLIMIT_DATA), files <= {self.file_mb} MB, core dumps off"
        )


@dataclass
class KernelRun:
    """What one kernel step left: the executed notebook (a file in the box only the grader wrote or the jail's
    PID 1 filled), or why there is none."""

    ok: bool
    seconds: float
    notebook: Path | None
    problem: str = ""  # empty when ok
    log: str = ""


# Passed through to the kernel when set: they choose the data site and the scale.
PASS_ENV = ("LABKIT_SITE", "LABKIT_DATA_PATHS", "LABKIT_SCALE", "LABKIT_PROGRESS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "LANG")
PROBE = ("import os, importlib.util as u, ipykernel, nbformat; "
         "assert u.find_spec('nbgrader') and u.find_spec('labkit'), 'nbgrader or labkit not importable'; "
         "assert not os.path.exists({repo!r} + '/.git'), 'the repository is visible'; "
         "assert {uid!r} is None or os.getuid() == {uid!r}, 'wrong uid'; "
         "open('probe', 'w').write('ok')")


def kernel_needs() -> list[Path]:
    """What nbgrader and the kernel must read (read-only in the jail): the Python installation, its venv,
    labkit and the data site with its ``data_paths.toml``; real paths, none inside another."""
    paths = [sys.base_prefix, sys.prefix]
    spec = importlib.util.find_spec("labkit")
    if spec is not None and spec.submodule_search_locations:
        paths += list(spec.submodule_search_locations)
    data_paths = os.environ.get("LABKIT_DATA_PATHS") or str(REPO_ROOT / "data_paths.toml")
    paths.append(data_paths)
    try:
        from labkit import config

        paths.append(str(config.get_site().root))
    except Exception as err:  # the notebook will say what is missing
        print(f"[autograde] the kernel step gets no data site: {err}", file=sys.stderr)
    real = sorted({Path(os.path.realpath(p)) for p in paths if os.path.exists(p)})
    return [p for p in real if not any(q in p.parents for q in real)]


def new_box() -> Path:
    """A root-only folder for one run: ``course/`` (the throwaway course, with ``home/tmp``) is the caller's to fill."""
    box = Path(tempfile.mkdtemp(prefix="autograder-kernel-"))
    (box / "course" / "home" / "tmp").mkdir(parents=True)
    return box


class FeedbackJail:
    """Runs nbgrader's autograde under :class:`KernelLimits`; probes once what isolation the machine allows."""

    def __init__(self, limits: KernelLimits = KernelLimits(), *, hide: list[Path] = (), namespaces: bool = True,
                 drop_privileges: bool = True):
        self.limits = limits
        self.hide = [Path(p).resolve() for p in hide]
        self.binds = kernel_needs()
        self.notes: list[str] = []
        self.fresh_uids = drop_privileges and os.geteuid() == 0 and shutil.which("setpriv") is not None
        self.unshare: list[str] | None = None
        self.net = False
        if namespaces:
            self._probe_jail()
        if self.unshare is None:
            self._probe_plain()

    # -- probes -------------------------------------------------------------
    def _probe_jail(self) -> None:
        """The first of: namespaces with (then without) a network namespace, a fresh uid (then none) that
        runs Python, nbgrader and labkit in the jail; notes why not if none does."""
        if shutil.which("unshare") is None:
            self.notes.append("no namespaces (no `unshare` executable): the kernel can read what its user can")
            return
        base = ["unshare", "--mount", "--pid", "--ipc", "--uts", "--fork", "--kill-child"]
        if os.geteuid() != 0:
            base[1:1] = ["--user", "--map-root-user"]
        failure = ""
        for fresh in ((True, False) if self.fresh_uids else (False,)):
            for net in (True, False):
                self.unshare, self.net = base + (["--net"] if net else []), net
                failure = self._probe(fresh)
                if not failure:
                    self.fresh_uids = fresh
                    return
        self.unshare = None
        self.notes.append(f"no namespaces (the jail did not start here: {failure[:300]}): the kernel can read "
                          "what its user can")

    def _probe_plain(self) -> None:
        if self.fresh_uids:
            failure = self._probe(True)
            if failure:
                self.fresh_uids = False
                self.notes.append(f"runs as ROOT: an unprivileged uid could not run {sys.executable} here "
                                  f"({failure[:200]})")
        elif os.geteuid() == 0:
            self.notes.append("runs as ROOT (no `setpriv` executable to drop privileges)")

    def _probe(self, fresh_uid_wanted: bool) -> str:
        """'' when a probe run works in the current configuration, else the reason."""
        box = new_box()
        try:
            uid = fresh_uid() if fresh_uid_wanted else None
            # outside a jail the repository is visible (the notes say so): nothing to check there
            check = PROBE.format(repo=str(REPO_ROOT) if self.unshare else "/nonexistent", uid=uid)
            running = self.launch(box, [sys.executable, "-c", check], "probe", uid=uid, wall_timeout=300)
            run = running.wait()
            if run.ok and run.notebook.read_bytes() == b"ok":
                return ""
            lines = [line for line in run.log.strip().splitlines() if line.strip()]
            return run.problem if not lines else lines[-1]
        except (OSError, subprocess.SubprocessError) as err:
            return f"{err.__class__.__name__}: {err}"
        finally:
            shutil.rmtree(box, ignore_errors=True)

    def describe(self) -> str:
        lim = self.limits
        parts = list(self.notes)
        if self.unshare:
            parts.append(
                f"new mount, PID, IPC, UTS{' and network' if self.net else ''} namespaces"
                f"{'' if self.net else ' (no network namespace: the network is reachable)'}; a new root holding, "
                f"read-only, only /usr, selected /etc files and {', '.join(_short(p) for p in self.binds)}: the "
                "repository (.git, tests, sources, the judge), the course directory and home folders are absent; "
                f"the throwaway course on a {lim.work_mb} MB tmpfs, private /tmp and /var/tmp ({lim.tmp_mb} MB "
                f"tmpfs each) and /dev/shm ({lim.shm_mb} MB): nothing written outlives the step; PID 1 kills every "
                "process when nbgrader ends and hands the executed notebook back, read without following links")
        if self.fresh_uids:
            parts.append("a fresh uid per student (no account, no groups, no capabilities, no_new_privs); every "
                         "process of that uid killed when its step ends")
        elif os.geteuid() != 0:
            parts.append(f"runs as the grader's own user ({pwd.getpwuid(os.geteuid()).pw_name})"
                         + (" without capabilities" if self.unshare else ""))
        parts.append(f"nbgrader's output through a pipe (last {LOG_KEPT // 1000} KB kept)")
        return "kernel step (feedback outputs only, never scores): " + "; ".join(
            [*parts, lim.describe(), "throwaway course dir and gradebook without hidden tests"])

    # -- running ------------------------------------------------------------
    def _set_limits(self) -> None:
        lim = self.limits
        for which, value in (
            (resource.RLIMIT_DATA, lim.memory_mb * 2**20),
            (resource.RLIMIT_FSIZE, lim.file_mb * 2**20),
            (resource.RLIMIT_CORE, 0),
            (resource.RLIMIT_NPROC, lim.processes),
        ):
            soft, hard = resource.getrlimit(which)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(which, (value, value))

    def start(self, box: Path, lab: str, student: str) -> RunningStep:
        """Autograde ``box/course/submitted/<student>/<lab>`` (``box`` from :func:`new_box`, its course staged
        by the caller); returns at once, ``.wait()`` gives the :class:`KernelRun`."""
        course = INSIDE if self.unshare else box / "course"
        command = [
            sys.executable, "-m", "nbgrader", "autograde", lab, "--student", student,
            "--course-dir", str(course), "--force",
            f"--Execute.timeout={self.limits.cell_timeout}", "--Execute.interrupt_on_timeout=True",
        ]
        return self.launch(box, command, f"autograded/{student}/{lab}/{lab}.ipynb")

    def launch(self, box: Path, command: list[str], notebook: str, *, uid: int | None | str = "fresh",
               wall_timeout: int | None = None) -> RunningStep:
        """Run ``command`` in ``box``'s course as the kernel step runs nbgrader; ``notebook`` (relative to the
        course) is what comes back as :attr:`KernelRun.notebook`. ``uid``: a fresh one if the jail uses them."""
        if uid == "fresh":
            uid = fresh_uid() if self.fresh_uids else None
        wall_timeout = wall_timeout or self.limits.wall_timeout
        course = INSIDE if self.unshare else box / "course"
        token = uuid.uuid4().hex
        env = base_env(course, private_tmp=bool(self.unshare))
        env["AUTOGRADER_SANDBOX_TOKEN"] = token
        result = box / "notebook.out"
        result_fd = os.open(result, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        log_read, log_write = os.pipe()
        try:
            if self.unshare:
                lim = self.limits
                spec = {"root": str(box / "root"), "stage": str(box / "course"), "work": str(INSIDE),
                        "binds": [str(p) for p in self.binds], "hide": [str(p) for p in self.hide],
                        "uid": uid, "net": self.net, "command": command, "notebook": notebook,
                        "result_fd": result_fd, "max_notebook_bytes": MAX_NOTEBOOK_BYTES,
                        "work_mb": lim.work_mb, "tmp_mb": lim.tmp_mb, "shm_mb": lim.shm_mb}
                (box / "spec.json").write_text(json.dumps(spec))
                argv, cwd, fds = [*self.unshare, "--", sys.executable, "-I", "-S", str(BOOT), str(box / "spec.json")], box, (result_fd,)
            else:
                if uid is not None:
                    chown_tree(box / "course", uid)
                    box.chmod(0o711)
                    command = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                               "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--", *command]
                argv, cwd, fds = command, box / "course", ()
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log_write,
                                    stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=self._set_limits,
                                    pass_fds=fds)
        except BaseException:
            os.close(log_read)
            raise
        finally:
            os.close(log_write)
            os.close(result_fd)
        return RunningStep(proc, _Tail(log_read), box, notebook, token, uid, wall_timeout, jailed=bool(self.unshare))


class _Tail(threading.Thread):
    """Reads a pipe to its end, keeping the last :data:`LOG_KEPT` bytes."""

    def __init__(self, fd: int):
        super().__init__(daemon=True)
        self.fd, self.kept = fd, bytearray()
        self.start()

    def run(self) -> None:
        try:
            while chunk := os.read(self.fd, 1 << 16):
                self.kept += chunk
                if len(self.kept) > 2 * LOG_KEPT:
                    del self.kept[:-LOG_KEPT]
        finally:
            os.close(self.fd)

    def text(self) -> str:
        self.join(timeout=10)  # every writer is dead by now: the end of the pipe comes at once
        return bytes(self.kept[-LOG_KEPT:]).decode("utf-8", "replace")


class RunningStep:
    """A kernel step in progress (see :meth:`FeedbackJail.start`)."""

    def __init__(self, proc: subprocess.Popen, log: _Tail, box: Path, notebook: str, token: str, uid: int | None,
                 wall_timeout: int, *, jailed: bool):
        self.proc, self.log, self.box, self.notebook, self.token, self.uid = proc, log, box, notebook, token, uid
        self.wall_timeout, self.jailed, self.started = wall_timeout, jailed, time.monotonic()

    def kill(self) -> None:
        kill_all(self.proc, marker=f"AUTOGRADER_SANDBOX_TOKEN={self.token}", uid=self.uid)
        self.log.text()

    def wait(self) -> KernelRun:
        remaining = self.wall_timeout - (time.monotonic() - self.started)
        try:
            self.proc.wait(timeout=max(remaining, 0.1))
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        # Also when it finished: whatever it left behind goes too, before anything of it is read.
        kill_all(self.proc, marker=f"AUTOGRADER_SANDBOX_TOKEN={self.token}", uid=self.uid)
        log = self.log.text()
        seconds = time.monotonic() - self.started
        if timed_out:
            return KernelRun(False, seconds, None, f"stopped after the {self.wall_timeout} s limit for the whole notebook", log)
        result = self.box / "notebook.out"
        if not self.jailed:  # nobody is left to swap anything: read it without following links
            try:
                result.write_bytes(read_regular(str(self.box / "course"), self.notebook, MAX_NOTEBOOK_BYTES))
            except (OSError, ValueError) as err:
                log += f"\n[kernel step] no executed notebook to hand back: {err}"
        if self.proc.returncode != 0:
            return KernelRun(False, seconds, None, _diagnose(log, self.proc.returncode), log)
        if result.stat().st_size == 0:  # nbgrader finished, but what it wrote is not there as a regular file
            return KernelRun(False, seconds, None, "the executed notebook was replaced or removed during the run", log)
        return KernelRun(True, seconds, result, "", log)


def base_env(course: Path, *, private_tmp: bool) -> dict[str, str]:
    """The kernel step's whole environment; its folders are inside ``course`` (``home/`` is made by :func:`new_box`)."""
    home = course / "home"
    env = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"]),
        "HOME": str(home), "TMPDIR": "/tmp" if private_tmp else str(home / "tmp"), "USER": "student", "LOGNAME": "student",
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTER_DATA_DIR": str(home / "jupyter"),
        "JUPYTER_CONFIG_DIR": str(home / "jupyter-config"), "IPYTHONDIR": str(home / "ipython"),
        "MPLCONFIGDIR": str(home / "matplotlib"), "PYTHONDONTWRITEBYTECODE": "1",  # no MPLBACKEND: inline figures
        "JUPYTER_PLATFORM_DIRS": "1", "LC_ALL": "C.UTF-8",
    }
    for name in PASS_ENV:
        if name in os.environ:
            env[name] = os.environ[name]
    env.setdefault("LABKIT_SCALE", "grade")
    if "LABKIT_DATA_PATHS" not in env and (REPO_ROOT / "data_paths.toml").is_file():
        env["LABKIT_DATA_PATHS"] = str(REPO_ROOT / "data_paths.toml")
    return env


def _diagnose(log: str, returncode: int) -> str:
    """One sentence for the student and the log, from nbgrader's output."""
    checks = [
        (r"DeadKernelError|Kernel died|kernel.*died", "the kernel died while running the notebook (os._exit, a crash or the memory limit)"),
        (r"UnresponsiveKernelError|Kernel didn't respond", "the kernel stopped responding"),
        (r"database disk image is malformed|file is not a database|sqlite3\.\w*Error|OperationalError",
         "nbgrader's throwaway gradebook was damaged during the run (by code in the notebook?)"),
        (r"No space left on device", "the notebook filled the space it is given for files"),
        (r"MemoryError|Cannot allocate memory", "the notebook ran out of memory"),
        (r"NotJSONError|Notebook does not appear to be JSON|ValidationError", "nbgrader could not read the notebook"),
        (r"version\s+of the nbgrader metadata format|SchemaTooOld|SchemaTooNew",
         "nbgrader could not read the notebook's grading metadata (was a cell's nbgrader metadata edited?)"),
    ]
    for pattern, message in checks:
        if re.search(pattern, log):
            return message
    errors = [line for line in log.splitlines() if "ERROR" in line or "Error" in line]
    return f"nbgrader failed (exit status {returncode}): {errors[-1].strip()[:200] if errors else 'no error message'}"


def _short(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
