"""Reusable checks, run in the clean parent on the arrays the sandboxed child returned.

Each factory returns a :class:`~autograder.judge.exercise.Check`: a weight and a
function of the :class:`Evidence` that returns None when the property holds and
otherwise a message naming the likely mistake. References and known-wrong
variants are functions of one case's inputs, computed here, never in the child.
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from .exercise import Arrays, Check

Reference = Callable[[Arrays], np.ndarray]


class Missing(Exception):
    """An output the check needs is absent (the student's function raised, timed out, or returned junk)."""


class Evidence:
    """The inputs drawn for each case and what the student's function gave for them."""

    def __init__(self, function: str, inputs: dict[str, Arrays], outputs: dict[str, Arrays], errors: dict[str, str]):
        self.function, self.inputs, self.outputs, self.errors = function, inputs, outputs, errors

    def get(self, case: str, key: str) -> np.ndarray:
        if key in self.outputs.get(case, {}):
            return self.outputs[case][key]
        why = self.errors.get(case) or f"no '{key}' came back"
        raise Missing(f"{self.function} failed on {self.describe(case)}: {why}")

    def describe(self, case: str) -> str:
        """The case's inputs in words, e.g. "inputs x_recon (3, 1, 28, 28), mu (3, 2), num_steps 5"."""
        parts = [f"{name} {tuple(a.shape)}" if a.ndim else f"{name} {a.item():g}"
                 for name, a in self.inputs.get(case, {}).items() if not name.startswith("_")]
        return f"inputs {', '.join(parts)}" if parts else "its call"


def close(got: np.ndarray, expected: np.ndarray, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    """Same shape, all finite where expected is, and within tolerance."""
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    return got.shape == expected.shape and bool(np.allclose(got, expected, rtol=rtol, atol=atol))


def _shape(a: np.ndarray) -> str:
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
                return f"expected {_shape(expected[c])}, got {_shape(got[c])} (on the '{c}' inputs)"
        if shape_only or all(close(got[c], expected[c], rtol, atol) for c in cases):
            return None
        for variant, message in variants:
            if all(close(got[c], variant(ev.inputs[c]), rtol, atol) for c in cases):
                return message
        return hint

    return Check(weight, run)


def holds(weight: float, predicate: Callable[[Evidence], str | None]) -> Check:
    """A property written as a function of the evidence (None when it holds, else the message)."""
    return Check(weight, predicate)


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


def all_pass(*parts: Check) -> Callable[[Evidence], str | None]:
    """Combine checks into one predicate: the first failure's message, or None (use with :func:`holds`)."""

    def run(ev: Evidence) -> str | None:
        for part in parts:
            message = part.run(ev)
            if message:
                return message
        return None

    return run
