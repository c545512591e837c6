"""Student self-checks accept the references and reject the classic mistakes; plots and the demo run."""
import matplotlib.pyplot as plt
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from labkit import checks, losses, models, plots, rsm
from tests import lab4_solutions as lab4


def test_checks_accept_the_references(capsys):
    checks.check_autoencoder(models.MLPAutoencoder)
    checks.check_reparameterize(models.reparameterize, thorough=True)
    checks.check_vae_loss(losses.vae_loss, thorough=True)
    checks.check_interpolate(lambda a, b, n: torch.lerp(a, b, torch.linspace(0, 1, n).unsqueeze(1)))
    checks.check_cluster_latents(lambda z, k: __import__("sklearn.cluster").cluster.KMeans(k, n_init=5, random_state=0).fit_predict(z.numpy()))
    checks.check_rsm(rsm.compute_rsm, thorough=True)
    checks.check_contrastive_loss(losses.contrastive_loss, thorough=True)
    assert capsys.readouterr().out.count("\n") == 7


@pytest.mark.parametrize("check,wrong,hint", [
    (checks.check_reparameterize, lambda mu, logvar: mu + logvar.exp() * torch.randn_like(mu), "standard deviation"),
    (checks.check_reparameterize, lambda mu, logvar: mu + torch.exp(0.5 * logvar.detach()) * torch.randn_like(mu), "gradients"),
    (checks.check_vae_loss, lambda r, x, mu, lv: F.binary_cross_entropy(r, x) - 0.5 * torch.sum(1 + lv - mu**2 - lv.exp()), "BCE alone"),
    (checks.check_vae_loss, lambda r, x, mu, lv: F.binary_cross_entropy(r, x, reduction="sum") + 0.5 * torch.sum(1 + lv - mu**2 - lv.exp()), "KL ="),
    (checks.check_interpolate, lambda a, b, n: torch.stack([a + (b - a) * i / n for i in range(n)]), "both ends"),
    (checks.check_rsm, lambda f: torch.corrcoef(f), "no mean subtraction"),
    (checks.check_contrastive_loss, lambda z1, z2, temperature: losses.contrastive_loss(z1, z2.flip(0), temperature), "pair view i"),
])
def test_checks_reject_classic_mistakes(check, wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        check(wrong)


def test_autoencoder_check_names_the_missing_sigmoid():
    class NoSigmoid(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = models.MLPAutoencoder()
            self.inner.decoder = self.inner.decoder[0]  # drop the final Sigmoid

        def forward(self, x):
            return self.inner(x)

    with pytest.raises(AssertionError, match="sigmoid"):
        checks.check_autoencoder(NoSigmoid)


@pytest.mark.parametrize("check, right, wrong, hint", [
    (checks.check_supervised_encoder, lab4.train_supervised_encoder, lab4.untrained_encoder, "no better than"),
    (checks.check_model_rsms, lab4.plot_model_rsms, lab4.plot_model_rsms_unsorted, "sort_by_latent"),
    (checks.check_probe, lab4.train_and_plot_probe, lab4.train_and_plot_probe_no_curve, "one line"),
    (checks.check_rsm_histogram, lab4.rsm_similarity_histogram, lab4.rsm_similarity_histogram_diag, "diagonal"),
])
def test_lab4_checks_accept_answers_and_name_mistakes(check, right, wrong, hint, capsys):
    check(right)
    assert capsys.readouterr().out.strip()
    with pytest.raises(AssertionError, match=hint):
        check(wrong)
    plt.close("all")


def test_plots_draw(tmp_path):
    g = torch.Generator().manual_seed(0)
    fig = plots.show_images(torch.randint(0, 255, (10, 3, 8, 8), dtype=torch.uint8, generator=g), titles=list(range(10)))
    feats = torch.randn(30, 4, generator=g)
    sorted_rsm, values = rsm.sort_by_latent(rsm.compute_rsm(feats), torch.arange(30) % 3)
    ax = plots.plot_rsm(sorted_rsm, values, "shape", title="t")
    assert len(ax.get_xticks()) == 2  # two block edges between three shapes
    plots.plot_rsm_histogram({"a": sorted_rsm, "b": rsm.compute_rsm(feats + 3)})
    plots.plot_losses({"x": [3, 2, 1]}, logy=True)
    plots.plot_latent_scatter(feats[:, :2], torch.arange(30) % 3, ["a", "b", "c"])
    plots.plot_accuracies({"enc": [50, 60]}, [0.5, 1.0], chance=33.3)
    fig.savefig(tmp_path / "grid.png")
    plt.close("all")


def test_demo_runs_end_to_end(tmp_path, capsys):
    from labkit import demo

    accuracies = demo.main(["--num-images", "600", "--epochs", "1", "--out", str(tmp_path)])
    assert set(accuracies) == {"raw pixels", "random", "supervised", "VAE", "SimCLR"}
    assert all(0 <= a <= 100 for a in accuracies.values())
    assert (tmp_path / "labkit_demo.png").stat().st_size > 10_000
    assert "shape classification" in capsys.readouterr().out
