"""Trusted lab-4 answers and classic mistakes, for the judge and self-check tests (imported by tests only)."""
import matplotlib.pyplot as plt
import torch
from labkit import models, plots, rsm, training


def train_supervised_encoder(dataset, train_sampler, test_sampler, num_epochs=10, batch_size=1000):
    encoder = models.DSpritesEncoder()
    *_, test_acc = training.train_classifier(encoder, dataset, train_sampler, test_sampler, num_epochs,
                                             batch_size=batch_size, freeze_features=False)
    return encoder.eval(), test_acc


def untrained_encoder(dataset, train_sampler, test_sampler, num_epochs=10, batch_size=1000):
    """Mistake: the encoder is never trained (the accuracy is made up)."""
    return models.DSpritesEncoder().eval(), 90.0


def plot_model_rsms(encoders, images, latent_values, latent_name="shape"):
    fig, axes = plt.subplots(1, len(encoders), figsize=(4 * len(encoders), 4), squeeze=False)
    for ax, (title, encoder) in zip(axes[0], encoders.items()):
        with torch.no_grad():
            m = rsm.compute_rsm(encoder.get_features(images))
        m, values = rsm.sort_by_latent(m, latent_values)
        plots.plot_rsm(m, values, latent_name, title, ax=ax)
    return list(axes[0])


def plot_model_rsms_unsorted(encoders, images, latent_values, latent_name="shape"):
    fig, axes = plt.subplots(1, len(encoders), squeeze=False)
    for ax, (title, encoder) in zip(axes[0], encoders.items()):
        with torch.no_grad():
            ax.imshow(rsm.compute_rsm(encoder.get_features(images)).numpy())
    return list(axes[0])


def train_and_plot_probe(encoder, dataset, train_sampler, test_sampler, num_epochs=10, title="", ax=None):
    _, loss, _, test_acc = training.train_classifier(encoder, dataset, train_sampler, test_sampler, num_epochs)
    ax = ax or plt.subplots()[1]
    ax.plot(loss)
    ax.set_title(title)
    return test_acc, ax


def train_and_plot_probe_no_curve(encoder, dataset, train_sampler, test_sampler, num_epochs=10, title="", ax=None):
    """Mistake: nothing is drawn."""
    *_, test_acc = training.train_classifier(encoder, dataset, train_sampler, test_sampler, num_epochs)
    return test_acc, ax or plt.subplots()[1]


def train_and_plot_probe_unfrozen(encoder, dataset, train_sampler, test_sampler, num_epochs=10, title="", ax=None):
    _, loss, _, test_acc = training.train_classifier(encoder, dataset, train_sampler, test_sampler, num_epochs,
                                                     freeze_features=False)
    ax = ax or plt.subplots()[1]
    ax.plot(loss)
    return test_acc, ax


def rsm_similarity_histogram(rsms, bins=100, ax=None):
    ax = ax or plt.subplots()[1]
    for name, m in rsms.items():
        ax.hist(rsm.offdiagonal(m).numpy(), bins=bins, range=(-1, 1), density=True, alpha=0.5, label=name)
    ax.legend()
    return ax


def rsm_similarity_histogram_diag(rsms, bins=100, ax=None):
    ax = ax or plt.subplots()[1]
    for name, m in rsms.items():
        ax.hist(m.flatten().numpy(), bins=bins, range=(-1, 1), density=True, alpha=0.5, label=name)
    return ax
