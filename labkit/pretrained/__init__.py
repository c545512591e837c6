"""The dSprites lab's pre-trained encoders: their registry, and loading the shipped weights.

    from labkit import pretrained
    encoder = pretrained.load_encoder("simclr")        # frozen: eval mode, no gradients
    features = encoder.get_features(images)            # (B, 1, 64, 64) in [0, 1] -> (B, 84)

Every encoder is trained by labkit's own code on labkit's generated dSprites (20,000
images, seed 0; training split of ``train_test_split(seed=0)``, or the biased / control
pools of ``biased_split(seed=0)``), never on the test images. The weights live in
``labkit/weights/`` with ``manifest.json``, which records for each file its recipe,
sha256, training time, machine and library versions.

This package, by job:

- here: the recipes (``RECIPES``, ``NAMES``), the manifest, ``load_encoder``,
  ``load_decoder``, ``describe``, ``verify``. ``_state`` is the one function that
  loads a weight file; the loaders go through it.
- ``retrain``: training an encoder from its recipe (``train``, ``save``, the
  ``METHODS`` table);
- ``table``: the lab's accuracy table (``accuracy_table``, ``format_table``), the
  README block and ``accuracy_table.json`` generated from it, and lab 4's results table
  (``lab_results_table``: a student's figures beside the shipped ones and Neuromatch's);
- ``__main__``: the command line::

    python -m labkit.pretrained verify                    # every file present and matching its hash
    python -m labkit.pretrained train all                 # or names: train simclr vae
    python -m labkit.pretrained table                     # the accuracy table from the shipped files
    python -m labkit.pretrained table --write README.md   # ... and rewrite its generated block
"""
from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from .. import models
from ..datasets import dsprites
from ..runtime import get_device

WEIGHTS = Path(__file__).parent.parent / "weights"
MANIFEST = WEIGHTS / "manifest.json"
DATA = dict(num_images=20_000, seed=0)  # the lab's dataset: DSprites.generate(**DATA)


@dataclass(frozen=True)
class Recipe:
    """How one encoder is made. ``method``: a key of ``retrain.METHODS`` (supervised, random, vae, simclr)."""

    method: str
    data: str = "train"            # "train" (80% split), "biased" or "bias_ctrl" (pools of biased_split)
    epochs: int = 0
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0
    temperature: float = 0.5       # SimCLR
    neg_pairs: int | str = "all"   # SimCLR: negatives per anchor
    projector: int = 0             # SimCLR: hidden width of an MLP projection head during training (0: none)
    lr_schedule: str = "cosine"    # "cosine" (decays to 0) or "constant" (Neuromatch's SimCLR, effectively)
    augmentation: str | None = None  # SimCLR: a preset of labkit.augment, by name (retrain.AUGMENTATIONS)


# SimCLR follows Neuromatch's recipes: 60 epochs of batch 1000 (960 steps) at a constant learning rate
# (Neuromatch's cosine has T_max=500 epochs, so it hardly decays); decaying it to zero froze the encoder at
# 79% instead of 94% (README). The biased variants, 150 epochs of the 3.3x smaller pools, use the same
# constant rate (with the decay the control stopped at 69% instead of 95%). All see Neuromatch's views,
# augment.dsprites_affine(). The VAEs are shorter than Neuromatch's (15 / 30 epochs instead of 300 / 450)
# because the shipped files were trained on a 2-core CPU; on a GPU, retrain longer.
_SIMCLR = dict(batch_size=1000, lr_schedule="constant", augmentation="dsprites_affine")  # every SimCLR recipe
RECIPES: dict[str, Recipe] = {
    "supervised": Recipe("supervised", epochs=10, batch_size=250),
    "random": Recipe("random"),
    "simclr": Recipe("simclr", epochs=60, **_SIMCLR),
    "vae": Recipe("vae", epochs=15, batch_size=128),
    "simclr_2neg": Recipe("simclr", epochs=60, neg_pairs=2, **_SIMCLR),
    "simclr_biased": Recipe("simclr", data="biased", epochs=150, **_SIMCLR),
    "simclr_bias_ctrl": Recipe("simclr", data="bias_ctrl", epochs=150, **_SIMCLR),
    "vae_biased": Recipe("vae", data="biased", epochs=30, batch_size=128),
    "vae_bias_ctrl": Recipe("vae", data="bias_ctrl", epochs=30, batch_size=128),
}
NAMES = tuple(RECIPES)


def dataset() -> dsprites.DSprites:
    """The generated 20,000-image dSprites the encoders and the lab use (never a real file)."""
    return dsprites.DSprites.generate(**DATA)


# ---------------------------------------------------------------------------- the shipped files

def _file(stem: str) -> Path:
    return WEIGHTS / f"{stem}.pt"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest() -> dict:
    """The registry as shipped: ``{file stem: {"recipe", "sha256", "seconds", "machine", ...}}``."""
    if not MANIFEST.is_file():
        return {}
    return json.loads(MANIFEST.read_text())


def _state(stem: str) -> dict:
    """The state dict in ``<stem>.pt``, after checking it against its sha256: the one place a weight file is loaded."""
    path = _file(stem)
    entry = manifest().get(stem)
    if entry is None or not path.is_file():
        raise FileNotFoundError(f"No shipped weights {path.name} in {WEIGHTS}. Reinstall labkit, or make them with "
                                f"`python -m labkit.pretrained train {stem.removesuffix('_decoder')}`.")
    if _sha256(path) != entry["sha256"]:
        raise ValueError(f"{path} does not match its sha256 in manifest.json (damaged or replaced). "
                         f"Reinstall labkit or retrain it with `python -m labkit.pretrained train {stem}`.")
    return torch.load(path, map_location="cpu", weights_only=True)


def _machine(device: torch.device) -> str:
    """What the manifest and accuracy_table.json record as the machine."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _frozen(module: nn.Module, device, trainable: bool) -> nn.Module:
    module.to(device or get_device()).eval()
    return module.requires_grad_(trainable)


def load_encoder(name: str, device=None, trainable: bool = False) -> models.DSpritesEncoder:
    """A shipped dSprites encoder by name (see ``NAMES``), frozen unless ``trainable``.

    It has ``get_features(x)``: float images (B, 1, 64, 64) in [0, 1] -> (B, 84) features
    (the mean of q(z | x) for the VAE encoders). It comes in eval mode, so its BatchNorm
    layers use their stored statistics and never update them.
    """
    if name not in RECIPES:
        raise KeyError(f"Unknown encoder {name!r}; the shipped ones are {', '.join(NAMES)}.")
    encoder = models.DSpritesEncoder(vae=RECIPES[name].method == "vae")
    encoder.load_state_dict(_state(name))
    return _frozen(encoder, device, trainable)


def load_decoder(name: str = "vae", device=None, trainable: bool = False) -> models.DSpritesDecoder:
    """The decoder trained with a VAE encoder (shipped for ``"vae"``): (B, 84) -> (B, 1, 64, 64) logits."""
    decoder = models.DSpritesDecoder()
    decoder.load_state_dict(_state(f"{name}_decoder"))
    return _frozen(decoder, device, trainable)


def describe(name: str) -> str:
    """One line: how the encoder was made and on what machine."""
    entry = manifest().get(name)
    if entry is None:
        return f"{name}: not shipped"
    r = entry["recipe"]
    how = f"{r['method']} on {r['data']} images, {r['epochs']} epochs, batch {r['batch_size']}, seed {r['seed']}"
    if r.get("lr_schedule") == "constant":
        how += f", constant learning rate {r['lr']:g}"
    return f"{name}: {how}; trained in {entry['seconds'] / 60:.1f} min on {entry['machine']}"


def stems() -> set[str]:
    """The file stems the registry ships: every recipe, and a decoder per VAE."""
    return set(NAMES) | {f"{name}_decoder" for name, r in RECIPES.items() if r.method == "vae"}


def verify() -> list[str]:
    """Problems with the shipped files (missing, unlisted, hash mismatch); empty when all is well.

    Hashes the files; loads none of them.
    """
    table, problems = manifest(), []
    for stem in sorted(stems() - set(table)):
        problems.append(f"{stem}: not in manifest.json")
    for stem, entry in table.items():
        path = _file(stem)
        if not path.is_file():
            problems.append(f"{stem}: {path.name} is missing")
        elif _sha256(path) != entry["sha256"]:
            problems.append(f"{stem}: sha256 mismatch")
    return problems


def main(argv=None) -> None:
    """The command line, ``python -m labkit.pretrained`` (see ``labkit/pretrained/__main__.py``)."""
    from .__main__ import main as cli

    cli(argv)


# The other jobs, re-exported so that ``pretrained.train`` and ``pretrained.accuracy_table`` keep working.
from .retrain import AUGMENTATIONS, METHODS, save, train, training_indices  # noqa: E402
from .table import accuracy_table, format_table, lab_results_table, shipped_result  # noqa: E402

__all__ = ["WEIGHTS", "MANIFEST", "DATA", "Recipe", "RECIPES", "NAMES", "dataset", "manifest", "load_encoder",
           "load_decoder", "describe", "stems", "verify", "train", "save", "training_indices", "METHODS",
           "AUGMENTATIONS", "accuracy_table", "format_table", "lab_results_table", "shipped_result", "main"]
