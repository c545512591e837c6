"""What every lab's self-checks share: turning an answer into a tensor, comparing with a hint, the example seed."""
from __future__ import annotations

import contextlib

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


@contextlib.contextmanager
def global_bound(function, name: str, value):
    """Run the block with ``name`` in ``function``'s global namespace (the notebook's, for a function a cell defines)
    bound to ``value``; afterwards the name is as it was (removed if it was absent).

    A check grades one function with a known helper in place of the student's, so that a wrong helper costs
    points once, in its own exercise: lab 4's figure gets the reference RSM instead of ``custom_torch_RSM_fct``,
    lab 2's training step an identity ``jitter`` so its views can be compared with the batch exactly.
    A callable without ``__globals__`` (not a plain function) is left as it is.
    """
    scope = getattr(function, "__globals__", None)
    if not isinstance(scope, dict):
        yield
        return
    absent = object()
    previous = scope.get(name, absent)
    scope[name] = value
    try:
        yield
    finally:
        if previous is absent:
            scope.pop(name, None)
        else:
            scope[name] = previous


def generator(thorough: bool) -> torch.Generator:
    return torch.Generator().manual_seed(int(torch.randint(2**31, (1,))) if thorough else 0)


def assert_nt_xent(loss_fn, name: str, thorough: bool = False) -> None:
    """``loss_fn(z1, z2, temperature)`` is NT-Xent (labs 2 and 4): labkit's loss on a small example, and the closed
    form for identical views with orthogonal rows; ``name`` is how messages call it."""
    import math

    from .. import losses

    g = generator(thorough)
    z1, z2 = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    assert_close(as_tensor(loss_fn(z1, z2, temperature=0.5), name).reshape(()), losses.contrastive_loss(z1, z2, 0.5),
                 "NT-Xent", "L2-normalize the rows, pair view i with view i + N (not with itself), drop only k = i "
                 "from the denominator, average over all 2N anchors.")
    n, t = 3, 0.5
    z = torch.eye(n, 2 * n)
    closed = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2 * n - 2))
    got = float(as_tensor(loss_fn(z, z.clone(), temperature=t), name))
    if abs(got - closed) > 1e-4:
        raise AssertionError(f"identical views with orthogonal rows should give {closed:.4f}; got {got:.4f}.")
