"""Self-checks students run on their own answers in the labs.

Each ``check_*`` calls the student's function on a small example, compares it with
labkit's reference or a known property, prints one line when it looks right and
raises ``AssertionError`` with a hint when it does not. They are for learning, not
grading: the autograder grades in a separate, clean process with fresh inputs.
"""
from __future__ import annotations

import math

import torch

from . import losses, rsm


def _as_tensor(value, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise AssertionError(f"{what} should return a torch.Tensor, got {type(value).__name__}.")
    return value.detach().float()


def _close(got: torch.Tensor, expected: torch.Tensor, what: str, hint: str, rtol=1e-4, atol=1e-5) -> None:
    if got.shape != expected.shape:
        raise AssertionError(f"{what}: shape {tuple(got.shape)}, expected {tuple(expected.shape)}.")
    if not torch.allclose(got, expected, rtol=rtol, atol=atol):
        raise AssertionError(f"{what}: got {got.flatten()[:4].tolist()}..., expected "
                             f"{expected.flatten()[:4].tolist()}... Hint: {hint}")


def _generator(thorough: bool) -> torch.Generator:
    return torch.Generator().manual_seed(int(torch.randint(2**31, (1,))) if thorough else 0)


# ---------------------------------------------------------------------------- lab 1

def check_autoencoder(build_autoencoder) -> None:
    """The MLP autoencoder: 784-128-32-2 and back, sigmoid output, returns (reconstruction, z)."""
    model = build_autoencoder()
    out = model(torch.rand(5, 1, 28, 28))
    if not (isinstance(out, tuple) and len(out) == 2):
        raise AssertionError("forward should return a pair (reconstruction, z).")
    recon, z = (_as_tensor(t, "forward") for t in out)
    if recon.shape != (5, 784) or z.shape != (5, 2):
        raise AssertionError(f"for a (5, 1, 28, 28) batch expected shapes (5, 784) and (5, 2); "
                             f"got {tuple(recon.shape)} and {tuple(z.shape)}. Flatten the input first.")
    if recon.min() < 0 or recon.max() > 1:
        raise AssertionError("reconstructions should lie in [0, 1]: end the decoder with a sigmoid.")
    sizes = [tuple(m.weight.shape) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    expected = [(128, 784), (32, 128), (2, 32), (32, 2), (128, 32), (784, 128)]
    if sizes != expected:
        raise AssertionError(f"Linear layer weight shapes {sizes}; expected {expected} (784-128-32-2-32-128-784).")
    print("autoencoder: shapes, layer sizes and output range look right")


def check_reparameterize(reparameterize, thorough: bool = False) -> None:
    """z = mu + exp(logvar / 2) * eps: right mean, right spread, gradients to mu and logvar."""
    g = _generator(thorough)
    mu = torch.randn(1, 3, generator=g).repeat(20000, 1).requires_grad_()
    logvar = (torch.rand(1, 3, generator=g) * 2 - 1.5).repeat(20000, 1).requires_grad_()
    z = reparameterize(mu, logvar)
    z_ = _as_tensor(z, "reparameterize")
    if z_.shape != mu.shape:
        raise AssertionError(f"z should have the shape of mu {tuple(mu.shape)}; got {tuple(z_.shape)}.")
    _close(z_.mean(0), mu[0].detach(), "mean of z", "z should be centred on mu.", rtol=0, atol=0.05)
    std = torch.exp(0.5 * logvar[0].detach())
    if not torch.allclose(z_.std(0), std, rtol=0.05):
        raise AssertionError(f"spread of z {z_.std(0).tolist()}, expected exp(logvar / 2) = {std.tolist()}. "
                             "Hint: logvar is the log of the variance; the standard deviation is exp(0.5 * logvar).")
    z.sum().backward()
    if mu.grad is None or logvar.grad is None or logvar.grad.abs().sum() == 0:
        raise AssertionError("gradients must reach mu and logvar: sample eps separately (torch.randn_like) "
                             "and build z from mu and logvar.")
    print("reparameterize: mean, spread and gradients look right")


def _vae_inputs(g: torch.Generator, batch: int = 3, pixels: int = 12, latent: int = 2):
    x = torch.rand(batch, pixels, generator=g)
    recon = torch.rand(batch, pixels, generator=g) * 0.9 + 0.05
    return recon, x, torch.randn(batch, latent, generator=g), torch.randn(batch, latent, generator=g) * 0.5


def check_vae_loss(vae_loss, thorough: bool = False) -> None:
    """vae_loss(x_recon, x, mu, logvar): BCE summed over pixels and batch + KL summed over dims and batch."""
    g = _generator(thorough)
    recon, x, mu, logvar = _vae_inputs(g)
    got = _as_tensor(vae_loss(recon, x, mu, logvar), "vae_loss")
    if got.numel() != 1:
        raise AssertionError(f"vae_loss should return one number (a scalar tensor); got shape {tuple(got.shape)}.")
    zeros = torch.zeros_like(mu)
    bce_only = losses.vae_loss(recon, x, zeros, zeros)
    _close(_as_tensor(vae_loss(recon, x, zeros, zeros), "vae_loss").reshape(()), bce_only, "loss at mu=0, logvar=0",
           "with mu = 0 and logvar = 0 the KL term is 0, so this is the BCE alone: sum it over pixels and batch "
           "(reduction='sum').")
    _close(got.reshape(()), losses.vae_loss(recon, x, mu, logvar), "vae_loss",
           "KL = -0.5 * sum(1 + logvar - mu^2 - exp(logvar)), summed over latent dimensions and batch.")
    print("vae_loss: matches the reference (BCE and KL, summed)")


def check_interpolate(interpolate) -> None:
    """interpolate(z_start, z_end, num_steps): num_steps evenly spaced points, both ends included."""
    z0, z1 = torch.tensor([0.0, 2.0]), torch.tensor([4.0, -2.0])
    path = _as_tensor(interpolate(z0, z1, 5), "interpolate")
    expected = torch.tensor([[0.0, 2.0], [1.0, 1.0], [2.0, 0.0], [3.0, -1.0], [4.0, -2.0]])
    _close(path, expected, "interpolate(z0, z1, 5)", "include both ends: t = linspace(0, 1, num_steps), "
           "z = (1 - t) * z_start + t * z_end.")
    print("interpolate: evenly spaced, both ends included")


def check_cluster_latents(cluster_latents) -> None:
    """cluster_latents(z, num_clusters): one integer label per row, grouping well-separated blobs."""
    from sklearn.metrics import adjusted_rand_score

    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    truth = torch.arange(3).repeat_interleave(50)
    z = centres[truth] + torch.randn(150, 2, generator=g)
    labels = torch.as_tensor(cluster_latents(z, 3))
    if labels.shape != (150,):
        raise AssertionError(f"expected one label per row, shape (150,); got {tuple(labels.shape)}.")
    ari = adjusted_rand_score(truth.numpy(), labels.numpy())
    if ari < 0.9:
        raise AssertionError(f"three well-separated blobs should be found (adjusted Rand index {ari:.2f} < 0.9).")
    print(f"cluster_latents: finds three separated blobs (adjusted Rand index {ari:.2f})")


# ---------------------------------------------------------------------------- lab 4

def check_rsm(rsm_fn, thorough: bool = False) -> None:
    """An RSM: (N, N) cosine similarities between rows, no centering."""
    g = _generator(thorough)
    feats = torch.randn(7, 5, generator=g)
    _close(_as_tensor(rsm_fn(feats), "the RSM function"), rsm.compute_rsm(feats), "RSM",
           "normalize each row to unit length, then take all pairwise dot products (no mean subtraction).")
    print("RSM: matches cosine similarity between all pairs of rows")


def check_contrastive_loss(loss_fn, thorough: bool = False) -> None:
    """NT-Xent: the positive of row i is row i of the other view; only self-similarity leaves the denominator."""
    g = _generator(thorough)
    z1, z2 = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    _close(_as_tensor(loss_fn(z1, z2, temperature=0.5), "the loss").reshape(()),
           losses.contrastive_loss(z1, z2, 0.5), "NT-Xent",
           "L2-normalize the rows, pair view i with view i + N, drop only k = i from the denominator, "
           "average over all 2N anchors.")
    n, t = 3, 0.5
    z = torch.eye(n, 2 * n)
    closed = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2 * n - 2))
    got = float(_as_tensor(loss_fn(z, z.clone(), temperature=t), "the loss"))
    if abs(got - closed) > 1e-4:
        raise AssertionError(f"identical views with orthogonal rows should give {closed:.4f}; got {got:.4f}.")
    print("contrastive loss: matches NT-Xent")


def _small_dsprites(num_images: int, seed: int):
    from .datasets import dsprites

    data = dsprites.DSprites.generate(num_images, seed=seed)
    return data, *dsprites.train_test_split(data, seed=seed)


def _calibrated_encoder(images: torch.Tensor, seed: int):
    from . import models, training

    torch.manual_seed(seed)
    return training.calibrate_batchnorm(models.DSpritesEncoder(), images.unsqueeze(1), device="cpu")


def _state(module: torch.nn.Module) -> list[torch.Tensor]:
    return [t.detach().cpu().clone() for t in module.state_dict().values()]  # cpu: the function may move it


def _axes(value, what: str):
    from matplotlib.axes import Axes

    if not isinstance(value, Axes):
        raise AssertionError(f"{what} should be a matplotlib Axes, got {type(value).__name__}.")
    return value


def _fit_on_train(encoder, data, train) -> float:
    """Training-set accuracy (%) of a logistic regression on the encoder's features: how much shape it encodes."""
    from .evaluation import linear_probe

    idx = torch.as_tensor(list(train.indices))
    with torch.no_grad():
        feats = encoder.eval().get_features(data.images[idx].unsqueeze(1).float())
    labels = data.latents_classes[idx, 0]
    return linear_probe(feats, labels, feats, labels)


def check_supervised_encoder(train_supervised_encoder, thorough: bool = False) -> None:
    """A fresh encoder trained end to end: (B, 1, 64, 64) -> (B, 84) features that encode shape."""
    seed = int(_generator(thorough).initial_seed()) % 1000
    data, train, test = _small_dsprites(600, seed)
    out = train_supervised_encoder(data, train, test, num_epochs=4, batch_size=40)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise AssertionError("train_supervised_encoder should return the pair (encoder, test_acc).")
    encoder, test_acc = out
    if not hasattr(encoder, "get_features"):
        raise AssertionError("the encoder should be a labkit DSpritesEncoder (it has get_features).")
    with torch.no_grad():
        feats = encoder.eval().get_features(data.images[:5].unsqueeze(1).float().to(next(encoder.parameters()).device))
    if tuple(feats.shape) != (5, 84):
        raise AssertionError(f"the encoder's features should be (5, 84) for 5 images; got {tuple(feats.shape)}.")
    if not 0.0 <= float(test_acc) <= 100.0:
        raise AssertionError(f"test_acc should be a percentage; got {test_acc}.")
    learned = _fit_on_train(encoder.cpu(), data, train)
    untrained = _fit_on_train(_calibrated_encoder(data.images, seed), data, train)
    if learned < untrained + 10:
        raise AssertionError(f"the returned encoder's features fit shape no better than an untrained encoder's "
                             f"({learned:.0f}% vs {untrained:.0f}% on its training images): train a fresh encoder "
                             "end to end (freeze_features=False) and return that encoder.")
    print(f"supervised encoder: trains end to end (shape fits {learned:.0f}% of its training images from the "
          f"features, an untrained encoder's {untrained:.0f}%)")


def check_model_rsms(plot_model_rsms, thorough: bool = False) -> None:
    """One axis per encoder, each showing the RSM of its features sorted by the latent."""
    import matplotlib.pyplot as plt

    seed = int(_generator(thorough).initial_seed()) % 1000
    data, *_ = _small_dsprites(40, seed)
    images = data.images.unsqueeze(1).float()
    encoders = {"A": _calibrated_encoder(data.images, seed), "B": _calibrated_encoder(data.images, seed + 1)}
    latent = torch.rand(len(images), generator=torch.Generator().manual_seed(seed))  # no ties: one sorted order
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
        _close(torch.as_tensor(shown[0].get_array().data).float(), expected, f"the RSM shown for {name!r}",
               "features with encoder.get_features under torch.no_grad(), the RSM of those, then rows and columns "
               "sorted with rsm.sort_by_latent.")
    plt.close(axes[0].figure)
    print("plot_model_rsms: each axis shows the sorted RSM of its encoder")


def check_probe(train_and_plot_probe, thorough: bool = False) -> None:
    """A linear classifier on frozen features: the encoder is unchanged and the loss curve is drawn."""
    import matplotlib.pyplot as plt

    seed = int(_generator(thorough).initial_seed()) % 1000
    data, train, test = _small_dsprites(600, seed)
    encoder = _calibrated_encoder(data.images, seed)
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


def check_rsm_histogram(rsm_similarity_histogram, thorough: bool = False) -> None:
    """One histogram per RSM of its off-diagonal similarities on [-1, 1]."""
    import matplotlib.pyplot as plt
    import numpy as np

    g = _generator(thorough)
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
