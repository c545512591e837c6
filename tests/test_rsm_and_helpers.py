"""RSMs, the EMA update, the BYOL tau schedule, and the classifier helpers."""
import math

import pytest
import torch
import torch.nn as nn

from labkit import models, rsm, training


def test_compute_rsm_matches_pairwise_loop():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(13, 5, generator=g)
    feats[3] *= 100  # scale must not matter
    out = rsm.compute_rsm(feats, block_size=4)  # several blocks, a ragged last one
    for i in range(13):
        for j in range(13):
            cos = torch.dot(feats[i], feats[j]) / (feats[i].norm() * feats[j].norm())
            assert out[i, j].item() == pytest.approx(cos.item(), abs=1e-5)
    assert out.shape == (13, 13) and torch.allclose(out, out.T)
    with pytest.raises(ValueError, match="Flatten"):
        rsm.compute_rsm(torch.randn(2, 3, 4))


def test_sort_by_latent_and_offdiagonal():
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]])
    sorted_rsm, values = rsm.sort_by_latent(rsm.compute_rsm(feats), torch.tensor([2, 1, 2]))
    assert values.tolist() == [1, 2, 2]
    assert sorted_rsm[1, 2].item() == pytest.approx(rsm.compute_rsm(feats)[0, 2].item())
    assert rsm.offdiagonal(torch.arange(9.0).view(3, 3)).tolist() == [1.0, 2.0, 5.0]


def test_ema_update_is_exact():
    torch.manual_seed(0)
    online, target = nn.Linear(3, 2), nn.Linear(3, 2)
    before = [p.clone() for p in target.parameters()]
    training.ema_update(target, online, tau=0.9)
    for t, b, o in zip(target.parameters(), before, online.parameters()):
        assert torch.allclose(t, 0.9 * b + 0.1 * o, atol=1e-7)
    training.ema_update(target, online, tau=0.0)
    assert all(torch.equal(t, o) for t, o in zip(target.parameters(), online.parameters()))


def test_cosine_tau_schedule():
    assert training.cosine_tau(0, 100) == pytest.approx(0.996)
    assert training.cosine_tau(50, 100) == pytest.approx(0.998)
    assert training.cosine_tau(100, 100) == pytest.approx(1.0)
    assert training.cosine_tau(25, 100, base=0.9) == pytest.approx(1 - 0.1 * (math.cos(math.pi / 4) + 1) / 2)


def test_dsprites_encoder_shapes_and_size():
    enc = models.DSpritesEncoder()
    assert enc(torch.rand(4, 1, 64, 64)).shape == (4, 84)
    assert 340_000 < sum(p.numel() for p in enc.parameters()) < 350_000
    vae = models.VAE(models.DSpritesEncoder(vae=True), models.DSpritesDecoder())
    recon, mu, logvar = vae(torch.rand(4, 1, 64, 64))
    assert recon.shape == (4, 1, 64, 64) and mu.shape == logvar.shape == (4, 84)
    assert vae.encoder.get_features(torch.rand(2, 1, 64, 64)).shape == (2, 84)


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3)])
def test_conv_autoencoders_round_trip_shapes(size, channels):
    x = torch.rand(2, channels, size, size)
    recon, z = models.ConvAutoencoder(channels, size, latent_dim=2)(x)
    assert recon.shape == x.shape and z.shape == (2, 2)
    recon, mu, logvar = models.ConvAutoencoder(channels, size, latent_dim=3, vae=True)(x)
    assert recon.shape == x.shape and mu.shape == logvar.shape == (2, 3)


def test_mlp_autoencoder_and_vae():
    recon, z = models.MLPAutoencoder()(torch.rand(5, 1, 28, 28))
    assert recon.shape == (5, 784) and z.shape == (5, 2) and 0 <= recon.min() and recon.max() <= 1
    recon, mu, logvar = models.MLPVAE()(torch.rand(5, 784))
    assert recon.shape == (5, 784) and mu.shape == (5, 2)


def test_reparameterize_statistics_and_gradients():
    mu = torch.full((20000, 1), 2.0, requires_grad=True)
    logvar = torch.full((20000, 1), math.log(0.25), requires_grad=True)
    z = models.reparameterize(mu, logvar)
    assert z.mean().item() == pytest.approx(2.0, abs=0.02)
    assert z.std().item() == pytest.approx(0.5, abs=0.02)
    z.sum().backward()
    assert mu.grad is not None and logvar.grad is not None


def test_resnet18_encoder_features():
    enc = models.ResNet18Encoder()
    assert enc(torch.rand(2, 3, 32, 32)).shape == (2, 512)
