"""Seeded fixtures shared by the lab-4 self-checks and the autograder's lab-4 exercises.

The same seed gives the same data and the same encoder in the student's kernel, in
the judge's child and in its clean parent (deterministic on the CPU), so an answer
computed in one place can be checked in another.
"""
from __future__ import annotations

from contextlib import contextmanager

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


@contextmanager
def global_bound(function, name: str, value):
    """Run the block with ``name`` in ``function``'s global namespace (the notebook's, for a function a cell defines)
    bound to ``value``; afterwards the name is as it was (removed if it was absent).

    Lab 4 grades ``plot_model_rsms`` with the reference RSM in place of the student's ``custom_torch_RSM_fct``, so
    that a wrong RSM costs points once, in its own exercise, and not again in the figure that uses it.
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
