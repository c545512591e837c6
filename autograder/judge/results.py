"""Reading back what the child sent: untrusted bytes in, plain numeric arrays and short strings out."""
from __future__ import annotations

import json

from .arrays import decode

MAX_OUTPUT_BYTES = 32 * 2**20  # of the channel


def read_arrays(data: bytes | None) -> dict:
    """``{case: {key: array}}`` from the records the child sent (:mod:`.arrays`): numeric dtypes only, bounded."""
    found: dict = {}
    for name, array in decode(data or b"").items():
        case, _, key = name.partition(":")
        if key:
            found.setdefault(case, {})[key] = array
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
