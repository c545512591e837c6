"""Representational similarity matrices (RSMs): how alike a model finds each pair of inputs."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def compute_rsm(features: torch.Tensor, block_size: int = 4096) -> torch.Tensor:
    """(N, N) cosine similarity between every pair of rows of ``features`` (N, D).

    Rows are L2-normalized (no centering), so entries lie in [-1, 1] and the
    diagonal is 1 (0 for an all-zero row). Computed in fp32, ``block_size`` rows
    at a time, on the features' own device.
    """
    if features.dim() != 2:
        raise ValueError(f"features must be (N, D); got shape {tuple(features.shape)}. Flatten them first.")
    unit = F.normalize(features.float(), dim=1)  # (N, D)
    n = unit.shape[0]
    rsm = torch.empty(n, n, dtype=torch.float32, device=unit.device)
    for start in range(0, n, block_size):
        rsm[start:start + block_size] = unit[start:start + block_size] @ unit.T
    return rsm


def sort_by_latent(rsm: torch.Tensor, latent_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reorder rows and columns of ``rsm`` by one latent, so that blocks of alike inputs appear.

    Returns the sorted (N, N) RSM and the sorted latent values (N,). The sort is
    stable, so ties keep their original order.
    """
    order = torch.argsort(torch.as_tensor(latent_values).to(rsm.device), stable=True)
    return rsm[order][:, order], torch.as_tensor(latent_values)[order.cpu()]


def offdiagonal(rsm: torch.Tensor) -> torch.Tensor:
    """The entries above the diagonal, flattened (for histograms of similarities)."""
    rows, cols = torch.triu_indices(rsm.shape[0], rsm.shape[1], offset=1, device=rsm.device)
    return rsm[rows, cols]
