"""Self-checks of lab 2 (SimCLR), one per graded function (graded for real by
``autograder/exercises/lab2_simclr.py``)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import losses
from .common import as_tensor, assert_close, assert_nt_xent, generator


def _square_corners(out: torch.Tensor, x: torch.Tensor, size: int = 9, fill: float = 0.5) -> list:
    """Per image, the top-left corner of the one mid-gray square that turning ``out`` back shows, else None."""
    if tuple(out.shape) != (x.shape[0], x.shape[1], x.shape[3], x.shape[2]):
        raise AssertionError(f"the output should be the images turned by 90 degrees, shape "
                             f"{(x.shape[0], x.shape[1], x.shape[3], x.shape[2])}; got {tuple(out.shape)}.")
    back = torch.rot90(out, -1, dims=(-2, -1))
    corners = []
    for image, original in zip(back[:, 0], x[:, 0]):
        changed = (image - original).abs() > 1e-6
        where = changed.nonzero()
        if len(where) != size * size:
            corners.append(None)
            continue
        (r, c), (r2, c2) = where.min(0).values.tolist(), where.max(0).values.tolist()
        ok = r2 - r == c2 - c == size - 1 and torch.allclose(image[r:r + size, c:c + size], torch.tensor(fill))
        corners.append((r, c) if ok else None)
    return corners


def check_cutout_and_rotate(cutout_and_rotate, thorough: bool = False) -> None:
    """Each image loses its own 9x9 square (mid-gray, 0.5), then turns 90 degrees counter-clockwise."""
    g = generator(thorough)
    x = torch.rand(64, 1, 28, 28, generator=g)
    x[(x - 0.5).abs() < 1e-3] += 0.01
    first = as_tensor(cutout_and_rotate(x.clone()), "cutout_and_rotate")
    corners = _square_corners(first, x)
    if any(c is None for c in corners):
        if _square_corners_or_none(first, x, fill=255 / 2):
            raise AssertionError("the square is filled with 255/2: these images are in [0, 1], mid-gray is 0.5.")
        raise AssertionError("turned back with torch.rot90(out, -1, dims=(-2, -1)), each output should be its input "
                             "with one whole 9x9 square set to 0.5 (check the rotation: torch.rot90(x, 1, dims=(-2, -1))).")
    if len(set(corners)) < 16:
        raise AssertionError(f"64 images got only {len(set(corners))} cutout position(s): draw a position per image.")
    second = _square_corners(as_tensor(cutout_and_rotate(x.clone()), "cutout_and_rotate"), x)
    if sum(a != b for a, b in zip(corners, second)) < 32:
        raise AssertionError("two calls put the squares in the same places: draw fresh positions on every call.")
    print(f"cutout_and_rotate: one mid-gray 9x9 square per image ({len(set(corners))} positions among 64 images), "
          "fresh on every call, turned 90 degrees")


def _square_corners_or_none(out, x, fill):
    try:
        return all(c is not None for c in _square_corners(out, x, fill=fill))
    except AssertionError:
        return False


def check_info_nce_logits(info_nce_logits, thorough: bool = False) -> None:
    """(2N, 2N - 1) logits: column 0 the positive sim(i, i + N) / T, then the 2N - 2 negatives."""
    g = generator(thorough)
    n, t = 5, 0.5
    z1, z2 = torch.randn(n, 4, generator=g), torch.randn(n, 4, generator=g)
    logits = as_tensor(info_nce_logits(z1, z2, t), "info_nce_logits")
    if tuple(logits.shape) != (2 * n, 2 * n - 1):
        raise AssertionError(f"expected logits of shape ({2 * n}, {2 * n - 1}) for N = {n}; got {tuple(logits.shape)}.")
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / t
    partner = torch.arange(2 * n).roll(n)
    assert_close(logits[:, 0], sim[torch.arange(2 * n), partner], "column 0 (the positives)",
                 "column 0 of row i is the cosine similarity of z_i with its other view z_(i + N), divided by T.")
    keep = ~(torch.eye(2 * n, dtype=torch.bool) | torch.eye(2 * n, dtype=torch.bool).roll(n, dims=1))
    assert_close(logits[:, 1:].sort(1).values, sim[keep].view(2 * n, -1).sort(1).values, "the negatives (columns 1..)",
                 "leave out k = i (the anchor itself) and k = i + N (its positive); keep every other similarity / T.")
    assert_close(F.cross_entropy(logits, torch.zeros(2 * n, dtype=torch.long)), losses.contrastive_loss(z1, z2, t),
                 "cross-entropy with label 0", "with the positive in column 0 this is NT-Xent.")
    print("info_nce_logits: positive in column 0, 2N - 2 negatives; cross-entropy with label 0 is NT-Xent")


def check_nt_xent_loss(nt_xent_loss, thorough: bool = False) -> None:
    """NT-Xent: view i pairs with view i + N; only the anchor itself leaves the denominator."""
    assert_nt_xent(nt_xent_loss, "nt_xent_loss", thorough)
    print("nt_xent_loss: matches NT-Xent")


class _Recorder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                       torch.nn.Flatten(), torch.nn.Linear(4 * 12 * 12, 16))
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.net(x)


def check_simclr_step(simclr_step, thorough: bool = False) -> None:
    """Two fresh augmented views through the encoder, NT-Xent between them, gradients into the encoder."""
    g = generator(thorough)
    x = torch.rand(16, 1, 28, 28, generator=g)
    x[(x - 0.5).abs() < 1e-3] += 0.01
    torch.manual_seed(int(g.initial_seed()) % 1000)
    encoder = _Recorder()
    loss = simclr_step(encoder, x.clone(), temperature=0.5)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not math.isfinite(float(loss.detach())):
        raise AssertionError("simclr_step should return the loss, a finite scalar tensor.")
    seen = torch.cat(encoder.seen) if encoder.seen else torch.zeros(0)
    if tuple(seen.shape) != (32, 1, 28, 28):
        raise AssertionError(f"the encoder should see two views of the 16 images (32 images in all); it saw "
                             f"{tuple(seen.shape)}.")
    v1, v2 = seen[:16], seen[16:]
    if torch.equal(v1, x) or torch.equal(v2, x):
        raise AssertionError("one of the views is the original image: augment both views.")
    if torch.equal(v1, v2):
        raise AssertionError("the two views are identical: draw each one separately.")
    if not loss.requires_grad:
        raise AssertionError("the loss has no gradient: do not encode the views under torch.no_grad() or detach them.")
    loss.backward()
    if any(p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.abs().sum() > 0
           for p in encoder.parameters()):
        raise AssertionError("no gradient reaches every encoder parameter.")
    print("simclr_step: two fresh augmented views, NT-Xent between them, gradients reach the encoder")
