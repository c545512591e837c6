"""Training the shipped encoders from their recipes: ``python -m labkit.pretrained train <names | all>``.

``train(name)`` builds the recipe's training images and hands them to the recipe's
method, one entry of ``METHODS``. A method is
``method(recipe, images, labels, **common) -> {file suffix: trained module}``:
``images`` (N, 1, 64, 64) uint8 in {0, 1} and ``labels`` (N,) shape classes, on the
training device; ``common`` the keyword arguments every labkit trainer takes
(``num_epochs``, ``batch_size``, ``lr``, ``seed``, ``device``, ``progress``). The
suffix is "" for the encoder and "_decoder" for a VAE's decoder.
"""
from __future__ import annotations

import dataclasses
import json
import time

import torch
import torch.nn as nn

from .. import augment, models, training
from .. import pretrained as registry  # WEIGHTS, MANIFEST, RECIPES, DATA: looked up when used
from ..datasets import dsprites
from ..runtime import get_device

# The augmentations a recipe may name (``Recipe.augmentation``); each is called with no arguments.
AUGMENTATIONS = {"dsprites_affine": augment.dsprites_affine}


def _random(recipe, images, labels, **common) -> dict[str, nn.Module]:
    """Untrained weights; only the BatchNorm statistics are set, from the training images."""
    return {"": training.calibrate_batchnorm(models.DSpritesEncoder(), images, device=common["device"])}


def _supervised(recipe, images, labels, **common) -> dict[str, nn.Module]:
    """Encoder and linear head end to end on the shape labels."""
    encoder = models.DSpritesEncoder()
    everything = torch.arange(len(images))  # train on every image of the recipe's set; the lab tests it later
    training.train_classifier(encoder, (images, labels), everything, everything[:1], freeze_features=False, **common)
    return {"": encoder}


def _vae(recipe, images, labels, **common) -> dict[str, nn.Module]:
    """A VAE with the dSprites decoder (Bernoulli likelihood on logits); ships encoder and decoder."""
    vae = models.VAE(models.DSpritesEncoder(vae=True), models.DSpritesDecoder())
    training.train_vae(vae, images, logits=True, **common)
    return {"": vae.encoder, "_decoder": vae.decoder}


def _simclr(recipe, images, labels, **common) -> dict[str, nn.Module]:
    """SimCLR on two views per image from the recipe's augmentation."""
    encoder = models.DSpritesEncoder()
    projector = models.mlp(84, recipe.projector, 84) if recipe.projector else None
    if recipe.augmentation not in AUGMENTATIONS:
        raise ValueError(f"A SimCLR recipe names its augmentation: set augmentation= to one of "
                         f"{', '.join(AUGMENTATIONS)}; got {recipe.augmentation!r}.")
    training.train_simclr(encoder, images, AUGMENTATIONS[recipe.augmentation](), projector=projector,
                          temperature=recipe.temperature, neg_pairs=recipe.neg_pairs,
                          lr_schedule=recipe.lr_schedule, **common)
    return {"": encoder}


METHODS = {"random": _random, "supervised": _supervised, "vae": _vae, "simclr": _simclr}


def training_indices(data: dsprites.DSprites, which: str) -> torch.Tensor:
    """Indices of the images a recipe trains on (``which``: train, biased or bias_ctrl)."""
    seed = registry.DATA["seed"]
    if which == "train":
        sampler, _ = dsprites.train_test_split(data, seed=seed)
    elif which in ("biased", "bias_ctrl"):
        sampler, _ = dsprites.biased_split(data, seed=seed, control=which == "bias_ctrl")
    else:
        raise ValueError(f"Unknown training data {which!r}; use train, biased or bias_ctrl.")
    return torch.as_tensor(sampler.indices)


def train(name: str, device=None, progress: bool = True) -> dict[str, dict]:
    """Train one registry entry from scratch. Returns ``{file stem: state_dict}`` (the VAE adds its decoder)."""
    recipe = registry.RECIPES[name]
    method = METHODS.get(recipe.method)
    if method is None:
        raise ValueError(f"Unknown method {recipe.method!r} in the recipe of {name!r}; use one of "
                         f"{', '.join(METHODS)}.")
    device = torch.device(device) if device is not None else get_device()
    data = registry.dataset().to(device)
    idx = training_indices(data, recipe.data).to(device)
    images, labels = data.images[idx].unsqueeze(1), data.latents_classes[idx, 0]   # (N, 1, 64, 64), (N,)
    torch.manual_seed(recipe.seed)  # the initial weights
    modules = method(recipe, images, labels, num_epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr,
                     seed=recipe.seed, device=device, progress=progress)
    return {name + suffix: module.state_dict() for suffix, module in modules.items()}


def save(name: str, states: dict[str, dict], seconds: float, device: torch.device) -> None:
    """Write the files of one entry and record them in manifest.json."""
    registry.WEIGHTS.mkdir(exist_ok=True)
    table = registry.manifest()
    for stem, state in states.items():
        state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        path = registry._file(stem)
        torch.save(state, path)
        table[stem] = {
            "recipe": dataclasses.asdict(registry.RECIPES[name]), "data": registry.DATA,
            "sha256": registry._sha256(path),
            "seconds": round(seconds, 1), "machine": registry._machine(device),
            "torch": torch.__version__.split("+")[0], "date": time.strftime("%Y-%m-%d"),
        }
    registry.MANIFEST.write_text(json.dumps(dict(sorted(table.items())), indent=1) + "\n")
