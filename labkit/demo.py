"""A short end-to-end run of labkit on generated dSprites: a check that an install works.

    python -m labkit.demo [--out demo_output] [--num-images 6000] [--epochs 8]

Renders dSprites, trains a supervised, a VAE and a SimCLR encoder briefly, fits a
linear classifier of shape on each encoder's frozen features (and on raw pixels
and a random encoder), prints the accuracy table and saves a figure of samples,
RSMs and training curves. A few minutes on a laptop CPU, seconds on a GPU.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import torch

from . import augment, evaluation, models, plots, rsm, training
from .datasets import dsprites
from .runtime import setup


def train_encoders(data, train_sampler, test_sampler, epochs: int, device, seed: int) -> tuple[dict, dict]:
    """The lab's encoders, trained briefly. Returns ({name: encoder or None}, {name: losses})."""
    train_images = data.images[torch.as_tensor(train_sampler.indices)]
    encoders, curves = {"raw pixels": None}, {}

    torch.manual_seed(seed)
    encoders["random"] = training.calibrate_batchnorm(models.DSpritesEncoder(), train_images, device=device)

    torch.manual_seed(seed)
    supervised = models.DSpritesEncoder()
    _, curves["supervised"], *_ = training.train_classifier(
        supervised, data, train_sampler, test_sampler, num_epochs=epochs, batch_size=250, freeze_features=False,
        seed=seed, device=device)
    encoders["supervised"] = supervised

    torch.manual_seed(seed)
    vae = models.VAE(models.DSpritesEncoder(vae=True), models.DSpritesDecoder())
    _, curves["VAE"] = training.train_vae(vae, train_images, num_epochs=2 * epochs, batch_size=250, logits=True,
                                          seed=seed, device=device)
    encoders["VAE"] = vae.encoder

    torch.manual_seed(seed)
    simclr = models.DSpritesEncoder()
    _, curves["SimCLR"] = training.train_simclr(simclr, train_images, augment.dsprites_affine(), num_epochs=epochs,
                                                batch_size=500, seed=seed, device=device)
    encoders["SimCLR"] = simclr
    return encoders, curves


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo_output"), help="folder for the figure")
    parser.add_argument("--num-images", type=int, default=6000, help="generated dSprites images (the lab uses 20000)")
    parser.add_argument("--epochs", type=int, default=8, help="training epochs per encoder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    matplotlib.use("Agg")  # figures go to files; here, not at import, so importing the demo changes nothing
    device = setup(args.seed)
    start = time.perf_counter()
    data = dsprites.DSprites.generate(args.num_images, seed=args.seed)
    print(f"rendered {len(data)} dSprites images in {time.perf_counter() - start:.1f} s")
    train_sampler, test_sampler = dsprites.train_test_split(data, train_fraction=0.8, seed=args.seed)

    start = time.perf_counter()
    encoders, curves = train_encoders(data, train_sampler, test_sampler, args.epochs, device, args.seed)
    print(f"trained the encoders in {time.perf_counter() - start:.1f} s on {device}")

    accuracies = {}
    for name, encoder in encoders.items():
        *_, test_acc = training.train_classifier(encoder, data, train_sampler, test_sampler, num_epochs=20,
                                                 batch_size=250, seed=args.seed, device=device, progress=False)
        accuracies[name] = test_acc
    print("\nshape classification on frozen features (test accuracy, chance 33.3%):")
    for name, acc in accuracies.items():
        print(f"  {name:<12} {acc:5.1f}%")

    path = save_figure(data, test_sampler, encoders, curves, args.out, device)
    print(f"\nfigure: {path}")
    return accuracies


def save_figure(data, test_sampler, encoders: dict, curves: dict, out: Path, device) -> Path:
    """Samples, RSMs sorted by shape for each trained encoder, and the training curves, in one PNG."""
    out.mkdir(parents=True, exist_ok=True)
    idx = torch.as_tensor(test_sampler.indices)[:600]
    shapes = data.latents_classes[idx, 0]
    names = [n for n, e in encoders.items() if e is not None]
    fig, axes = plt.subplots(2, len(names), figsize=(3.3 * len(names), 6.6))
    for ax, name in zip(axes[0], names):
        feats = evaluation.extract_features(encoders[name], data.images[idx], device=device)
        sorted_rsm, sorted_shapes = rsm.sort_by_latent(rsm.compute_rsm(feats), shapes)
        plots.plot_rsm(sorted_rsm.cpu(), sorted_shapes, "shape", title=f"{name} RSM (by shape)", ax=ax)
    for ax, (name, values) in zip(axes[1], curves.items()):
        plots.plot_losses({name: values}, ax=ax)
        ax.set_title(f"{name} training loss", fontsize=9)
    for ax in axes[1][len(curves):]:
        ax.axis("off")
    fig.suptitle("labkit demo on generated dSprites")
    fig.tight_layout()
    path = out / "labkit_demo.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    plots.show_images(data.images[idx[:16]], titles=[dsprites.SHAPE_NAMES[int(s)] for s in shapes[:16]]).savefig(
        out / "dsprites_samples.png", dpi=90)
    plt.close("all")
    return path


if __name__ == "__main__":
    main()
