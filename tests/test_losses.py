"""Reference losses against naive formulations written straight from the papers, and against properties."""
import math

import pytest
import torch
import torch.nn.functional as F

from labkit import losses


def naive_nt_xent(z1, z2, temperature):
    """SimCLR's Algorithm 1, one anchor at a time, with explicit exponentials (float64)."""
    z = torch.cat([z1, z2]).double()
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        pos = (i + n2 // 2) % n2
        sim = [torch.dot(z[i], z[k]) / (z[i].norm() * z[k].norm()) for k in range(n2)]
        numerator = torch.exp(sim[pos] / temperature)
        denominator = sum(torch.exp(sim[k] / temperature) for k in range(n2) if k != i)
        total += -torch.log(numerator / denominator)
    return total / n2


@pytest.mark.parametrize("n,d,t", [(4, 3, 0.5), (7, 16, 0.1), (1, 5, 1.0)])
def test_contrastive_loss_matches_naive_loop(n, d, t):
    g = torch.Generator().manual_seed(n * d)
    z1, z2 = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    assert losses.contrastive_loss(z1, z2, t).item() == pytest.approx(naive_nt_xent(z1, z2, t).item(), rel=1e-5)


def test_contrastive_loss_properties():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(9, 12, generator=g), torch.randn(9, 12, generator=g)
    base = losses.contrastive_loss(z1, z2)
    scale = torch.rand(9, 1, generator=g) * 10 + 0.1
    assert losses.contrastive_loss(z1 * scale, z2 * 3).item() == pytest.approx(base.item(), rel=1e-5)  # normalized
    assert losses.contrastive_loss(z2, z1).item() == pytest.approx(base.item(), rel=1e-5)  # views swap
    perm = torch.randperm(9, generator=g)
    assert losses.contrastive_loss(z1[perm], z2[perm]).item() == pytest.approx(base.item(), rel=1e-5)
    # Breaking the pairing (permuting only one view) changes the loss: the positive is i <-> i + N.
    assert losses.contrastive_loss(z1, z2[perm]).item() != pytest.approx(base.item(), rel=1e-3)


@pytest.mark.parametrize("n,t", [(2, 0.5), (5, 0.2), (8, 0.05), (3, 0.2)])
def test_contrastive_loss_closed_form(n, t):
    """Identical positives and orthogonal negatives: -log(e^(1/T) / (e^(1/T) + 2N - 2))."""
    z = torch.eye(n, 2 * n)
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2 * n - 2))
    assert losses.contrastive_loss(z, z.clone(), t).item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_contrastive_loss_small_temperature_and_half_precision():
    g = torch.Generator().manual_seed(1)
    z1 = torch.randn(16, 8, generator=g, requires_grad=True)
    z2 = torch.randn(16, 8, generator=g)
    loss = losses.contrastive_loss(z1.half(), z2.half(), temperature=0.01)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(z1.grad).all() and z1.grad.abs().sum() > 0


def test_contrastive_loss_few_negatives():
    g = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    full = losses.contrastive_loss(z1, z2)
    assert losses.contrastive_loss(z1, z2, neg_pairs=10).item() == pytest.approx(full.item(), rel=1e-6)  # all 10 kept
    assert losses.contrastive_loss(z1, z2, neg_pairs=1.0).item() == pytest.approx(full.item(), rel=1e-6)
    # With one negative per anchor the loss is a mean of two-way softmaxes: check against a loop.
    few = losses.contrastive_loss(z1, z2, neg_pairs=1, generator=torch.Generator().manual_seed(3))
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sims = z @ z.T / 0.5
    per_anchor_min = []  # the loss must lie between the best and worst single-negative choice per anchor
    for i in range(12):
        pos = (i + 6) % 12
        negs = [k for k in range(12) if k not in (i, pos)]
        vals = [-sims[i, pos] + torch.logsumexp(torch.stack([sims[i, pos], sims[i, k]]), 0) for k in negs]
        per_anchor_min.append((min(vals), max(vals)))
    lo = sum(a for a, _ in per_anchor_min) / 12
    hi = sum(b for _, b in per_anchor_min) / 12
    assert lo - 1e-5 <= few.item() <= hi + 1e-5
    assert few.item() < full.item()  # fewer terms in every denominator
    with pytest.raises(ValueError, match="neg_pairs"):
        losses.contrastive_loss(z1, z2, neg_pairs=0)


def test_contrastive_loss_rejects_mismatched_views():
    with pytest.raises(ValueError, match="same shape"):
        losses.contrastive_loss(torch.randn(4, 3), torch.randn(5, 3))


def naive_vae_loss(recon, x, mu, logvar, beta):
    bce = sum(-(xi * math.log(ri) + (1 - xi) * math.log(1 - ri)) for ri, xi in zip(recon.flatten().tolist(), x.flatten().tolist()))
    kl = 0.0
    for m, lv in zip(mu.flatten().tolist(), logvar.flatten().tolist()):
        kl += 0.5 * (m * m + math.exp(lv) - 1 - lv)  # KL(N(m, e^lv) || N(0, 1)) per dimension
    return bce + beta * kl


def test_vae_loss_matches_naive_sum():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 10, generator=g)
    recon = torch.rand(3, 10, generator=g) * 0.98 + 0.01
    mu, logvar = torch.randn(3, 2, generator=g), torch.randn(3, 2, generator=g)
    for beta in (1.0, 4.0):
        assert losses.vae_loss(recon, x, mu, logvar, beta).item() == pytest.approx(naive_vae_loss(recon, x, mu, logvar, beta), rel=1e-4)
    logits = torch.logit(recon)
    assert losses.vae_loss(logits, x, mu, logvar, logits=True).item() == pytest.approx(
        losses.vae_loss(recon, x, mu, logvar).item(), rel=1e-4)


def test_vae_kl_is_zero_at_the_prior_and_positive_elsewhere():
    x = torch.full((2, 4), 0.5)
    recon = torch.full((2, 4), 0.5)
    bce_only = 8 * math.log(2)
    zeros = torch.zeros(2, 3)
    assert losses.vae_loss(recon, x, zeros, zeros).item() == pytest.approx(bce_only, rel=1e-6)
    assert losses.vae_loss(recon, x, zeros + 0.3, zeros - 0.2).item() > bce_only
    assert losses.vae_loss(recon, x, zeros + 0.3, zeros - 0.2, beta=0).item() == pytest.approx(bce_only, rel=1e-6)


def test_byol_loss():
    g = torch.Generator().manual_seed(0)
    p = torch.randn(5, 7, generator=g, requires_grad=True)
    z = torch.randn(5, 7, generator=g, requires_grad=True)
    loss = losses.byol_loss(p, z)
    expected = (2 - 2 * F.cosine_similarity(p, z, dim=1)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert losses.byol_loss(p * 4.0, z).item() == pytest.approx(loss.item(), rel=1e-5)  # scale-invariant in p
    loss.backward()
    assert z.grad is None and p.grad.abs().sum() > 0  # stop-gradient on the target
    assert losses.byol_loss(z, z).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.byol_loss(-z, z).item() == pytest.approx(4.0, abs=1e-5)
