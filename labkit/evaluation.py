"""Evaluating representations: features of a frozen encoder, kNN, linear probes, clustering scores."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .images import image_scale, to_float  # noqa: F401  (also reached as evaluation.to_float in the notebooks)
from .runtime import get_device


@torch.no_grad()
def predict(model, images: torch.Tensor, batch_size: int = 1000, device=None) -> torch.Tensor:
    """``model`` applied to ``images``, ``batch_size`` at a time, without gradients; outputs concatenated.

    ``model`` is a module (run in eval mode, its mode restored afterwards) or any function of a
    float batch, e.g. ``lambda x: autoencoder(x)[1]`` for latent codes. Output stays on ``device``.
    """
    device = torch.device(device) if device is not None else get_device()
    is_module = isinstance(model, nn.Module)
    if is_module:
        was_training = model.training
        model.to(device).eval()
    scale = image_scale(images)  # once for all batches
    outs = []
    for batch in images.split(batch_size):
        outs.append(model(to_float(batch.to(device), scale)).float())
    if is_module:
        model.train(was_training)
    return torch.cat(outs)


class FeaturesOf(nn.Module):
    """Wraps an encoder so that ``forward`` returns its ``get_features`` (a VAE's mean), if it has one."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder
        self.train(encoder.training)  # a new module starts in train mode; keep the encoder's (predict restores it)

    def forward(self, x):
        return self.encoder.get_features(x) if hasattr(self.encoder, "get_features") else self.encoder(x)


def extract_features(encoder: nn.Module | None, images: torch.Tensor, batch_size: int = 1000,
                     device=None) -> torch.Tensor:
    """(N, D) features of a frozen encoder (``get_features`` if it has one), in eval mode, no gradients.

    ``encoder=None`` gives the raw pixels, flattened: the "no encoder" baseline.
    BatchNorm statistics are not touched.
    """
    if encoder is None:
        device = torch.device(device) if device is not None else get_device()
        return to_float(images.to(device)).flatten(1)
    return predict(FeaturesOf(encoder), images, batch_size, device)


def knn_accuracy(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                 test_labels: torch.Tensor, k: int = 20) -> float:
    """Test accuracy (percent) of a cosine-similarity k-nearest-neighbour vote (majority of the k)."""
    train = F.normalize(train_features.float(), dim=1)
    test = F.normalize(test_features.float(), dim=1)
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    correct = 0
    for start in range(0, len(test), 1024):
        sims = test[start:start + 1024] @ train.T  # (b, N_train)
        neighbours = train_labels[sims.topk(min(k, len(train)), dim=1).indices]  # (b, k)
        votes = F.one_hot(neighbours, num_classes).sum(dim=1)  # (b, C)
        correct += (votes.argmax(dim=1) == test_labels[start:start + 1024]).sum().item()
    return 100.0 * correct / len(test)


def linear_probe(train_features, train_labels, test_features, test_labels, max_iter: int = 1000) -> float:
    """Test accuracy (percent) of scikit-learn's logistic regression on standardized features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
    probe.fit(_numpy(train_features), _numpy(train_labels))
    return 100.0 * probe.score(_numpy(test_features), _numpy(test_labels))


def cluster_scores(features, labels, n_clusters: int | None = None, seed: int = 0) -> dict[str, float]:
    """k-means on the features, scored against the labels: adjusted Rand index and normalized mutual information.

    Both are 0 for chance-level clusterings and 1 for a perfect match. ``n_clusters``
    defaults to the number of distinct labels. Returns ``{"ari": ..., "nmi": ..., "assignments": array}``.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    features, labels = _numpy(features), _numpy(labels)
    n_clusters = n_clusters or len(np.unique(labels))
    assignments = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(features)
    return {"ari": adjusted_rand_score(labels, assignments), "nmi": normalized_mutual_info_score(labels, assignments),
            "assignments": assignments}


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
