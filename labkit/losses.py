"""Reference losses: NT-Xent (SimCLR), the VAE's negative ELBO, BYOL's regression loss.

These are the references the graders compare student code against. They are
pure functions: no logging, no state, no plotting.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def contrastive_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5,
                     neg_pairs: int | float | str = "all", generator: torch.Generator | None = None) -> torch.Tensor:
    """NT-Xent, the normalized temperature-scaled cross-entropy of SimCLR (Chen et al. 2020, eq. 1).

    Args:
        z1, z2: (N, D) projections of two views; row i of z1 and row i of z2 come from the same image.
        temperature: T in sim / T.
        neg_pairs: "all" for plain NT-Xent; an int k keeps k random negatives per anchor;
            a float in (0, 1] keeps that fraction of the 2N - 2 negatives (at least 1).
        generator: random source for choosing the kept negatives.

    Stack the views into 2N rows and L2-normalize them. For anchor i the positive is
    its other view (i <-> i + N); with s = cosine similarity,

        l_i = -log( exp(s(i, pos(i)) / T) / sum_{k != i} exp(s(i, k) / T) ),

    the denominator running over every row but the anchor itself (the positive
    included). Returns the mean of l_i over the 2N anchors (a scalar).

    Computed as a cross-entropy over the (2N, 2N) logit matrix, in fp32 whatever the
    input dtype, so it never builds a (2N, 2N, D) tensor and never overflows exp.
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"z1 and z2 must both be (N, D) with the same shape; got {tuple(z1.shape)} and {tuple(z2.shape)}.")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)  # (2N, D)
    logits = z @ z.T / temperature  # (2N, 2N)
    idx = torch.arange(2 * n, device=z.device)
    positive = (idx + n) % (2 * n)
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    if neg_pairs != "all":
        num_neg = _num_negatives(neg_pairs, 2 * n - 2)
        # Rank the negatives of each row in a random order and drop all but num_neg of them.
        noise = torch.rand(2 * n, 2 * n, device=z.device, generator=generator)
        noise[self_mask] = 2.0
        noise[idx, positive] = 2.0
        rank = noise.argsort(dim=1).argsort(dim=1)  # rank of each column within its row
        self_mask = self_mask | ((rank >= num_neg) & (noise < 2.0))
    logits = logits.masked_fill(self_mask, float("-inf"))
    return F.cross_entropy(logits, positive)


def _num_negatives(neg_pairs: int | float, available: int) -> int:
    if isinstance(neg_pairs, bool) or not isinstance(neg_pairs, (int, float)):
        raise ValueError(f"neg_pairs must be 'all', an int or a fraction; got {neg_pairs!r}.")
    if isinstance(neg_pairs, float):
        if not 0.0 < neg_pairs <= 1.0:
            raise ValueError(f"A fractional neg_pairs must be in (0, 1]; got {neg_pairs}.")
        return max(1, round(neg_pairs * available))
    if not 1 <= neg_pairs:
        raise ValueError(f"neg_pairs must be at least 1; got {neg_pairs}.")
    return min(neg_pairs, available)


def vae_loss(x_recon: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             beta: float = 1.0, *, logits: bool = False) -> torch.Tensor:
    """Negative ELBO of a VAE with a Bernoulli decoder and a N(0, I) prior (Kingma & Welling 2014).

    Args:
        x_recon: decoder output, same shape as x: probabilities in [0, 1], or logits if ``logits=True``.
        x: targets in [0, 1], e.g. (B, 1, 28, 28) or (B, 784).
        mu, logvar: (B, Z) mean and log-variance of q(z | x).
        beta: weight of the KL term (beta-VAE; 1 is the plain ELBO).

    Returns BCE(x_recon, x) summed over pixels and batch
    + beta * KL(q(z|x) || N(0, I)) summed over latent dims and batch, with
    KL = -1/2 * sum(1 + logvar - mu^2 - exp(logvar)). Divide by B for nats per image.
    """
    if x_recon.shape != x.shape:
        raise ValueError(f"x_recon {tuple(x_recon.shape)} and x {tuple(x.shape)} must have the same shape.")
    with torch.autocast(x.device.type, enabled=False):  # BCE on probabilities is not autocast-safe
        if logits:
            bce = F.binary_cross_entropy_with_logits(x_recon.float(), x.float(), reduction="sum")
        else:
            bce = F.binary_cross_entropy(x_recon.float(), x.float(), reduction="sum")
    kl = -0.5 * torch.sum(1 + logvar.float() - mu.float().pow(2) - logvar.float().exp())
    return bce + beta * kl


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's regression loss (Grill et al. 2020, eq. 2): mean over the batch of 2 - 2 cos(p, z).

    Args:
        p: (B, D) online predictions.
        z: (B, D) target projections; detached here (stop-gradient), so no gradient reaches z.

    The symmetric objective is ``byol_loss(p1, z2) + byol_loss(p2, z1)``.
    """
    p = F.normalize(p.float(), dim=1)
    z = F.normalize(z.detach().float(), dim=1)
    return (2 - 2 * (p * z).sum(dim=1)).mean()
