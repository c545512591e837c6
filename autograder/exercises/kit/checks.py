"""Reusable checks, run in the clean parent on the arrays the sandboxed child returned.

Each factory returns a :class:`~autograder.exercises.kit.Check`: a weight and a
function of the :class:`Evidence` that returns None when the property holds and
otherwise a message naming the likely mistake. References and known-wrong
variants are functions of one case's inputs, computed here, never in the child.
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from ...judge.evidence import Arrays, Evidence, Missing  # noqa: F401  (Missing: part of the kit)
from .record import Check

Reference = Callable[[Arrays], np.ndarray]


def close(got: np.ndarray, expected: np.ndarray, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    """Same shape, all finite where expected is, and within tolerance."""
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    return got.shape == expected.shape and bool(np.allclose(got, expected, rtol=rtol, atol=atol))


def describe_shape(a: np.ndarray) -> str:
    """'a scalar' or 'shape (3, 4)', for messages."""
    return "a scalar" if a.ndim == 0 else f"shape {tuple(a.shape)}"


def matches(weight: float, key: str, reference: Reference, *, cases: Iterable[str], hint: str,
            variants: Iterable[tuple[Reference, str]] = (), rtol: float = 1e-4, atol: float = 1e-5,
            shape_only: bool = False) -> Check:
    """Output ``key`` equals ``reference(inputs)`` on every case.

    When it does not, each known-wrong variant is tried; if the student's values
    match one on every case, its message names the mistake, else ``hint`` is used.
    Scalars of shape (1,) or (1, 1) count as scalars.
    """
    cases, variants = tuple(cases), tuple(variants)

    def run(ev: Evidence) -> str | None:
        got = {c: ev.get(c, key) for c in cases}
        expected = {c: np.asarray(reference(ev.inputs[c])) for c in cases}
        for c in cases:
            if expected[c].ndim == 0 and got[c].size == 1:
                got[c] = got[c].reshape(())
            if got[c].shape != expected[c].shape:
                return f"expected {describe_shape(expected[c])}, got {describe_shape(got[c])} (on the '{c}' inputs)"
        if shape_only or all(close(got[c], expected[c], rtol, atol) for c in cases):
            return None
        for variant, message in variants:
            if all(close(got[c], variant(ev.inputs[c]), rtol, atol) for c in cases):
                return message
        return hint

    return Check(weight, run)


def holds(weight: float, predicate: Callable[[Evidence], str | None]) -> Check:
    """A property written as a function of the evidence (None when it holds, else the message), computed once per
    submission however many checks and gates hold it."""
    return Check(weight, lambda ev: ev.once(predicate))


def same(weight: float, key: str, pairs: Iterable[tuple[str, str]], *, hint: str,
         rtol: float = 1e-4, atol: float = 1e-5) -> Check:
    """Output ``key`` is the same for each pair of cases (an invariance: rescaled rows, swapped views, ...)."""
    pairs = tuple(pairs)

    def run(ev: Evidence) -> str | None:
        return None if all(close(ev.get(a, key), ev.get(b, key), rtol, atol) for a, b in pairs) else hint

    return Check(weight, run)


def in_range(weight: float, key: str, low: float, high: float, *, cases: Iterable[str], hint: str) -> Check:
    """Every entry of output ``key`` lies in [low, high] (and is finite)."""
    cases = tuple(cases)

    def run(ev: Evidence) -> str | None:
        for c in cases:
            a = ev.get(c, key)
            if a.size == 0 or not np.all(np.isfinite(a)) or a.min() < low or a.max() > high:
                return hint
        return None

    return Check(weight, run)


def finite(weight: float, key: str, *, cases: Iterable[str], hint: str, nonzero: bool = False) -> Check:
    """Output ``key`` is present and finite everywhere (and not all zero, if ``nonzero``)."""
    cases = tuple(cases)

    def run(ev: Evidence) -> str | None:
        for c in cases:
            a = ev.get(c, key)
            if a.size == 0 or not np.all(np.isfinite(a)) or (nonzero and not np.any(a)):
                return hint
        return None

    return Check(weight, run)


def varies(key: str, *, cases: Iterable[str], hint: str, rtol: float = 1e-6) -> Check:
    """Output ``key`` is finite on every case and not the same on all of them (for a gate: a constant, an
    infinity or a NaN does not depend on its inputs). Weightless: use it as an exercise's ``gate``."""
    cases = tuple(cases)

    def run(ev: Evidence) -> str | None:
        values = [ev.get(c, key) for c in cases]
        if not all(v.size and np.all(np.isfinite(v)) for v in values):
            return hint
        first = values[0]
        if all(v.shape == first.shape and np.allclose(v, first, rtol=rtol, atol=0) for v in values[1:]):
            return hint
        return None

    return Check(0.0, run)


def all_pass(*parts: Check) -> Callable[[Evidence], str | None]:
    """Combine checks into one predicate: the first failure's message, or None (use with :func:`holds`)."""

    def run(ev: Evidence) -> str | None:
        for part in parts:
            message = part.run(ev)
            if message:
                return message
        return None

    return run
