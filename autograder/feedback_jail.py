"""The feedback jail: nbgrader's kernel run for one student, for the outputs shown in feedback, never a score.

The student's code can do no harm to the batch here.

The kernel step only produces the outputs students see in their feedback; no
score comes from it (the judge grades, in its own scoring jail: :mod:`autograder.judge.scoring_jail`). It runs
``nbgrader autograde LAB --student S`` in a subprocess on a throwaway course
directory (the student's submission, the *release* notebook as nbgrader's source
and a throwaway gradebook built from it: no hidden tests, no other student,
never the real gradebook), with:

- a per-cell timeout (nbgrader's ``Execute.timeout``, the cell is interrupted
  and the run goes on) and a wall-clock limit for the whole run, after which the
  process group is killed;
- resource limits inherited by nbgrader and the kernel: heap/anonymous memory
  (``RLIMIT_DATA``), file size, core dumps off, number of processes;
- a scrubbed environment (HOME, TMPDIR and Jupyter's folders inside the
  throwaway directory; the course directory's path is nowhere in it);
- where Linux namespaces are available (root, or unprivileged user namespaces):
  a new PID namespace (every process the kernel forks dies with the run, and the
  grader's processes are invisible), no network, and a mount namespace in which
  the course directory, the lab sources and the judge are covered by empty
  read-only tmpfs mounts;
- when the grader runs as root: an unprivileged uid with no account, no groups
  and no_new_privs (``setpriv``). If the interpreter lives under a folder others
  cannot enter (a 0700 ``/root``), that folder is covered, inside the mount
  namespace, by an empty one holding only the interpreter's installation.

After every run, processes still carrying the run's token in their environment
are killed (the fallback when there is no PID namespace). :meth:`FeedbackJail.describe`
says which of these are in force.
"""
from __future__ import annotations

import os
import pwd
import re
import resource
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .course import REPO_ROOT
from .judge.processes import chown_tree, fresh_uid, kill_all


@dataclass(frozen=True)
class KernelLimits:
    cell_timeout: int = 120  # s per cell: nbgrader interrupts the cell and continues
    wall_timeout: int = 900  # s for the whole kernel step of one student
    memory_mb: int = 4096  # RLIMIT_DATA per process (torch's baseline is ~0.9 GB of it)
    file_mb: int = 512  # RLIMIT_FSIZE: largest file any of them may write
    processes: int = 512  # RLIMIT_NPROC (only binds an unprivileged uid)

    def describe(self) -> str:
        return (
            f"cell timeout {self.cell_timeout} s, wall {self.wall_timeout} s, memory {self.memory_mb} MB/process "
            f"(RLIMIT_DATA), files <= {self.file_mb} MB, core dumps off"
        )


@dataclass
class KernelRun:
    """What one kernel step left: the executed notebook, or why there is none."""

    ok: bool
    seconds: float
    notebook: Path | None
    problem: str = ""  # empty when ok
    log: str = ""


# Passed through to the kernel when set: they choose the data site and the scale.
PASS_ENV = ("LABKIT_SITE", "LABKIT_DATA_PATHS", "LABKIT_SCALE", "LABKIT_PROGRESS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "LANG")


class FeedbackJail:
    """Runs nbgrader's autograde under :class:`KernelLimits`; probes once what isolation the machine allows."""

    def __init__(self, limits: KernelLimits = KernelLimits(), *, hide: list[Path] = (), namespaces: bool = True, drop_privileges: bool = True):
        self.limits = limits
        self.hide = [Path(p).resolve() for p in hide]
        self.notes: list[str] = []
        self.unshare = self._probe_namespace() if namespaces else None
        self.uid = self._probe_uid() if drop_privileges else None

    # -- probes -------------------------------------------------------------
    def _probe_namespace(self) -> list[str] | None:
        """``unshare`` arguments that work here (PID, mount and, if possible, network namespaces)."""
        if shutil.which("unshare") is None:
            self.notes.append("no PID/mount/network namespaces (no `unshare` executable)")
            return None
        base = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"]
        if os.geteuid() != 0:
            base[1:1] = ["--user", "--map-root-user"]
        for net in (True, False):
            self.unshare, self.net = base + (["--net"] if net else []), net
            with tempfile.TemporaryDirectory(prefix="autograder-probe-") as tmp:
                if subprocess.run(self.wrap(["true"], Path(tmp)), capture_output=True).returncode == 0:
                    hidden = f", hidden (read-only empty tmpfs): {', '.join(_short(p) for p in self.hide)}" if self.hide else ""
                    self.notes.append(f"new PID and mount namespaces{', no network' if net else ''}{hidden}")
                    return self.unshare
        self.notes.append("no PID/mount/network namespaces (unshare refused: not root and no user namespaces?)")
        return None

    def _probe_uid(self) -> int | None:
        """An unprivileged uid that can run nbgrader and the kernel here, when we are root."""
        if os.geteuid() != 0:
            self.notes.append(f"runs as the grader's own user ({pwd.getpwuid(os.geteuid()).pw_name})")
            return None
        if shutil.which("setpriv") is None:
            self.notes.append("runs as ROOT (no `setpriv` executable to drop privileges)")
            return None
        self.uid = fresh_uid()
        with tempfile.TemporaryDirectory(prefix="autograder-probe-") as tmp:
            work = Path(tmp)
            (work / "home").mkdir()
            chown_tree(work, self.uid)
            check = [sys.executable, "-c", "import os, importlib.util as u, ipykernel, nbformat; open('probe', 'w'); "
                     "assert os.getuid() != 0 and u.find_spec('nbgrader') and u.find_spec('labkit')"]
            try:
                probe = subprocess.run(self.wrap(check, work), cwd=work, env=_base_env(work), capture_output=True,
                                       text=True, preexec_fn=self._set_limits, timeout=300)
                failure = "" if probe.returncode == 0 else (probe.stderr.strip().splitlines() or ["?"])[-1]
            except (OSError, subprocess.SubprocessError) as err:
                failure = f"{err.__class__.__name__}: {err}"
        if failure:
            self.notes.append(f"runs as ROOT: an unprivileged uid could not run {sys.executable} here ({failure[:200]})")
            self.uid = None
            return None
        uncovered = [str(p) for paths in _uncover_plan().values() for p in paths] if self.unshare else []
        self.notes.append(f"runs as uid {self.uid} (no account, no groups, no_new_privs)"
                          + (f"; {', '.join(uncovered)} made reachable for it inside the mount namespace" if uncovered else ""))
        return self.uid

    def wrap(self, command: list[str], workdir: Path) -> list[str]:
        """``command`` inside the namespaces (if any) and as the unprivileged uid (if any)."""
        uid = getattr(self, "uid", None)
        if uid is not None:
            command = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs", "--", *command]
        if not self.unshare:
            return command
        steps = ["set -e"]
        if self.net:
            steps.append("ip link set lo up")  # nbgrader talks to the kernel over loopback TCP
        for path in self.hide:
            steps.append(f"mount -t tmpfs -o ro,size=16k autograder-hidden {_q(path)}")
        if uid is not None:
            # The interpreter may live under a folder others cannot enter (a 0700 /root): cover that folder
            # with an empty one they can enter, and bind back only what Python needs.
            for i, (blocked, paths) in enumerate(_uncover_plan().items()):
                holders = [workdir / ".mnt" / f"{i}-{j}" for j in range(len(paths))]
                for path, holder in zip(paths, holders, strict=True):
                    steps += [f"mkdir -p {_q(holder)}", f"mount --bind {_q(path)} {_q(holder)}"]
                steps.append(f"mount -t tmpfs -o mode=0711,size=16k autograder-cover {_q(blocked)}")
                for path, holder in zip(paths, holders, strict=True):
                    steps += [f"mkdir -p {_q(path)}", f"mount --bind {_q(holder)} {_q(path)}", f"umount {_q(holder)}"]
        steps.append('exec "$@"')
        return [*self.unshare, "--", "sh", "-c", "; ".join(steps), "sandbox", *command]

    def describe(self) -> str:
        return "kernel step (feedback outputs only, never scores): " + "; ".join(
            [*self.notes, self.limits.describe(), "throwaway course dir and gradebook without hidden tests"])

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

    def start(self, workdir: Path, lab: str, student: str) -> RunningStep:
        """Autograde ``workdir/submitted/<student>/<lab>`` in ``workdir`` (a throwaway course directory); returns
        at once, ``.wait()`` gives the :class:`KernelRun`."""
        token = uuid.uuid4().hex
        env = _base_env(workdir)
        env["AUTOGRADER_SANDBOX_TOKEN"] = token
        if self.uid is not None:
            chown_tree(workdir, self.uid)
        command = [
            sys.executable, "-m", "nbgrader", "autograde", lab, "--student", student,
            "--course-dir", str(workdir), "--force",
            f"--Execute.timeout={self.limits.cell_timeout}", "--Execute.interrupt_on_timeout=True",
        ]
        command = self.wrap(command, workdir)
        log_file = open(workdir / "kernel-step.log", "wb")
        proc = subprocess.Popen(
            command, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=log_file,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=self._set_limits,
        )
        return RunningStep(proc, log_file, token, workdir / "autograded" / student / lab / f"{lab}.ipynb",
                           self.limits.wall_timeout)


class RunningStep:
    """A kernel step in progress (see :meth:`FeedbackJail.start`)."""

    def __init__(self, proc: subprocess.Popen, log_file, token: str, notebook: Path, wall_timeout: int):
        self.proc, self.log_file, self.token, self.notebook = proc, log_file, token, notebook
        self.wall_timeout, self.started = wall_timeout, time.monotonic()

    def kill(self) -> None:
        kill_all(self.proc, marker=f"AUTOGRADER_SANDBOX_TOKEN={self.token}")
        self.log_file.close()

    def wait(self) -> KernelRun:
        remaining = self.wall_timeout - (time.monotonic() - self.started)
        try:
            self.proc.wait(timeout=max(remaining, 0.1))
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        # Also when it finished: forks left behind go too.
        kill_all(self.proc, marker=f"AUTOGRADER_SANDBOX_TOKEN={self.token}")
        self.log_file.close()
        seconds = time.monotonic() - self.started
        log = Path(self.log_file.name).read_text(errors="replace")[-200_000:]
        if timed_out:
            return KernelRun(False, seconds, None, f"stopped after the {self.wall_timeout} s limit for the whole notebook", log)
        if self.proc.returncode != 0 or not self.notebook.is_file():
            return KernelRun(False, seconds, None, _diagnose(log, self.proc.returncode), log)
        return KernelRun(True, seconds, self.notebook, "", log)


def _base_env(workdir: Path) -> dict[str, str]:
    home = workdir / "home"
    env = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"]),
        "HOME": str(home), "TMPDIR": str(home / "tmp"), "USER": "student", "LOGNAME": "student",
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
    if workdir != Path("/"):
        (home / "tmp").mkdir(parents=True, exist_ok=True)
    return env


def _q(path) -> str:
    return shlex.quote(str(path))


def _uncover_plan() -> dict[Path, list[Path]]:
    """{folder others cannot enter: [what the kernel needs below it]} for the interpreter and this repo."""
    needed = {Path(os.path.realpath(p)) for p in (sys.base_prefix, sys.prefix, REPO_ROOT)}
    plan: dict[Path, list[Path]] = {}
    for path in sorted(needed):
        for folder in [*reversed(path.parents), path]:
            if not os.stat(folder).st_mode & stat.S_IXOTH:
                if folder != path:
                    plan.setdefault(folder, []).append(path)
                break
    return plan


def _diagnose(log: str, returncode: int) -> str:
    """One sentence for the student and the log, from nbgrader's output."""
    checks = [
        (r"DeadKernelError|Kernel died|kernel.*died", "the kernel died while running the notebook (os._exit, a crash or the memory limit)"),
        (r"UnresponsiveKernelError|Kernel didn't respond", "the kernel stopped responding"),
        (r"database disk image is malformed|file is not a database|sqlite3\.\w*Error|OperationalError",
         "nbgrader's throwaway gradebook was damaged during the run (by code in the notebook?)"),
        (r"MemoryError|Cannot allocate memory", "the notebook ran out of memory"),
        (r"NotJSONError|Notebook does not appear to be JSON|ValidationError", "nbgrader could not read the notebook"),
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
