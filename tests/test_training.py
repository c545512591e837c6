"""Training on a tiny generated dSprites set: losses fall, classifiers beat chance, frozen stays frozen."""
import copy

import numpy as np
import pytest
import torch

from labkit import augment, losses, models, training
from labkit.datasets import dsprites


@pytest.fixture(scope="module")
def tiny():
    data = dsprites.DSprites.generate(3000, seed=0)
    train, test = dsprites.train_test_split(data, 0.8, seed=0)
    return data, train, test


def _train_images(data, sampler, limit=1200):
    return data.images[torch.as_tensor(sampler.indices)][:limit]


def test_supervised_encoder_beats_chance(tiny):
    data, train, test = tiny
    torch.manual_seed(0)
    encoder = models.DSpritesEncoder()
    _, loss, train_acc, test_acc = training.train_classifier(encoder, data, train, test, num_epochs=8, batch_size=100,
                                                             freeze_features=False, seed=0, device="cpu")
    assert loss[-10:].mean() < loss[:10].mean()
    assert test_acc > 55, test_acc  # chance is 33%; about 67% measured
    assert not encoder.training


def test_frozen_encoder_is_untouched(tiny):
    data, train, test = tiny
    torch.manual_seed(0)
    encoder = models.DSpritesEncoder().train()
    before = copy.deepcopy(encoder.state_dict())
    classifier, loss, train_acc, test_acc = training.train_classifier(encoder, data, train, test, num_epochs=3,
                                                                      batch_size=200, seed=0, device="cpu")
    after = encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BatchNorm statistics
    assert classifier.in_features == 84 and len(loss) == 3 * (2400 // 200)
    assert 0 <= test_acc <= 100


def test_frozen_encoder_keeps_its_mode(tiny):
    """An encoder given in eval mode (a loaded pre-trained one) is still in eval mode afterwards."""
    data, train, test = tiny
    encoder = models.DSpritesEncoder().eval()
    training.train_classifier(encoder, data, train, test, num_epochs=1, batch_size=200, seed=0, device="cpu")
    assert not encoder.training


def test_a_seeded_probe_repeats_exactly(tiny):
    """seed= fixes the classifier's initial weights as well as the batch order, whatever ran before."""
    data, train, test = tiny
    encoder = models.DSpritesEncoder().eval()
    runs = []
    for _ in range(2):
        torch.rand(7)  # moves the global RNG between the runs
        classifier, loss, _, test_acc = training.train_classifier(encoder, data, train, test, num_epochs=1,
                                                                  batch_size=400, seed=3, device="cpu")
        runs.append((classifier.weight.detach().clone(), loss, test_acc))
    assert torch.equal(runs[0][0], runs[1][0]) and np.array_equal(runs[0][1], runs[1][1])
    assert runs[0][2] == runs[1][2]


def test_raw_pixels_and_label_fraction(tiny):
    data, train, test = tiny
    _, loss, _, test_acc = training.train_classifier(None, data, train, test, num_epochs=2, batch_size=100,
                                                     fraction_of_labels=0.25, subset_seed=1, seed=0, device="cpu")
    assert len(loss) == 2 * (600 // 100)  # a quarter of the 2400 training images
    with pytest.raises(ValueError, match="fraction_of_labels"):
        training.train_classifier(None, data, train, test, fraction_of_labels=0.0)
    results = training.train_by_fraction({"pixels": None}, data, train, test, fractions=(0.5, 1.0), num_epochs=1,
                                         batch_size=400, device="cpu")
    assert list(results) == ["pixels"] and len(results["pixels"]) == 2
    assert training.epochs_for_fraction(10, 0.05) == 45 and training.epochs_for_fraction(10, 1.0) == 10
    with pytest.raises(ValueError, match="fraction_of_labels"):
        training.train_by_fraction({"pixels": None}, data, train, test, fractions=(0.0, 1.0))


def test_simclr_loss_falls(tiny):
    data, train, _ = tiny
    torch.manual_seed(0)
    encoder, history = training.train_simclr(models.DSpritesEncoder(), _train_images(data, train),
                                             augment.dsprites_affine(), num_epochs=4, batch_size=200, seed=0,
                                             device="cpu")
    per_epoch = history.reshape(4, -1).mean(axis=1)
    assert np.isfinite(history).all() and per_epoch[-1] < per_epoch[0]


def test_simclr_with_projector_and_few_negatives(tiny):
    data, train, _ = tiny
    torch.manual_seed(0)
    encoder, history = training.train_simclr(models.DSpritesEncoder(), _train_images(data, train)[:400],
                                             augment.dsprites_affine(), projector=models.mlp(84, 64, 32),
                                             neg_pairs=2, num_epochs=1, batch_size=200, seed=0, device="cpu")
    assert history.shape == (2,) and np.isfinite(history).all()


def test_simclr_takes_a_students_loss_and_ends_with_precise_batchnorm(tiny):
    """loss= replaces NT-Xent (the same function given twice gives the same run); the BatchNorm statistics
    at the end are those of the un-augmented training images under the final weights."""
    data, train, _ = tiny
    images = _train_images(data, train)[:400]
    runs = {}
    for name, loss in (("default", None), ("given", lambda z1, z2: losses.contrastive_loss(z1, z2, 0.5))):
        torch.manual_seed(0)
        runs[name] = training.train_simclr(models.DSpritesEncoder(), images, augment.dsprites_affine(),
                                           num_epochs=1, batch_size=200, seed=0, loss=loss, device="cpu")
    np.testing.assert_allclose(runs["default"][1], runs["given"][1], rtol=1e-5)
    encoder = runs["default"][0]
    recalibrated = training.calibrate_batchnorm(copy.deepcopy(encoder), images, device="cpu")
    for a, b in zip(encoder.state_dict().values(), recalibrated.state_dict().values()):
        torch.testing.assert_close(a, b)
    torch.manual_seed(0)
    stale = training.train_simclr(models.DSpritesEncoder(), images, augment.dsprites_affine(), num_epochs=1,
                                  batch_size=200, seed=0, precise_bn=False, device="cpu")[0]
    assert not torch.allclose(stale.convs[3].running_var, encoder.convs[3].running_var)
    with pytest.raises(ValueError, match="inside it"):
        training.train_simclr(models.DSpritesEncoder(), images, augment.dsprites_affine(), num_epochs=1,
                              loss=lambda z1, z2: z1.sum(), temperature=0.1, device="cpu")


def test_vae_loss_falls(tiny):
    data, train, _ = tiny
    torch.manual_seed(0)
    vae = models.VAE(models.DSpritesEncoder(vae=True), models.DSpritesDecoder())
    _, history = training.train_vae(vae, _train_images(data, train), num_epochs=3, batch_size=200, logits=True,
                                    seed=0, device="cpu")
    per_epoch = history.reshape(3, -1).mean(axis=1)
    assert per_epoch[-1] < per_epoch[0]
    assert per_epoch[0] < 64 * 64 * np.log(2) * 2  # per-image nats, a sane magnitude


def test_autoencoder_loss_falls():
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(512, 1, 28, 28, generator=g) * 255).to(torch.uint8)
    torch.manual_seed(0)
    _, history = training.train_autoencoder(models.MLPAutoencoder(), images, num_epochs=3, batch_size=128,
                                            seed=0, device="cpu")
    assert history[-4:].mean() < history[:4].mean()


def test_byol_moves_the_target_slowly(tiny):
    data, train, _ = tiny
    torch.manual_seed(0)
    encoder = models.DSpritesEncoder()
    start = copy.deepcopy(encoder)
    projector, predictor = models.mlp(84, 64, 32), models.mlp(32, 64, 32)
    _, history, spread = training.train_byol(encoder, _train_images(data, train)[:400], augment.dsprites_affine(),
                                             projector=projector, predictor=predictor, num_epochs=2, batch_size=100,
                                             seed=0, device="cpu")
    assert history.shape == spread.shape == (8,) and np.isfinite(history).all() and np.isfinite(spread).all()
    assert 0 <= history.min() and history.max() <= 8  # two terms of 2 - 2 cos each
    moved = sum((a - b).abs().sum() for a, b in zip(encoder.parameters(), start.parameters()))
    assert moved > 0


def test_training_is_reproducible_with_a_seed(tiny):
    data, train, _ = tiny
    images = _train_images(data, train)[:200]
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        _, history = training.train_simclr(models.DSpritesEncoder(), images, augment.dsprites_affine(),
                                           num_epochs=1, batch_size=100, seed=3, device="cpu")
        runs.append(history)
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-5)


def test_calibrate_batchnorm_sets_data_statistics_only(tiny):
    data, train, _ = tiny
    torch.manual_seed(0)
    encoder = models.DSpritesEncoder()
    weights = {k: v.clone() for k, v in encoder.state_dict().items() if "running" not in k and "num_batches" not in k}
    training.calibrate_batchnorm(encoder, _train_images(data, train, 600), batch_size=200, device="cpu")
    assert not encoder.training
    assert all(torch.equal(v, encoder.state_dict()[k]) for k, v in weights.items())
    bn = encoder.convs[3]
    assert bn.momentum == 0.1 and bn.running_mean.abs().sum() > 0
    features = encoder(data.images[:500].unsqueeze(1).float())
    assert features.std(dim=0).mean() > 0.3  # normalized features, not a collapsed near-zero output


def test_fit_stops_with_a_clear_message_when_the_loss_diverges():
    weight = torch.nn.Parameter(torch.ones(1))
    data = torch.ones(8, 1)
    with pytest.raises(FloatingPointError, match="Lower the learning rate"):
        training.fit([weight], lambda x: (weight * x).sum() / 0.0, [data], num_epochs=1, batch_size=4)


def test_fit_learning_rate_schedules():
    """Adam on a constant gradient moves a weight by the learning rate at each step: a cosine schedule decays
    the steps towards zero, a constant one keeps them; anything else is refused with the choices."""
    def steps(schedule):
        weight = torch.nn.Parameter(torch.zeros(1))
        trace = []
        training.fit([weight], lambda x: (weight * x).sum(), [torch.ones(8, 1)], num_epochs=5, batch_size=2, lr=0.1,
                     lr_schedule=schedule, after_step=lambda i, total: trace.append(weight.item()))
        return -np.diff([0.0] + trace)
    cosine, constant = steps("cosine"), steps("constant")
    assert np.allclose(constant, 0.1, rtol=1e-4)
    assert cosine[0] == pytest.approx(0.1, rel=1e-4) and cosine[-1] < 0.01 and np.all(np.diff(cosine) <= 1e-9)
    with pytest.raises(ValueError, match="'cosine' or 'constant'"):
        steps("linear")
