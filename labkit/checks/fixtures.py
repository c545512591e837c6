"""Seeded fixtures shared by the lab-4 self-checks and the autograder's lab-4 exercises: data, encoders,
probe loss curves and when they have levelled off (the last two are withheld while a notebook is graded).

The same seed gives the same data and the same encoder in the student's kernel, in
the judge's child and in its clean parent (deterministic on the CPU), so an answer
computed in one place can be checked in another.
"""
from __future__ import annotations

import numpy as np
import torch

from ..images import to_float


def small_dsprites(num_images: int, seed: int):
    """``(data, train_sampler, test_sampler)``: ``num_images`` generated dSprites and their seeded 80/20 split."""
    from ..datasets import dsprites

    data = dsprites.DSprites.generate(num_images, seed=seed)
    return data, *dsprites.train_test_split(data, seed=seed)


def calibrated_encoder(images: torch.Tensor, seed: int):
    """A seeded untrained DSpritesEncoder with BatchNorm calibrated on ``images`` (B, 64, 64), in eval mode."""
    from .. import models, training

    torch.manual_seed(seed)
    return training.calibrate_batchnorm(models.DSpritesEncoder(), images.unsqueeze(1), device="cpu")


def features(encoder, images: torch.Tensor) -> np.ndarray:
    """The encoder's features (N, 84) of dSprites ``images`` (N, 64, 64), as float64 numpy, without gradients."""
    with torch.no_grad():
        return encoder.get_features(to_float(images, max_value=1)).double().numpy()  # binary dSprites


def shape_fit(features: np.ndarray, data, indices) -> float:
    """How well (%) a logistic regression fits shape on the features of the images ``indices``: how much shape
    the encoder makes linearly readable (fitted and scored on the same images)."""
    from ..evaluation import linear_probe

    idx = np.asarray(list(indices))
    labels = data.latents_classes[:, 0].numpy()
    return linear_probe(features[idx], labels[idx], features[idx], labels[idx])


def synthetic_loss_curve(rng: np.random.Generator, tau: float, length: int, fall: float, plateau: float,
                         noise: float) -> tuple[np.ndarray, np.ndarray]:
    """A probe's loss per epoch that levels off: ``plateau + fall * exp(-(epoch - 1) / tau)`` for epochs 1..length,
    plus Gaussian noise of ``noise * fall``. Returns ``(losses, smooth)``: the noisy float32 curve a function is
    given and the noise-free float64 one it is judged on."""
    smooth = plateau + fall * np.exp(-np.arange(length) / tau)
    return (smooth + noise * fall * rng.normal(size=length)).astype(np.float32), smooth


def levelled_off_window(smooth, plateau: float) -> tuple[int, int, int]:
    """``(earliest, levelled, latest)``: the epochs (counted from 1) between which a number of probe epochs is
    sensible for the noise-free falling loss curve ``smooth`` that settles at ``plateau``.

    earliest: the first epoch within 10% of the curve's total fall from its plateau (before it, the loss is still
    falling); levelled: the first within 5%; latest: twice that (at least earliest + 3, at most the curve's length):
    later epochs cost compute and change nothing.
    """
    smooth = np.asarray(smooth, dtype=np.float64)
    gap = (smooth - plateau) / (smooth[0] - plateau)  # the share of the fall still to go, 1 at epoch 1

    def first(share):
        below = np.flatnonzero(gap <= share)
        return int(below[0]) + 1 if len(below) else len(smooth)

    earliest, levelled = first(0.10), first(0.05)
    return earliest, levelled, min(len(smooth), max(2 * levelled, earliest + 3))


def epochs_verdict(chosen, smooth, plateau: float) -> str | None:
    """None when ``chosen`` epochs suit the loss curve ``smooth`` (see :func:`levelled_off_window`), else why not."""
    smooth = np.asarray(smooth, dtype=np.float64)
    value = np.asarray(chosen, dtype=np.float64).reshape(-1) if np.size(chosen) == 1 else np.full(1, np.nan)
    if not (np.isfinite(value[0]) and value[0] == round(value[0]) and 1 <= value[0] <= len(smooth)):
        return (f"return a whole number of epochs between 1 and the length of the curve ({len(smooth)}), "
                f"got {chosen!r}")
    k = int(value[0])
    earliest, levelled, latest = levelled_off_window(smooth, plateau)
    still = (smooth[k - 1] - plateau) / (smooth[0] - plateau)
    if k < earliest:
        return (f"{k} epochs are too few: the loss is still falling there ({100 * still:.0f}% of its total fall "
                f"above the level it settles at); it has levelled off from about epoch {earliest}")
    if k > latest:
        return (f"{k} epochs are wasteful: the loss had levelled off by epoch {levelled} (within 5% of its fall); "
                f"epochs beyond about {latest} cost compute and change nothing")
    return None
