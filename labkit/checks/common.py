"""What every lab's self-checks share: turning an answer into a tensor, comparing with a hint, the example seed."""
from __future__ import annotations

import torch


def as_tensor(value, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise AssertionError(f"{what} should return a torch.Tensor, got {type(value).__name__}.")
    return value.detach().float()


def assert_close(got: torch.Tensor, expected: torch.Tensor, what: str, hint: str, rtol=1e-4, atol=1e-5) -> None:
    if got.shape != expected.shape:
        raise AssertionError(f"{what}: shape {tuple(got.shape)}, expected {tuple(expected.shape)}.")
    if not torch.allclose(got, expected, rtol=rtol, atol=atol):
        raise AssertionError(f"{what}: got {got.flatten()[:4].tolist()}..., expected "
                             f"{expected.flatten()[:4].tolist()}... Hint: {hint}")


def generator(thorough: bool) -> torch.Generator:
    return torch.Generator().manual_seed(int(torch.randint(2**31, (1,))) if thorough else 0)
