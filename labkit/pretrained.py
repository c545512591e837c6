"""The dSprites lab's pre-trained encoders: a registry of recipes, the shipped weights, and how to remake them.

    from labkit import pretrained
    encoder = pretrained.load_encoder("simclr")        # frozen: eval mode, no gradients
    features = encoder.get_features(images)            # (B, 1, 64, 64) in [0, 1] -> (B, 84)

Every encoder is trained by labkit's own code on labkit's generated dSprites (20,000
images, seed 0; training split of ``train_test_split(seed=0)``, or the biased / control
pools of ``biased_split(seed=0)``), never on the test images. The weights live in
``labkit/weights/`` with ``manifest.json``, which records for each file its recipe,
sha256, training time, machine and library versions. Retrain with::

    python -m labkit.pretrained train all          # or names: train simclr vae
    python -m labkit.pretrained verify             # every file present and matching its hash
    python -m labkit.pretrained table              # the lab's accuracy table from the shipped files
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from . import augment, models, training
from .datasets import dsprites
from .runtime import get_device

WEIGHTS = Path(__file__).parent / "weights"
MANIFEST = WEIGHTS / "manifest.json"
DATA = dict(num_images=20_000, seed=0)  # the lab's dataset: DSprites.generate(**DATA)


@dataclass(frozen=True)
class Recipe:
    """How one encoder is made. ``method``: supervised, random, vae or simclr; ``data``: which training images."""

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


# SimCLR follows Neuromatch's recipes (DESIGN.md 3.3): 60 epochs of batch 1000 (960 steps) at a constant
# learning rate (Neuromatch's cosine has T_max=500 epochs, so it hardly decays); decaying it to zero froze
# the encoder at 79% instead of 94% (README). The biased variants, 150 epochs of the 3.3x smaller pools, use
# the same constant rate (with the decay the control stopped at 69% instead of 95%). The VAEs are shorter than
# Neuromatch's (15 / 30 epochs instead of 300 / 450) because the shipped files were trained on a 2-core CPU;
# on a GPU, retrain longer.
RECIPES: dict[str, Recipe] = {
    "supervised": Recipe("supervised", epochs=10, batch_size=250),
    "random": Recipe("random"),
    "simclr": Recipe("simclr", epochs=60, batch_size=1000, lr_schedule="constant"),
    "vae": Recipe("vae", epochs=15, batch_size=128),
    "simclr_2neg": Recipe("simclr", epochs=60, batch_size=1000, neg_pairs=2, lr_schedule="constant"),
    "simclr_biased": Recipe("simclr", data="biased", epochs=150, batch_size=1000, lr_schedule="constant"),
    "simclr_bias_ctrl": Recipe("simclr", data="bias_ctrl", epochs=150, batch_size=1000, lr_schedule="constant"),
    "vae_biased": Recipe("vae", data="biased", epochs=30, batch_size=128),
    "vae_bias_ctrl": Recipe("vae", data="bias_ctrl", epochs=30, batch_size=128),
}
NAMES = tuple(RECIPES)


# ---------------------------------------------------------------------------- loading

def _file(name: str) -> Path:
    return WEIGHTS / f"{name}.pt"


def manifest() -> dict:
    """The registry as shipped: ``{file stem: {"recipe", "sha256", "seconds", "machine", ...}}``."""
    if not MANIFEST.is_file():
        return {}
    return json.loads(MANIFEST.read_text())


def _state(stem: str) -> dict:
    path = _file(stem)
    entry = manifest().get(stem)
    if entry is None or not path.is_file():
        raise FileNotFoundError(f"No shipped weights {path.name} in {WEIGHTS}. Reinstall labkit, or make them with "
                                f"`python -m labkit.pretrained train {stem.removesuffix('_decoder')}`.")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != entry["sha256"]:
        raise ValueError(f"{path} does not match its sha256 in manifest.json (damaged or replaced). "
                         f"Reinstall labkit or retrain it with `python -m labkit.pretrained train {stem}`.")
    return torch.load(path, map_location="cpu", weights_only=True)


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


# ---------------------------------------------------------------------------- training

def dataset() -> dsprites.DSprites:
    """The generated 20,000-image dSprites the encoders and the lab use (never a real file)."""
    return dsprites.DSprites.generate(**DATA)


def training_indices(data: dsprites.DSprites, which: str) -> torch.Tensor:
    """Indices of the images a recipe trains on (``which``: train, biased or bias_ctrl)."""
    if which == "train":
        sampler, _ = dsprites.train_test_split(data, seed=DATA["seed"])
    elif which in ("biased", "bias_ctrl"):
        sampler, _ = dsprites.biased_split(data, seed=DATA["seed"], control=which == "bias_ctrl")
    else:
        raise ValueError(f"Unknown training data {which!r}; use train, biased or bias_ctrl.")
    return torch.as_tensor(sampler.indices)


def train(name: str, device=None, progress: bool = True) -> dict[str, dict]:
    """Train one registry entry from scratch. Returns ``{file stem: state_dict}`` (the VAE adds its decoder)."""
    recipe = RECIPES[name]
    device = torch.device(device) if device is not None else get_device()
    data = dataset().to(device)
    idx = training_indices(data, recipe.data).to(device)
    images = data.images[idx].unsqueeze(1)
    torch.manual_seed(recipe.seed)
    common = dict(num_epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr, seed=recipe.seed,
                  device=device, progress=progress)
    if recipe.method == "random":
        encoder = training.calibrate_batchnorm(models.DSpritesEncoder(), images, device=device)
    elif recipe.method == "supervised":
        encoder = models.DSpritesEncoder()
        labels = data.latents_classes[idx, 0]
        everything = torch.arange(len(idx))  # train on every image of the recipe's set; the lab tests it later
        training.train_classifier(encoder, (images, labels), everything, everything[:1], freeze_features=False,
                                  **common)
    elif recipe.method == "vae":
        vae = models.VAE(models.DSpritesEncoder(vae=True), models.DSpritesDecoder())
        training.train_vae(vae, images, logits=True, **common)
        return {name: vae.encoder.state_dict(), f"{name}_decoder": vae.decoder.state_dict()}
    elif recipe.method == "simclr":
        encoder = models.DSpritesEncoder()
        projector = models.mlp(84, recipe.projector, 84) if recipe.projector else None
        training.train_simclr(encoder, images, augment.dsprites_affine(), projector=projector,
                              temperature=recipe.temperature, neg_pairs=recipe.neg_pairs,
                              lr_schedule=recipe.lr_schedule, **common)
    else:
        raise ValueError(f"Unknown method {recipe.method!r} in the recipe of {name!r}.")
    return {name: encoder.state_dict()}


def _machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def save(name: str, states: dict[str, dict], seconds: float, device: torch.device) -> None:
    """Write the files of one entry and record them in manifest.json."""
    WEIGHTS.mkdir(exist_ok=True)
    table = manifest()
    for stem, state in states.items():
        state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        torch.save(state, _file(stem))
        table[stem] = {
            "recipe": dataclasses.asdict(RECIPES[name]), "data": DATA,
            "sha256": hashlib.sha256(_file(stem).read_bytes()).hexdigest(),
            "seconds": round(seconds, 1), "machine": _machine(device),
            "torch": torch.__version__.split("+")[0], "date": time.strftime("%Y-%m-%d"),
        }
    MANIFEST.write_text(json.dumps(dict(sorted(table.items())), indent=1) + "\n")


def verify() -> list[str]:
    """Problems with the shipped files (missing, unlisted, hash mismatch); empty when all is well."""
    table, problems = manifest(), []
    expected = set(NAMES) | {f"{name}_decoder" for name, r in RECIPES.items() if r.method == "vae"}
    for stem in sorted(expected - set(table)):
        problems.append(f"{stem}: not in manifest.json")
    for stem, entry in table.items():
        path = _file(stem)
        if not path.is_file():
            problems.append(f"{stem}: {path.name} is missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
            problems.append(f"{stem}: sha256 mismatch")
    return problems


# ---------------------------------------------------------------------------- the accuracy table

def accuracy_table(device=None, epochs: int = 30, fraction: float = 0.05) -> dict[str, dict[str, float]]:
    """Shape test accuracy (%) of a linear classifier on each shipped encoder's frozen features.

    Columns: ``all`` (80/20 split, all labels), ``5% labels`` (``fraction`` of them; the
    supervised row trains a new encoder end to end on those labels only) and
    ``biased`` (classifier trained on the biased pool of ``biased_split``, tested on its
    unbiased held-out images; the VAE and SimCLR rows use the encoders trained on that
    pool, the supervised row an encoder trained end to end on it, as in the lab) next to
    ``bias control`` (the same with the size-matched unbiased pool). Rows: raw pixels and
    the encoders. About a minute on a 2-core CPU.
    """
    device = torch.device(device) if device is not None else get_device()
    data = dataset().to(device)
    train_sampler, test_sampler = dsprites.train_test_split(data, seed=DATA["seed"])
    biased, unbiased_test = dsprites.biased_split(data, seed=DATA["seed"])
    control, _ = dsprites.biased_split(data, seed=DATA["seed"], control=True)

    def acc(encoder, train, test, fraction_of_labels=1.0):
        """A linear probe; epochs scaled by 1 / sqrt(fraction) as in the lab (few labels, few steps otherwise)."""
        return training.train_classifier(encoder, data, train, test,
                                         training.epochs_for_fraction(epochs, fraction_of_labels),
                                         fraction_of_labels=fraction_of_labels, lr=1e-2, seed=0, device=device,
                                         progress=False)[3]

    def supervised_on(train, test, fraction_of_labels=1.0):
        """A fresh encoder trained end to end; epochs scaled by 1 / sqrt(fraction) as in the lab."""
        torch.manual_seed(0)
        recipe = RECIPES["supervised"]
        return training.train_classifier(models.DSpritesEncoder(), data, train, test,
                                         training.epochs_for_fraction(recipe.epochs, fraction_of_labels),
                                         fraction_of_labels=fraction_of_labels, batch_size=recipe.batch_size,
                                         freeze_features=False, seed=0, device=device, progress=False)[3]

    few = f"{fraction:.0%} labels"
    table = {}
    for row in ("raw pixels", "supervised", "random", "vae", "simclr", "simclr_2neg"):
        encoder = None if row == "raw pixels" else load_encoder(row, device)
        table[row] = {"all": acc(encoder, train_sampler, test_sampler),
                      few: acc(encoder, train_sampler, test_sampler, fraction_of_labels=fraction)}
    table["supervised"][few] = supervised_on(train_sampler, test_sampler, fraction)  # labels limit it end to end
    for row in ("raw pixels", "random"):
        encoder = None if row == "raw pixels" else load_encoder(row, device)
        table[row]["biased"] = acc(encoder, biased, unbiased_test)
        table[row]["bias control"] = acc(encoder, control, unbiased_test)
    table["supervised"]["biased"] = supervised_on(biased, unbiased_test)
    table["supervised"]["bias control"] = supervised_on(control, unbiased_test)
    for row in ("vae", "simclr"):
        table[row]["biased"] = acc(load_encoder(f"{row}_biased", device), biased, unbiased_test)
        table[row]["bias control"] = acc(load_encoder(f"{row}_bias_ctrl", device), control, unbiased_test)
    return table


def format_table(table: dict[str, dict[str, float]]) -> str:
    columns = list(dict.fromkeys(c for row in table.values() for c in row))
    lines = ["| encoder | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, row in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.1f}" if c in row else "" for c in columns) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m labkit.pretrained", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="retrain registry entries and update manifest.json")
    t.add_argument("names", nargs="+", help=f"'all' or some of: {', '.join(NAMES)}")
    t.add_argument("--device", default=None)
    sub.add_parser("verify", help="check that every shipped file is present and matches its sha256")
    tb = sub.add_parser("table", help="the lab's accuracy table from the shipped encoders")
    tb.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    if args.command == "train":
        names = NAMES if args.names == ["all"] else args.names
        unknown = [n for n in names if n not in RECIPES]
        if unknown:
            parser.error(f"unknown names {unknown}; choose from {', '.join(NAMES)} or 'all'")
        device = torch.device(args.device) if args.device else get_device()
        for name in names:
            start = time.perf_counter()
            states = train(name, device)
            save(name, states, time.perf_counter() - start, device)
            print(describe(name), flush=True)
    elif args.command == "verify":
        problems = verify()
        print("\n".join(problems) if problems else f"all {len(manifest())} files match manifest.json")
        raise SystemExit(1 if problems else 0)
    else:
        print(format_table(accuracy_table(args.device)))


if __name__ == "__main__":
    main()
