"""When the shipped SimCLR encoder takes off: ``python -m labkit.pretrained takeoff [--every 10]``.

SimCLR at the recipe's constant learning rate sits near 50% shape accuracy for tens of epochs, then rises to
the original's level within about 20 (README, The shipped dSprites encoders). This trains the ``simclr`` recipe
once from scratch, exactly as ``train`` does (same seed, data and views), and every ``every`` epochs measures a
copy of the encoder the way lab 4 sees the finished one: BatchNorm recalibrated over the training images (the
precise BN that ``train_simclr`` applies at the end), then lab 4's probe (``table.LAB_PROBE``) on the 80/20 split
and the participation ratio of the test features (how many directions they use). The README's and lab 4's
take-off figures come from this command. On one CPU thread: about 27 minutes of training for the 60 epochs, plus
about half a minute per checkpoint. The curve depends on the thread count and the machine (floating-point order).
"""
from __future__ import annotations

import copy

import torch

from .. import evaluation, models, training
from .. import pretrained as registry  # RECIPES, DATA, dataset: looked up when used
from ..datasets import dsprites
from ..runtime import get_device
from . import retrain
from .table import LAB_PROBE


def participation_ratio(features: torch.Tensor) -> float:
    """(sum of the covariance's eigenvalues)^2 / sum of their squares: 1 for features on one line, D when all
    D directions carry equal variance."""
    centred = features.double() - features.double().mean(0)
    eigenvalues = torch.linalg.eigvalsh(centred.T @ centred / len(centred)).clamp_min(0)
    return float(eigenvalues.sum() ** 2 / (eigenvalues ** 2).sum())


def takeoff(every: int = 10, name: str = "simclr", device=None, progress: bool = True, out=print) -> list[dict]:
    """Train the SimCLR recipe ``name`` and measure it every ``every`` epochs (and at the end); returns one dict per
    checkpoint: ``epoch``, ``lab probe`` (%), ``participation ratio``."""
    recipe = registry.RECIPES[name]
    if recipe.method != "simclr":
        raise ValueError(f"takeoff follows a SimCLR recipe; {name!r} is a {recipe.method} one.")
    device = torch.device(device) if device is not None else get_device()
    data = registry.dataset().to(device)
    images = data.images[retrain.training_indices(data, recipe.data).to(device)].unsqueeze(1)
    train_sampler, test_sampler = dsprites.train_test_split(data, seed=registry.DATA["seed"])
    test_images = data.images[torch.as_tensor(list(test_sampler.indices), device=device)].unsqueeze(1)
    steps_per_epoch = max(1, len(images) // recipe.batch_size)
    torch.manual_seed(recipe.seed)  # the initial weights, as in retrain.train
    encoder = models.DSpritesEncoder()
    rows = []

    def measure(step: int, total: int) -> None:
        if step % (every * steps_per_epoch) and step != total:
            return
        snapshot = training.calibrate_batchnorm(copy.deepcopy(encoder), images, device=device).eval()
        accuracy = training.train_classifier(snapshot, data, train_sampler, test_sampler, seed=0, device=device,
                                             progress=False, **LAB_PROBE)[3]
        ratio = participation_ratio(evaluation.extract_features(snapshot, test_images, device=device))
        rows.append({"epoch": step // steps_per_epoch, "lab probe": accuracy, "participation ratio": ratio})
        out(f"epoch {rows[-1]['epoch']:4d}: lab probe {accuracy:5.1f}%, participation ratio {ratio:.2f}")

    training.train_simclr(encoder, images, retrain.AUGMENTATIONS[recipe.augmentation](), num_epochs=recipe.epochs,
                          batch_size=recipe.batch_size, lr=recipe.lr, temperature=recipe.temperature,
                          neg_pairs=recipe.neg_pairs, lr_schedule=recipe.lr_schedule, seed=recipe.seed,
                          precise_bn=False, after_step=measure, device=device, progress=progress)
    return rows
