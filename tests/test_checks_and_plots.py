"""Student self-checks accept labkit's references (each exercise's mistakes: tests/test_exercises.py); plots and
the demo run."""
import matplotlib.pyplot as plt
import torch

from labkit import losses, models, plots, rsm
from labkit.checks import lab1_autoencoders as lab1_checks
from labkit.checks import lab4_representations as lab4_checks


def test_checks_accept_the_references(capsys):
    lab1_checks.check_autoencoder(models.MLPAutoencoder)
    lab1_checks.check_reparameterize(models.reparameterize, thorough=True)
    lab1_checks.check_vae_loss(losses.vae_loss, thorough=True)
    lab1_checks.check_interpolate(lambda a, b, n: torch.lerp(a, b, torch.linspace(0, 1, n).unsqueeze(1)))
    lab1_checks.check_cluster_latents(lambda z, k: __import__("sklearn.cluster").cluster.KMeans(k, n_init=5, random_state=0).fit_predict(z.numpy()))
    lab4_checks.check_rsm(rsm.compute_rsm, thorough=True)
    lab4_checks.check_contrastive_loss(losses.contrastive_loss, thorough=True)
    assert capsys.readouterr().out.count("\n") == 7


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
