"""Explicit session set-up: seeds, device, and a one-line report of site and scale.

Nothing here runs at import time; a notebook's first cell calls ``labkit.setup()``.
"""
from __future__ import annotations

import random

import numpy as np
import torch

from . import config


def get_device(prefer: str | None = None) -> torch.device:
    """``prefer`` if given, else CUDA when available, else Apple's MPS, else CPU."""
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices); optionally ask cuDNN for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def setup(seed: int = 2021, deterministic: bool = False, device: str | None = None, verbose: bool = True) -> torch.device:
    """Seed everything, pick the device, print which site, data root, scale and device are in use.

    Returns the device. Call it once at the top of a notebook.
    """
    seed_everything(seed, deterministic)
    dev = get_device(device)
    if verbose:
        print(f"labkit: scale '{config.get_scale()}', device {dev}, seed {seed}")
        print(f"labkit: data {config.get_site().describe()}")
    return dev
