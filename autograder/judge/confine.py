"""The child's privileged first steps, before any student code: limits, a private filesystem view, a new user.

Run by :mod:`autograder.judge.scoring_child` as root (when the judge runs as root) in the
new namespaces ``unshare`` created. Only the standard library is used here.

The filesystem view (the "jail") is a small tmpfs root holding read-only bind
mounts of what Python and torch need (``/usr``, a few files of ``/etc``, the
Python installation and the virtual environment, the judge's copy of its own
code and labkit, the inputs), the child's work folder (a size-limited tmpfs
holding a copy of the submission's files), and fresh ``/proc``, ``/dev``,
``/tmp``: nothing on the host's disk is writable. Everything else, the
repository with the source notebooks, the course directory with the gradebook,
home folders, is simply absent.
"""
from __future__ import annotations

import ctypes
import os
import resource
import shutil

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_NO_NEW_PRIVS = 38

ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "passwd", "group", "nsswitch.conf",
             "hosts", "host.conf", "os-release", "mime.types", "fonts", "ssl")
DEVICES = ("null", "zero", "full", "random", "urandom")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: s.encode() if s is not None else None
    if _libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source or fstype} on {target}: {os.strerror(err)}")


def set_limits(limits: dict) -> None:
    """Soft = hard limits, so that the unprivileged child cannot raise them again."""
    table = {"data_mb": (resource.RLIMIT_DATA, 2**20), "as_mb": (resource.RLIMIT_AS, 2**20),
             "cpu_s": (resource.RLIMIT_CPU, 1), "fsize_mb": (resource.RLIMIT_FSIZE, 2**20),
             "nproc": (resource.RLIMIT_NPROC, 1), "nofile": (resource.RLIMIT_NOFILE, 1),
             "core": (resource.RLIMIT_CORE, 1)}
    for key, value in limits.items():
        if value is not None:
            which, unit = table[key]
            resource.setrlimit(which, (int(value * unit), int(value * unit)))


def _bind(path: str, root: str, writable: bool = False, devices: bool = False) -> None:
    if not os.path.lexists(path):
        return
    target = root + path
    if os.path.isdir(path):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    _mount(path, target, None, MS_BIND | MS_REC)
    flags = MS_REMOUNT | MS_BIND | MS_NOSUID | (0 if devices else MS_NODEV) | (0 if writable else MS_RDONLY)
    _mount(None, target, None, flags)


def _fill_work(source: str, target: str, size_mb: int, uid: int | None) -> None:
    """The work folder as a tmpfs of ``size_mb`` holding a copy of ``source``, owned by ``uid``."""
    os.makedirs(target, exist_ok=True)
    owner = f",uid={uid},gid={uid}" if uid is not None else ""
    _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size_mb}m,mode=700{owner}")
    shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
    if uid is not None:
        for folder, dirs, files in os.walk(target):
            for name in dirs + files:
                os.lchown(os.path.join(folder, name), uid, uid)


def enter_jail(jail: dict, uid: int | None) -> None:
    """Build the private root described by ``jail`` (root, ro, work, work_mb, tmp_mb, hide) and chroot into it."""
    root = jail["root"]
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing below leaks back to the host
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=755")
    os.makedirs(f"{root}/tmp")  # first: the sandbox's own folders may live under /tmp and are bound below
    _mount("tmpfs", f"{root}/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={jail['tmp_mb']}m,mode=1777")
    for path in ("/usr", *jail["ro"]):
        _bind(path, root)
    for name in ETC_FILES:
        _bind(f"/etc/{name}", root)
    _fill_work(jail["work"], root + jail["work"], jail["work_mb"], uid)
    for path in jail.get("hide", ()):  # e.g. the source notebooks, should they sit below a bound folder
        if os.path.isdir(root + path):
            _mount("tmpfs", root + path, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k,mode=555")
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):  # merged-/usr symlinks
        if os.path.islink(f"/{name}"):
            os.symlink(os.readlink(f"/{name}"), f"{root}/{name}")
    os.makedirs(f"{root}/proc")
    _mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.makedirs(f"{root}/dev")
    _mount("tmpfs", f"{root}/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=755")
    for name in DEVICES:
        _bind(f"/dev/{name}", root, writable=True, devices=True)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{root}/dev/{name}")
    os.makedirs(f"{root}/dev/shm")
    _mount("tmpfs", f"{root}/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=1777")
    os.chroot(root)
    os.chdir("/")


def drop_privileges(uid: int, gid: int) -> None:
    """Become ``uid``/``gid`` for good, with no supplementary groups and no way back through setuid binaries."""
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if os.getuid() != uid or os.geteuid() != uid:
        raise OSError(f"could not drop to uid {uid}")


def wait_for(pid: int) -> int:
    """Reap children until ``pid`` ends (PID 1's duty in a PID namespace); its exit code, 128 + signal if killed."""
    while True:
        try:
            done, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 1
        if done == pid:
            return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
