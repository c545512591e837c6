"""Numeric arrays as plain bytes, in a format small enough to parse with explicit limits (no zip, no pickle).

A record is: the name's length (2 bytes) and the name (UTF-8), the dtype (1 byte:
``f`` float64, ``i`` int64, ``b`` bool), the number of dimensions (1 byte, at most
:data:`MAX_DIMS`), each dimension (8 bytes), then the values, little-endian. The
parent decodes what the scoring child sent without ever allocating more than the
bytes it holds: a record whose shape does not match its length ends the parse.
"""
from __future__ import annotations

import struct

import numpy as np

MAX_DIMS = 8
MAX_ELEMENTS = 10**7  # of any one array
DTYPES = {b"f": np.dtype("<f8"), b"i": np.dtype("<i8"), b"b": np.dtype("?")}
KINDS = {"f": b"f", "i": b"i", "u": b"i", "b": b"b"}


def encode(arrays: dict[str, np.ndarray]) -> bytes:
    """Numeric arrays (float, int, bool) as records; anything else is left out."""
    out = []
    for name, value in arrays.items():
        array = np.asarray(value)
        code = KINDS.get(array.dtype.kind)
        if code is None or array.ndim > MAX_DIMS:
            continue
        array = np.asarray(array, dtype=DTYPES[code])  # (not ascontiguousarray: it makes a 0-d array 1-d)
        key = name.encode()[:65535]
        out += [struct.pack("<H", len(key)), key, code, struct.pack("<B", array.ndim),
                struct.pack(f"<{array.ndim}Q", *array.shape), array.tobytes()]
    return b"".join(out)


def decode(data: bytes, max_elements: int = MAX_ELEMENTS) -> dict[str, np.ndarray]:
    """The well-formed records at the start of ``data`` (parsing stops at the first bad one)."""
    found, at, view = {}, 0, memoryview(data)
    while at < len(data):
        try:
            (length,) = struct.unpack_from("<H", data, at)
            name = bytes(view[at + 2: at + 2 + length]).decode()
            at += 2 + length
            code, ndim = data[at: at + 1], data[at + 1]
            at += 2
            if code not in DTYPES or ndim > MAX_DIMS:
                break
            shape = struct.unpack_from(f"<{ndim}Q", data, at)
            at += 8 * ndim
            count = 1
            for dim in shape:
                count *= dim
            dtype = DTYPES[code]
            size = count * dtype.itemsize
            if count > max_elements or at + size > len(data):
                break
            found[name] = np.frombuffer(data, dtype=dtype, count=count, offset=at).reshape(shape).copy()
            at += size
        except (struct.error, UnicodeDecodeError, IndexError, ValueError):
            break
    return found
