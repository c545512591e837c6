"""PID 1 of the kernel step's namespaces: the kernel's filesystem, nbgrader as the student's uid, nothing left
running, the executed notebook handed back. Started by :mod:`autograder.feedback_jail` as
``unshare --mount --pid --net --ipc --uts --fork -- python -I -S kernel_boot.py SPEC``; standard library only.

As root inside the new namespaces (or as the namespace's root in a user namespace):

1. a new root on a small tmpfs holding, read-only, only what nbgrader and the kernel need (the grader's list:
   /usr, the Python installation, its venv, labkit, the data site) and a few /etc files; a fresh /proc; a /dev
   with null, zero, full, random and urandom; private size-limited tmpfs for /tmp, /var/tmp and /dev/shm;
   the throwaway course copied onto a size-limited tmpfs of its own, owned by the student's uid. Anything
   else (the repository with its .git and tests, the course directory, home folders) is not there at all;
   folders of the ``hide`` list that lie inside a bound folder are covered with an empty read-only tmpfs
   after the binds, so no bind can carry them back;
2. nbgrader runs in the course as the student's uid, with no groups, no capabilities and no_new_privs
   (``setpriv``): it cannot unmount, remount or leave the new root;
3. when nbgrader ends, every other process in the namespace is killed (``kill(-1)`` from PID 1) and reaped;
4. only then, as the student's uid, the executed notebook is read with :func:`read_regular` (no symbolic
   link followed, a regular file only, size-limited) and written to the file descriptor the grader opened.

Exit status: nbgrader's (128 + signal if it was killed). Every mount vanishes with the namespaces.
"""
from __future__ import annotations

import ctypes
import fcntl
import json
import os
import shutil
import signal
import socket
import stat
import struct
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
# flags a user namespace may not drop when it remounts a bind (statvfs flag -> mount flag)
_KEPT = {os.ST_NOEXEC: MS_NOEXEC, os.ST_NOATIME: MS_NOATIME, os.ST_NODIRATIME: MS_NODIRATIME,
         os.ST_RELATIME: MS_RELATIME}
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "passwd", "group", "nsswitch.conf",
             "hosts", "host.conf", "os-release", "mime.types", "fonts", "ssl", "alternatives")
DEVICES = ("null", "zero", "full", "random", "urandom")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def enc(s):
        return s.encode() if s is not None else None

    if _libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source or fstype} on {target}: {os.strerror(err)}")


def _tmpfs(target: str, options: str, flags: int = MS_NOSUID | MS_NODEV) -> None:
    os.makedirs(target, exist_ok=True)
    _mount("tmpfs", target, "tmpfs", flags, options)


def _bind(path: str, root: str, *, read_only: bool = True) -> None:
    """``path`` of the host at the same place under ``root`` (recursively, so no sub-mount is lost)."""
    target = root + path
    if os.path.islink(path):  # e.g. /etc/localtime: the link itself, resolved inside the new root
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.symlink(os.readlink(path), target)
        return
    if os.path.isdir(path):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    _mount(path, target, None, MS_BIND | MS_REC)
    if read_only:
        kept = os.statvfs(target).f_flag
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
        _mount(None, target, None, flags | sum(ms for st, ms in _KEPT.items() if kept & st))


def _inside(path: str, folders) -> bool:
    return any(path != f and path.startswith(f.rstrip("/") + "/") for f in folders)


def _loopback_up() -> None:
    """``ip link set lo up`` without iproute2: nbgrader talks to the kernel over loopback TCP."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sh22x", b"lo", 0)  # struct ifreq: name, flags, padding to 40 bytes
        flags = struct.unpack("16sh22x", fcntl.ioctl(s, siocgifflags, request))[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sh22x", b"lo", flags | iff_up))


def build_root(spec: dict) -> str:
    """The kernel's filesystem under ``spec["root"]`` (see the module docstring); returns the course's path in it."""
    root, uid = spec["root"], spec["uid"]
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing mounted here reaches the host
    _tmpfs(root, "size=16m,mode=755")
    # first, so that a bound folder below them (a data site in /tmp) lands on top
    _tmpfs(f"{root}/tmp", f"size={spec['tmp_mb']}m,mode=1777")
    _tmpfs(f"{root}/var/tmp", f"size={spec['tmp_mb']}m,mode=1777")
    binds = sorted({os.path.normpath(p) for p in ("/usr", *spec["binds"]) if os.path.lexists(p)})
    for path in binds:
        _bind(path, root)
    for name in ETC_FILES:
        if os.path.lexists(f"/etc/{name}"):
            _bind(f"/etc/{name}", root)
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):  # merged-/usr links
        if os.path.islink(f"/{name}") and not os.path.lexists(f"{root}/{name}"):
            os.symlink(os.readlink(f"/{name}"), f"{root}/{name}")
    for path in spec["hide"]:  # only what a bind brought in: elsewhere the new root has nothing of the host
        target = root + path
        carries_a_bind = any(b == path or b.startswith(path.rstrip("/") + "/") for b in binds)
        if _inside(path, binds) and not carries_a_bind and os.path.isdir(target) \
                and os.path.realpath(target).startswith(root + "/"):
            _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k,mode=555")
    os.makedirs(f"{root}/proc")
    _mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _tmpfs(f"{root}/dev", "size=64k,mode=755", MS_NOSUID | MS_NOEXEC)
    for name in DEVICES:
        _bind(f"/dev/{name}", root, read_only=False)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{root}/dev/{name}")
    _tmpfs(f"{root}/dev/shm", f"size={spec['shm_mb']}m,mode=1777")
    work = root + spec["work"]
    owner = f",uid={uid},gid={uid}" if uid is not None else ""
    _tmpfs(work, f"size={spec['work_mb']}m,mode=700{owner}")
    shutil.copytree(spec["stage"], work, symlinks=True, dirs_exist_ok=True)  # the grader's copy: no links in it
    if uid is not None:
        os.chown(work, uid, uid)
        for folder, dirs, files in os.walk(work):
            for name in dirs + files:
                os.lchown(os.path.join(folder, name), uid, uid)
    return spec["work"]


def _run_as_student(spec: dict, work: str) -> int:
    uid = spec["uid"]
    who = [f"--reuid={uid}", f"--regid={uid}", "--clear-groups"] if uid is not None else []
    command = ["setpriv", *who, "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--", *spec["command"]]
    pid = os.fork()
    if pid == 0:
        try:
            os.chdir(work)
            os.execvpe(command[0], command, os.environ)
        except BaseException as err:
            print(f"[kernel step] could not start nbgrader: {err}", file=sys.stderr)
        os._exit(127)
    return _reap_until(pid)


def _reap_until(pid: int) -> int:
    """Reap children (PID 1's duty) until ``pid`` ends; its exit status, 128 + signal if killed."""
    while True:
        try:
            done, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 1
        if done == pid:
            return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def end_everything_else() -> None:
    """Kill every other process of this PID namespace and reap them, until none is left (a fork bomb may spawn
    while we sweep, but nothing killed can fork again)."""
    while True:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def become(uid: int) -> None:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def open_regular(top: str, relpath: str):
    """``top/relpath`` opened for reading if every folder on the way is a real folder and the file a regular
    file; no symbolic link below ``top`` is followed. ValueError or OSError says why not."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        *folders, name = relpath.split("/")
        for folder in [*folders, name]:
            if folder in ("", ".", ".."):
                raise ValueError(f"not a plain relative path: {relpath!r}")
        for folder in folders:
            inner = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
        # O_NONBLOCK: a FIFO put in its place must not hang the reader
        file_fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    finally:
        os.close(fd)
    f = os.fdopen(file_fd, "rb")
    if not stat.S_ISREG(os.fstat(file_fd).st_mode):
        f.close()
        raise ValueError(f"{relpath} is not a regular file")
    return f


def read_regular(top: str, relpath: str, limit: int) -> bytes:
    """The bytes of ``top/relpath`` as :func:`open_regular` opens it, at most ``limit`` of them (else ValueError)."""
    with open_regular(top, relpath) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{relpath} is larger than {limit // 2**20} MB")
    return data


def _hand_back(spec: dict, work: str) -> None:
    try:
        data = read_regular(work, spec["notebook"], spec["max_notebook_bytes"])
    except (OSError, ValueError) as err:
        print(f"[kernel step] no executed notebook to hand back: {err}", file=sys.stderr)
        return
    view = memoryview(data)
    while view:
        view = view[os.write(spec["result_fd"], view):]


def main(spec_path: str) -> int:
    with open(spec_path) as f:
        spec = json.load(f)
    os.set_inheritable(spec["result_fd"], False)  # nbgrader and the kernel never get it
    os.umask(0o022)
    if spec["net"]:
        _loopback_up()
    work = build_root(spec)
    os.chroot(spec["root"])
    os.chdir("/")
    status = _run_as_student(spec, work)
    end_everything_else()
    if spec["uid"] is not None:
        become(spec["uid"])
    _hand_back(spec, work)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
