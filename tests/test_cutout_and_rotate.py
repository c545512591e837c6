"""labkit.augment.cutout_and_rotate (lab 2's MNIST view) against a per-image loop written from its definition."""
from __future__ import annotations

import torch

from labkit import augment


def _naive(x, top, left, size=9, fill=0.5):
    out = x.clone()
    for i in range(len(x)):
        out[i, :, top[i]:top[i] + size, left[i]:left[i] + size] = fill
    return torch.stack([torch.rot90(image, 1, dims=(1, 2)) for image in out])


def test_matches_a_per_image_loop_with_the_same_draws():
    x = torch.rand(32, 1, 28, 28)
    g = torch.Generator().manual_seed(3)
    got = augment.cutout_and_rotate(x, generator=g)
    g = torch.Generator().manual_seed(3)
    top, left = torch.randint(0, 20, (32,), generator=g), torch.randint(0, 20, (32,), generator=g)
    assert torch.equal(got, _naive(x, top.tolist(), left.tolist()))


def test_positions_differ_across_the_batch_and_across_calls_and_cover_every_place():
    x = torch.rand(2000, 1, 28, 28)
    first, second = augment.cutout_and_rotate(x), augment.cutout_and_rotate(x)
    unturned = torch.rot90(first, -1, dims=(-2, -1))
    changed = (unturned != x)[:, 0]                      # (B, H, W)
    assert torch.all(changed.flatten(1).sum(1) == 81)    # one whole 9x9 square per image
    tops = changed.any(2).float().argmax(1)
    assert set(tops.tolist()) == set(range(20))          # 0 .. 28 - 9
    assert torch.all(unturned[changed.unsqueeze(1)] == 0.5)
    assert (first != second).flatten(1).any(1).float().mean() > 0.9


def test_other_sizes_and_channels():
    x = torch.rand(4, 3, 20, 24)
    out = augment.cutout_and_rotate(x, size=5, fill=0.0)
    assert out.shape == (4, 3, 24, 20)
    assert ((torch.rot90(out, -1, dims=(-2, -1)) != x).flatten(1).sum(1) == 3 * 25).all()
