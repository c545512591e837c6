"""Helpers for probes: the code that calls a student's function inside the scoring child.

A probe turns the case's numpy inputs into tensors, calls the student's
function, and returns a dict of plain numeric numpy arrays. Anything else the
function returns (an object with a clever ``__eq__``, a list of tensors, ...) is
refused here with a message, and the parent re-validates whatever arrives.
"""
from __future__ import annotations

import numpy as np
import torch


def tensor(array: np.ndarray, grad: bool = False) -> torch.Tensor:
    """A fresh float32 (or int64) tensor holding ``array``, optionally requiring gradients."""
    a = np.array(array)
    t = torch.from_numpy(a.astype(np.float32) if a.dtype.kind == "f" else a.astype(np.int64))
    return t.requires_grad_(grad)


def to_numpy(value, what: str, allow_numpy: bool = False) -> np.ndarray:
    """A torch.Tensor (or, if allowed, a numeric numpy array or list of numbers) as a numpy array."""
    if isinstance(value, torch.Tensor):
        array = value.detach().cpu()
        if array.is_floating_point():
            array = array.double()
        elif array.dtype != torch.bool:
            array = array.long()  # integers; complex numbers fail in the parent's dtype check
        return np.array(array.numpy(), copy=True)
    if allow_numpy and isinstance(value, (np.ndarray, list, tuple)):
        array = np.array(value)
        if array.dtype.kind in "biuf":
            return array.astype(np.float64) if array.dtype.kind == "f" else array.astype(np.int64)
    expected = "a torch.Tensor or a numpy array" if allow_numpy else "a torch.Tensor"
    raise TypeError(f"{what} should be {expected}, got {type(value).__name__}")


def scalar(value, what: str) -> np.ndarray:
    """A one-element tensor (a loss) as a 0-d float64 array."""
    array = to_numpy(value, what)
    if array.size != 1:
        raise ValueError(f"{what} should be a single number (a scalar tensor), got shape {tuple(array.shape)}")
    return array.reshape(()).astype(np.float64)


def grad_of(t: torch.Tensor) -> np.ndarray:
    """The gradient accumulated on ``t``, or NaNs when none reached it."""
    if t.grad is None:
        return np.full(tuple(t.shape), np.nan)
    return t.grad.detach().double().numpy().copy()
