"""Self-checks of lab 4 (representations on dSprites), one per graded function (graded for real by
``autograder/exercises/lab4_representations.py``, which shares the seeded fixtures of :mod:`.fixtures`)."""
from __future__ import annotations

import math

import torch

from .. import rsm
from ..images import to_float
from .common import as_tensor, assert_close, assert_nt_xent, generator, global_bound
from .fixtures import (calibrated_encoder, epochs_verdict, features, shape_fit, small_dsprites,
                       synthetic_loss_curve)


def _state(module: torch.nn.Module) -> list[torch.Tensor]:
    return [t.detach().cpu().clone() for t in module.state_dict().values()]  # cpu: the function may move it


def _axes(value, what: str):
    from matplotlib.axes import Axes

    if not isinstance(value, Axes):
        raise AssertionError(f"{what} should be a matplotlib Axes, got {type(value).__name__}.")
    return value


def check_rsm(rsm_fn, thorough: bool = False) -> None:
    """An RSM: (N, N) cosine similarities between rows, no centering."""
    g = generator(thorough)
    feats = torch.randn(7, 5, generator=g)
    assert_close(as_tensor(rsm_fn(feats), "the RSM function"), rsm.compute_rsm(feats), "RSM",
           "normalize each row to unit length, then take all pairwise dot products (no mean subtraction).")
    print("RSM: matches cosine similarity between all pairs of rows")


def check_contrastive_loss(loss_fn, thorough: bool = False) -> None:
    """NT-Xent: the positive of row i is row i of the other view; only self-similarity leaves the denominator."""
    assert_nt_xent(loss_fn, "the loss", thorough)
    print("contrastive loss: matches NT-Xent")


def check_supervised_encoder(train_supervised_encoder, thorough: bool = False) -> None:
    """A fresh encoder trained end to end: (B, 1, 64, 64) -> (B, 84) features that encode shape."""
    seed = int(generator(thorough).initial_seed()) % 1000
    data, train, test = small_dsprites(600, seed)
    out = train_supervised_encoder(data, train, test, num_epochs=4, batch_size=40)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise AssertionError("train_supervised_encoder should return the pair (encoder, test_acc).")
    encoder, test_acc = out
    if not hasattr(encoder, "get_features"):
        raise AssertionError("the encoder should be a labkit DSpritesEncoder (it has get_features).")
    with torch.no_grad():
        feats = encoder.eval().get_features(to_float(data.images[:5], max_value=1).to(next(encoder.parameters()).device))
    if tuple(feats.shape) != (5, 84):
        raise AssertionError(f"the encoder's features should be (5, 84) for 5 images; got {tuple(feats.shape)}.")
    if not 0.0 <= float(test_acc) <= 100.0:
        raise AssertionError(f"test_acc should be a percentage; got {test_acc}.")
    learned = shape_fit(features(encoder.cpu().eval(), data.images), data, train.indices)
    untrained = shape_fit(features(calibrated_encoder(data.images, seed), data.images), data, train.indices)
    if learned < untrained + 10:
        raise AssertionError(f"the returned encoder's features fit shape no better than an untrained encoder's "
                             f"({learned:.0f}% vs {untrained:.0f}% on its training images): train a fresh encoder "
                             "end to end (freeze_features=False) and return that encoder.")
    print(f"supervised encoder: trains end to end (shape fits {learned:.0f}% of its training images from the "
          f"features, an untrained encoder's {untrained:.0f}%)")


def check_model_rsms(plot_model_rsms, thorough: bool = False) -> None:
    """One axis per encoder, each showing the RSM of its features sorted by the latent.

    Checked (and graded) with labkit's RSM standing in for ``custom_torch_RSM_fct``: a wrong RSM fails
    ``check_rsm``, not this check as well."""
    import matplotlib.pyplot as plt

    seed = int(generator(thorough).initial_seed()) % 1000
    data, *_ = small_dsprites(40, seed)
    images = to_float(data.images, max_value=1)
    encoders = {"A": calibrated_encoder(data.images, seed), "B": calibrated_encoder(data.images, seed + 1)}
    latent = torch.rand(len(images), generator=torch.Generator().manual_seed(seed))  # no ties: one sorted order
    with global_bound(plot_model_rsms, "custom_torch_RSM_fct", rsm.compute_rsm):
        axes = plot_model_rsms(encoders, images, latent, latent_name="a made-up latent")
    axes = list(axes) if not isinstance(axes, list) else axes
    if len(axes) != 2:
        raise AssertionError(f"plot_model_rsms should return one axis per encoder (2 here); got {len(axes)}.")
    for (name, encoder), ax in zip(encoders.items(), axes):
        shown = _axes(ax, "each returned item").get_images()
        if not shown:
            raise AssertionError(f"the axis of encoder {name!r} shows no image: draw the RSM with plots.plot_rsm.")
        with torch.no_grad():
            expected, _ = rsm.sort_by_latent(rsm.compute_rsm(encoder.get_features(images)), latent)
        assert_close(torch.as_tensor(shown[0].get_array().data).float(), expected, f"the RSM shown for {name!r}",
               "features with encoder.get_features under torch.no_grad(), the RSM of those, then rows and columns "
               "sorted with rsm.sort_by_latent.")
    plt.close(axes[0].figure)
    print("plot_model_rsms: each axis shows the sorted RSM of its encoder (checked with labkit's RSM in place of "
          "your custom_torch_RSM_fct, which check_rsm checks)")


def check_probe(train_and_plot_probe, thorough: bool = False) -> None:
    """A linear classifier on frozen features: the encoder is unchanged and the loss curve is drawn."""
    import matplotlib.pyplot as plt

    seed = int(generator(thorough).initial_seed()) % 1000
    data, train, test = small_dsprites(600, seed)
    encoder = calibrated_encoder(data.images, seed)
    before = _state(encoder)
    out = train_and_plot_probe(encoder, data, train, test, num_epochs=5, title="check")
    if not (isinstance(out, tuple) and len(out) == 2):
        raise AssertionError("train_and_plot_probe should return the pair (test_acc, ax).")
    test_acc, ax = out
    if not 0.0 <= float(test_acc) <= 100.0:
        raise AssertionError(f"test_acc should be a percentage; got {test_acc}.")
    if any(not torch.equal(a, b) for a, b in zip(before, _state(encoder))):
        raise AssertionError("the encoder changed (weights or BatchNorm statistics): its features must stay frozen "
                             "(freeze_features=True).")
    lines = _axes(ax, "the second returned value").get_lines()
    if len(lines) != 1 or len(lines[0].get_ydata()) < 5:
        raise AssertionError("the axis should hold one line: the classifier's loss at every training step.")
    if not all(math.isfinite(float(v)) for v in lines[0].get_ydata()):
        raise AssertionError("the plotted loss has non-finite values.")
    plt.close(ax.figure)
    print(f"train_and_plot_probe: encoder left unchanged, loss curve drawn ({float(test_acc):.0f}% on a tiny set)")


def check_probe_epochs(choose_probe_epochs, thorough: bool = False) -> None:
    """A number of epochs read off a loss curve: after the loss has levelled off, not long after."""
    import numpy as np

    rng = np.random.default_rng(int(generator(thorough).initial_seed()))
    chosen = []
    for name, tau, length in (("a fast fall", 2.0, 30), ("a slow fall", 7.0, 60)):
        losses, smooth = synthetic_loss_curve(rng, tau, length, fall=0.8, plateau=0.3, noise=0.002)
        chosen.append(choose_probe_epochs(losses.copy()))
        message = epochs_verdict(chosen[-1], smooth, 0.3)
        if message:
            raise AssertionError(f"on a curve with {name} ({length} epochs): {message}.")
    print(f"choose_probe_epochs: {chosen[0]} epochs for a fast fall, {chosen[1]} for a slow one (both sensible)")


def check_rsm_histogram(rsm_similarity_histogram, thorough: bool = False) -> None:
    """One histogram per RSM of its off-diagonal similarities on [-1, 1]."""
    import matplotlib.pyplot as plt
    import numpy as np

    g = generator(thorough)
    rsms = {"A": rsm.compute_rsm(torch.randn(30, 6, generator=g)), "B": rsm.compute_rsm(torch.rand(30, 6, generator=g))}
    ax = _axes(rsm_similarity_histogram(rsms, bins=20), "rsm_similarity_histogram's result")
    bars = [c for c in ax.containers if len(c) == 20]
    if len(bars) != 2:
        raise AssertionError(f"expected 2 histograms of 20 bins (one per RSM, drawn with ax.hist); found {len(bars)}.")
    for (name, matrix), container in zip(rsms.items(), bars):
        heights = np.array([bar.get_height() for bar in container], dtype=float)
        expected, _ = np.histogram(rsm.offdiagonal(matrix).numpy(), bins=20, range=(-1, 1))
        if heights.sum() <= 0 or not np.allclose(heights / heights.sum(), expected / expected.sum(), atol=1e-6):
            raise AssertionError(f"the histogram of {name!r} differs from that of its off-diagonal similarities: "
                                 "leave out the diagonal (rsm.offdiagonal) and use range=(-1, 1).")
    plt.close(ax.figure)
    print("rsm_similarity_histogram: one histogram of off-diagonal similarities per RSM")
