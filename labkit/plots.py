"""Figures the labs show. Each function draws on an axis (or makes a figure) and returns it.

No global style changes: nothing here touches rcParams.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from .images import to_float


def _numpy(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def show_images(images, titles=None, ncols: int = 8, cmap: str = "gray", size: float = 1.5, suptitle: str | None = None):
    """A grid of images: (N, H, W), (N, 1, H, W) or (N, 3, H, W); uint8 (0..255 or binary 0/1), bool, or
    float in [0, 1] (tensors or arrays; converted by :func:`labkit.images.to_float`). Returns the figure."""
    images = _numpy(to_float(torch.as_tensor(images)))       # (N, C, H, W) in [0, 1]
    images = images.transpose(0, 2, 3, 1)                    # (N, H, W, C)
    images = images[..., 0] if images.shape[-1] == 1 else images
    n = len(images)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, min(n, ncols), figsize=(size * min(n, ncols), size * nrows + 0.3), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], cmap=cmap, vmin=0, vmax=1)
            if titles is not None:
                ax.set_title(str(titles[i]), fontsize=7)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_rsm(rsm, latent_values=None, latent_name: str = "", title: str = "", ax=None):
    """An RSM as an image, rows/columns already sorted by ``latent_values``; ticks mark where the latent changes."""
    ax = ax or plt.subplots(figsize=(4, 4))[1]
    im = ax.imshow(_numpy(rsm), cmap="viridis", vmin=-1, vmax=1, interpolation="none")
    ax.set_title(title, fontsize=9)
    if latent_values is not None:
        values = _numpy(latent_values)
        changes = np.flatnonzero(np.diff(values)) + 1
        if len(changes) <= 12:  # a categorical latent: mark block edges
            ax.set_xticks(changes - 0.5, labels=[""] * len(changes))
            ax.set_yticks(changes - 0.5, labels=[""] * len(changes))
        else:
            ax.set_xticks([]), ax.set_yticks([])
        ax.set_xlabel(f"sorted by {latent_name}" if latent_name else "")
    plt.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return ax


def plot_rsm_histogram(rsms: dict, bins: int = 100, ax=None):
    """Histograms of the off-diagonal similarities of several RSMs, one colour each."""
    from .rsm import offdiagonal

    ax = ax or plt.subplots(figsize=(5, 3))[1]
    for name, rsm in rsms.items():
        ax.hist(_numpy(offdiagonal(torch.as_tensor(rsm))), bins=bins, range=(-1, 1), alpha=0.5, density=True, label=name)
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    return ax


def plot_losses(histories: dict, ax=None, xlabel: str = "step", logy: bool = False):
    """Training curves: ``{name: per-step losses}``."""
    ax = ax or plt.subplots(figsize=(5, 3))[1]
    for name, values in histories.items():
        ax.plot(_numpy(values), label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss")
    if logy:
        ax.set_yscale("log")
    if len(histories) > 1:
        ax.legend(fontsize=8)
    return ax


def plot_latent_scatter(z, labels, class_names=None, title: str = "", ax=None, max_points: int = 5000):
    """A 2-D latent space coloured by class (the first two columns of ``z``)."""
    z, labels = _numpy(z)[:max_points], _numpy(labels)[:max_points]
    ax = ax or plt.subplots(figsize=(5, 4.5))[1]
    points = ax.scatter(z[:, 0], z[:, 1], c=labels, cmap="tab10", s=3, alpha=0.7)
    classes = np.unique(labels)
    handles = [plt.Line2D([], [], marker="o", ls="", color=points.cmap(points.norm(c)), markersize=4) for c in classes]
    names = [class_names[int(c)] if class_names is not None else str(int(c)) for c in classes]
    ax.legend(handles, names, fontsize=7, loc="best", markerscale=1.2)
    ax.set_title(title)
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    return ax


def plot_accuracies(results: dict, fractions, chance: float | None = None, ax=None):
    """Test accuracy against labelled fraction, one line per encoder: ``{name: [acc per fraction]}``."""
    ax = ax or plt.subplots(figsize=(5, 3.5))[1]
    for name, accs in results.items():
        ax.plot(fractions, accs, marker="o", label=name)
    if chance is not None:
        ax.axhline(chance, color="gray", ls="--", lw=1, label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("fraction of labelled training images")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=8)
    return ax


def plot_confusion(true_labels, predicted, class_names, title: str = "", axes=None):
    """A seaborn heatmap of the confusion matrix (rows: true class) and a bar chart of per-class accuracy.

    Returns ``(matrix, per_class_accuracy)`` as numpy arrays (counts, percent).
    """
    import seaborn as sns  # only this figure needs it
    from sklearn.metrics import confusion_matrix

    true_labels, predicted = _numpy(true_labels).astype(int), _numpy(predicted).astype(int)
    k = len(class_names)
    matrix = confusion_matrix(true_labels, predicted, labels=np.arange(k))
    per_class = 100.0 * np.diag(matrix) / np.maximum(matrix.sum(1), 1)
    if axes is None:
        axes = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [1.4, 1]})[1]
    sns.heatmap(matrix, annot=True, fmt="d", cmap="Blues", cbar=False, xticklabels=class_names,
                yticklabels=class_names, ax=axes[0])
    axes[0].set_xlabel("predicted")
    axes[0].set_ylabel("true")
    accuracy = 100.0 * np.trace(matrix) / max(matrix.sum(), 1)
    axes[0].set_title(f"{title} confusion matrix (accuracy {accuracy:.1f}%)".strip())
    axes[1].barh(np.arange(k), per_class, color="tab:blue")
    axes[1].set_yticks(np.arange(k), class_names)
    axes[1].invert_yaxis()
    axes[1].axvline(100.0 / k, color="gray", ls="--", lw=1, label="chance")
    axes[1].set_xlabel("per-class test accuracy (%)")
    axes[1].set_xlim(0, 100)
    axes[1].legend(fontsize=8)
    return matrix, per_class
