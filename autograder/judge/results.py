"""Reading back what the child sent: untrusted bytes in, plain numeric arrays and short strings out."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np

MAX_OUTPUT_BYTES = 32 * 2**20  # of the channel, and of any one array


def read_arrays(data: bytes | None) -> dict:
    """``{case: {key: array}}`` from an npz the child wrote; stored members, numeric dtypes only, no pickles."""
    if not data:
        return {}
    found: dict = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if any(i.compress_type != zipfile.ZIP_STORED or i.file_size > MAX_OUTPUT_BYTES for i in archive.infolist()):
                return {}
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            for name in npz.files:
                case, _, key = name.partition(":")
                try:
                    array = npz[name]
                except (ValueError, OSError, EOFError):
                    continue
                if key and array.dtype.kind in "biuf" and array.size <= 10**7:
                    found.setdefault(case, {})[key] = array
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError):
        return {}
    return found


def _text(value) -> str:
    return "".join(ch if ch.isprintable() else " " for ch in str(value))[:300]


def _mapping(value) -> dict:
    return value if isinstance(value, dict) else {}


def read_status(data: bytes | None) -> dict:
    """The child's status report, reduced to short printable strings in the expected places."""
    try:
        raw = _mapping(json.loads(data.decode("utf-8")) if data else {})
    except (ValueError, UnicodeDecodeError, RecursionError):
        raw = {}
    status = {"progress": _text(raw.get("progress", "")),
              "cells": {_text(k): _text(v) for k, v in list(_mapping(raw.get("cells")).items())[:200]},
              "exercises": {}}
    for gid, record in list(_mapping(raw.get("exercises")).items())[:50]:
        record = _mapping(record)
        calls = record.get("calls") if isinstance(record.get("calls"), list) else []
        status["exercises"][_text(gid)] = {
            "defined": record.get("defined") is True,
            "errors": {_text(k): _text(v) for k, v in list(_mapping(record.get("errors")).items())[:50]},
            "calls": [_text(c) for c in calls[:20]]}
    return status
