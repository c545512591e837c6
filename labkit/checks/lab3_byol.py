"""Self-checks of lab 3 (BYOL), one per graded function (graded for real by ``autograder/exercises/lab3_byol.py``)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .. import losses
from .common import as_tensor, assert_close, generator


def check_byol_loss(byol_loss, thorough: bool = False) -> None:
    """Mean over the batch of 2 - 2 cos(p, z); scale-free; gradients into p only."""
    g = generator(thorough)
    p, z = torch.randn(6, 5, generator=g, requires_grad=True), torch.randn(6, 5, generator=g, requires_grad=True)
    loss = byol_loss(p, z)
    assert_close(as_tensor(loss, "byol_loss").reshape(()), losses.byol_loss(p, z), "byol_loss",
                 "L2-normalize p and z, then take 2 - 2 * (p * z).sum(dim=1), averaged over the batch (not an MSE "
                 "of the raw vectors).")
    scaled = as_tensor(byol_loss(3.0 * p.detach(), 0.5 * z.detach()), "byol_loss").reshape(())
    assert_close(scaled, losses.byol_loss(p, z), "byol_loss of rescaled vectors", "the loss must not depend on "
                 "the vectors' lengths: normalize them.")
    if not loss.requires_grad:
        raise AssertionError("the loss has no gradient: do not detach the prediction p.")
    loss.backward()
    if p.grad is None or not torch.any(p.grad != 0):
        raise AssertionError("no gradient reaches the prediction p: detach z, never p.")
    if z.grad is not None and torch.any(z.grad != 0):
        raise AssertionError("a gradient reaches z: the target's projection must be detached (z.detach()).")
    print("byol_loss: 2 - 2 cos(p, z) averaged over the batch, independent of scale, gradient into p only")


def _rates(transform, images: torch.Tensor, test) -> float:
    return float(test(transform(images.clone())).float().mean())


def check_byol_augment(byol_augment, thorough: bool = False) -> None:
    """Views of Table 6's shape; each image its own draws; blur 1.0 / 0.1 and solarize 0.0 / 0.2 (roughly)."""
    torch.manual_seed(int(generator(thorough).initial_seed()) % 10_000)
    rows = torch.arange(96)
    checker = (((rows.view(-1, 1) // 12 + rows.view(1, -1) // 12) % 2) * 0.2 + 0.05).expand(256, 3, 96, 96)
    bright = torch.full((1024, 3, 8, 8), 0.95)
    blurred, solarized = [], []
    for view in (1, 2):
        t = byol_augment(32, view=view)
        out = t(checker.clone())
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (256, 3, 32, 32):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise AssertionError(f"byol_augment(32, view={view}) should map a (256, 3, 96, 96) batch to (256, 3, 32, 32) "
                                 f"views (crops resized to size); got {got}.")
        if len(torch.unique(out.flatten(1)[:, ::97], dim=0)) < 200:
            raise AssertionError("copies of one image came out identical: draw every random parameter per image.")
        step = torch.maximum((out.diff(dim=-1).abs()).amax((1, 2, 3)), (out.diff(dim=-2).abs()).amax((1, 2, 3)))
        blurred.append(float((step / (out.amax((1, 2, 3)) - out.amin((1, 2, 3))).clamp_min(1e-6) < 0.6).float().mean()))
        solarized.append(_rates(byol_augment(16, view=view), bright, lambda v: v.mean((1, 2, 3)) < 0.5))
    if not (blurred[0] > 0.55 and blurred[1] < 0.2):
        raise AssertionError(f"{blurred[0]:.0%} of view 1 and {blurred[1]:.0%} of view 2 look blurred: Table 6 blurs "
                             "view 1 with probability 1.0 and view 2 with 0.1 (about 70% and 7% look blurred).")
    if not (solarized[0] == 0 and 0.13 < solarized[1] < 0.27):
        raise AssertionError(f"{solarized[0]:.0%} of view 1 and {solarized[1]:.0%} of view 2 were solarized: Table 6 "
                             "solarizes view 2 only, with probability 0.2.")
    print(f"byol_augment: per-image draws; blurred-looking {blurred[0]:.0%} / {blurred[1]:.0%}, solarized "
          f"{solarized[0]:.0%} / {solarized[1]:.0%} (views 1 / 2)")


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        net[1].running_mean.normal_()
        net[1].running_var.uniform_(0.5, 1.5)
    return net


def check_update_target(update_target, thorough: bool = False) -> None:
    """Parameters and BatchNorm buffers move to tau * target + (1 - tau) * online; the online net is untouched."""
    seed = int(generator(thorough).initial_seed()) % 10_000
    target, online = _net(seed).requires_grad_(False), _net(seed + 1)
    before = [t.clone() for t in target.state_dict().values()]
    online_before = [t.clone() for t in online.state_dict().values()]
    update_target(target, online, 0.9)
    for (name, t), b, o in zip(target.state_dict().items(), before, online.state_dict().values()):
        if not t.is_floating_point():
            continue
        hint = ("the running statistics of BatchNorm are buffers, not parameters: update target.buffers() too."
                if "running" in name else "tau weights the target: tau * target + (1 - tau) * online.")
        assert_close(t, 0.9 * b + 0.1 * o, f"target {name} after update_target(target, online, 0.9)", hint)
    if not all(torch.equal(a, b) for a, b in zip(online.state_dict().values(), online_before)):
        raise AssertionError("the online network changed: only the target may be written.")
    print("update_target: parameters and BatchNorm statistics follow the moving average")


def check_cosine_tau(cosine_tau, thorough: bool = False) -> None:
    """base at step 0, (1 + base) / 2 half-way, 1 at the last step, on a half cosine."""
    total = 1000 if not thorough else int(torch.randint(100, 2000, (1,), generator=generator(True)))
    for step, want in ((0, 0.99), (total // 2, 1 - 0.01 * (math.cos(math.pi * (total // 2) / total) + 1) / 2),
                       (total // 4, 1 - 0.01 * (math.cos(math.pi * (total // 4) / total) + 1) / 2), (total, 1.0)):
        got = float(cosine_tau(step, total, base=0.99))
        if abs(got - want) > 1e-7:
            raise AssertionError(f"cosine_tau({step}, {total}, base=0.99) = {got:.6f}, expected {want:.6f}: tau starts "
                                 "at base and rises to 1 as 1 - (1 - base) * (cos(pi * step / total_steps) + 1) / 2.")
    print("cosine_tau: base at step 0, 1 at the end, on a half cosine")


class _Recorder(nn.Module):
    def __init__(self, seed, in_dim):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_dim, 6)) if in_dim > 6 else nn.Linear(6, 6)
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach())
        return self.net(x)


def check_byol_step(byol_step, thorough: bool = False) -> None:
    """The symmetric loss of the online predictions against the TARGET's projections; no gradient into the target."""
    g = generator(thorough)
    x1, x2 = torch.rand(8, 3, 4, 4, generator=g), torch.rand(8, 3, 4, 4, generator=g)
    seed = int(g.initial_seed()) % 10_000
    online, predictor, target = _Recorder(seed, 48), _Recorder(seed + 1, 6), _Recorder(seed + 2, 48)
    loss = byol_step(online, predictor, target, x1.clone(), x2.clone())
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise AssertionError("byol_step should return the loss, a scalar tensor.")
    if not target.seen:
        raise AssertionError("the target network is never called: the regression targets are target(x1), target(x2).")
    with torch.no_grad():
        p1, p2 = predictor.net(online.net(x1)), predictor.net(online.net(x2))
        z1, z2 = target.net(x1), target.net(x2)
    assert_close(loss.detach().reshape(()), losses.byol_loss(p1, z2) + losses.byol_loss(p2, z1), "byol_step",
                 "byol_loss(predictor(online(x1)), target(x2)) + byol_loss(predictor(online(x2)), target(x1)).")
    loss.backward()
    if any(p.grad is not None and torch.any(p.grad != 0) for p in target.parameters()):
        raise AssertionError("a gradient reaches the target: compute its projections under torch.no_grad().")
    if any(p.grad is None or not torch.any(p.grad != 0) for p in [*online.parameters(), *predictor.parameters()]):
        raise AssertionError("no gradient reaches the online network or the predictor.")
    print("byol_step: symmetric loss against the target's projections, gradients into the online side only")
