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
