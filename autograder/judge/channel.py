"""The child's only way to report back: frames on a pipe the parent reads, never files on the host's disk.

A frame is ``kind`` (1 byte: ``S`` status JSON, ``A`` an exercise's arrays), the
length of ``name`` (2 bytes), the length of ``payload`` (8 bytes), then both.
The parent keeps at most a fixed number of bytes and drains the rest, so a child
that floods the pipe cannot fill the disk or the parent's memory; what it sends
is validated like any untrusted data (:mod:`autograder.judge.scoring_jail`).
"""
from __future__ import annotations

import os
import select
import struct
import threading

HEADER = struct.Struct(">cHQ")


def send(fd: int, kind: bytes, name: str, payload: bytes) -> None:
    """Write one frame to ``fd`` (blocking until all of it is written)."""
    data = HEADER.pack(kind, len(name.encode()), len(payload)) + name.encode() + payload
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def parse(data: bytes) -> list[tuple[bytes, str, bytes]]:
    """The complete, well-formed frames at the start of ``data``; parsing stops at the first bad one."""
    frames, at = [], 0
    while at + HEADER.size <= len(data):
        kind, name_len, size = HEADER.unpack_from(data, at)
        start = at + HEADER.size
        end = start + name_len + size
        if end > len(data):
            break
        try:
            name = data[start:start + name_len].decode()
        except UnicodeDecodeError:
            break
        frames.append((kind, name, data[start + name_len:end]))
        at = end
    return frames


class Reader(threading.Thread):
    """Reads a pipe in the background until its end or :meth:`stop`, keeping the first ``limit`` bytes."""

    def __init__(self, fd: int, limit: int):
        super().__init__(daemon=True)
        self.fd, self.limit, self.data = fd, limit, bytearray()
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def run(self) -> None:
        while not self._stop_event.is_set():
            if not select.select([self.fd], [], [], 0.2)[0]:
                continue
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return
            if len(self.data) < self.limit:
                self.data += chunk[: self.limit - len(self.data)]
