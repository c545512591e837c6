"""Self-checks of lab 2 (SimCLR), one per graded function (graded for real by
``autograder/exercises/lab2_simclr.py``)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import losses
from .common import as_tensor, assert_close, assert_nt_xent, generator, global_bound


def _square_corners(out: torch.Tensor, x: torch.Tensor, size: int = 9, fill: float = 0.5) -> list:
    """Per image, the top-left corner of the one mid-gray square that turning ``out`` back shows, else None."""
    if tuple(out.shape) != (x.shape[0], x.shape[1], x.shape[3], x.shape[2]):
        raise AssertionError(f"the output should be the images turned by 90 degrees, shape "
                             f"{(x.shape[0], x.shape[1], x.shape[3], x.shape[2])}; got {tuple(out.shape)}.")
    back = torch.rot90(out, -1, dims=(-2, -1))
    corners = []
    for image, original in zip(back[:, 0], x[:, 0]):
        changed = (image - original).abs() > 1e-6
        where = changed.nonzero()
        if len(where) != size * size:
            corners.append(None)
            continue
        (r, c), (r2, c2) = where.min(0).values.tolist(), where.max(0).values.tolist()
        ok = r2 - r == c2 - c == size - 1 and torch.allclose(image[r:r + size, c:c + size], torch.tensor(fill))
        corners.append((r, c) if ok else None)
    return corners


def check_cutout_and_rotate(cutout_and_rotate, thorough: bool = False) -> None:
    """Each image loses its own 9x9 square (mid-gray, 0.5), then turns 90 degrees counter-clockwise."""
    g = generator(thorough)
    x = torch.rand(64, 1, 28, 28, generator=g)
    x[(x - 0.5).abs() < 1e-3] += 0.01
    first = as_tensor(cutout_and_rotate(x.clone()), "cutout_and_rotate")
    corners = _square_corners(first, x)
    if any(c is None for c in corners):
        if _square_corners_or_none(first, x, fill=255 / 2):
            raise AssertionError("the square is filled with 255/2: these images are in [0, 1], mid-gray is 0.5.")
        raise AssertionError("turned back with torch.rot90(out, -1, dims=(-2, -1)), each output should be its input "
                             "with one whole 9x9 square set to 0.5 (check the rotation: torch.rot90(x, 1, dims=(-2, -1))).")
    if len(set(corners)) < 16:
        raise AssertionError(f"64 images got only {len(set(corners))} cutout position(s): draw a position per image.")
    second = _square_corners(as_tensor(cutout_and_rotate(x.clone()), "cutout_and_rotate"), x)
    if sum(a != b for a, b in zip(corners, second)) < 32:
        raise AssertionError("two calls put the squares in the same places: draw fresh positions on every call.")
    print(f"cutout_and_rotate: one mid-gray 9x9 square per image ({len(set(corners))} positions among 64 images), "
          "fresh on every call, turned 90 degrees")


def _square_corners_or_none(out, x, fill):
    try:
        return all(c is not None for c in _square_corners(out, x, fill=fill))
    except AssertionError:
        return False


def check_info_nce_logits(info_nce_logits, thorough: bool = False) -> None:
    """(2N, 2N - 1) logits: column 0 the positive sim(i, i + N) / T, then the 2N - 2 negatives."""
    g = generator(thorough)
    n, t = 5, 0.5
    z1, z2 = torch.randn(n, 4, generator=g), torch.randn(n, 4, generator=g)
    logits = as_tensor(info_nce_logits(z1, z2, t), "info_nce_logits")
    if tuple(logits.shape) != (2 * n, 2 * n - 1):
        raise AssertionError(f"expected logits of shape ({2 * n}, {2 * n - 1}) for N = {n}; got {tuple(logits.shape)}.")
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / t
    partner = torch.arange(2 * n).roll(n)
    assert_close(logits[:, 0], sim[torch.arange(2 * n), partner], "column 0 (the positives)",
                 "column 0 of row i is the cosine similarity of z_i with its other view z_(i + N), divided by T.")
    keep = ~(torch.eye(2 * n, dtype=torch.bool) | torch.eye(2 * n, dtype=torch.bool).roll(n, dims=1))
    assert_close(logits[:, 1:].sort(1).values, sim[keep].view(2 * n, -1).sort(1).values, "the negatives (columns 1..)",
                 "leave out k = i (the anchor itself) and k = i + N (its positive); keep every other similarity / T.")
    assert_close(F.cross_entropy(logits, torch.zeros(2 * n, dtype=torch.long)), losses.contrastive_loss(z1, z2, t),
                 "cross-entropy with label 0", "with the positive in column 0 this is NT-Xent.")
    print("info_nce_logits: positive in column 0, 2N - 2 negatives; cross-entropy with label 0 is NT-Xent")


def check_nt_xent_loss(nt_xent_loss, thorough: bool = False) -> None:
    """NT-Xent: view i pairs with view i + N; only the anchor itself leaves the denominator."""
    assert_nt_xent(nt_xent_loss, "nt_xent_loss", thorough)
    print("nt_xent_loss: matches NT-Xent")


class _Recorder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                       torch.nn.Flatten(), torch.nn.Linear(4 * 12 * 12, 16))
        self.seen = []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.net(x)


class IdentityJitter:
    """Stands in for the notebook's ``jitter`` while ``simclr_step`` is checked (here and by the judge): returns its
    batch unchanged, so the views can be compared with the batch exactly, and counts the images it was given
    (two views, two jitters: 2B)."""

    def __init__(self):
        self.images = 0

    def __call__(self, x, generator=None):
        self.images += len(x)
        return x.clone()


def check_simclr_step(simclr_step, thorough: bool = False) -> None:
    """Two independent jitters of each image, one of them cut and turned by cutout_and_rotate, through the encoder,
    NT-Xent between them, gradients into the encoder. The notebook's ``jitter`` is replaced, for the check, by one
    that changes nothing, so the two views can be told apart exactly."""
    g = generator(thorough)
    x = torch.rand(16, 1, 28, 28, generator=g)
    x[(x - 0.5).abs() < 1e-3] += 0.01
    torch.manual_seed(int(g.initial_seed()) % 1000)

    def run():
        encoder, jitter = _Recorder(), IdentityJitter()
        with global_bound(simclr_step, "jitter", jitter):
            loss = simclr_step(encoder, x.clone(), temperature=0.5)
        seen = torch.cat(encoder.seen) if encoder.seen else torch.zeros(0)
        if tuple(seen.shape) != (32, 1, 28, 28):
            raise AssertionError(f"the encoder should see the 16 images and a view of each (32 images in all); it saw "
                                 f"{tuple(seen.shape)}.")
        halves = (seen[:16], seen[16:])
        originals = [torch.equal(h, x) for h in halves]
        if not any(originals):
            raise AssertionError("one view should be jitter(x), not cut or turned (the test digits are upright); the "
                                 "other cutout_and_rotate(jitter(x)).")
        view = halves[1] if originals[0] else halves[0]
        if any(c is None for c in _square_corners(view, x)):
            raise AssertionError("the other view should be cutout_and_rotate(jitter(x)): a 9x9 mid-gray square, then "
                                 "a turn.")
        if jitter.images != 2 * len(x):
            raise AssertionError(f"jitter saw {jitter.images} images, not {2 * len(x)}: give each view its own "
                                 "jitter(x) (two calls), so the two views differ by two independent shifts.")
        return encoder, loss, view

    encoder, loss, view = run()
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not math.isfinite(float(loss.detach())):
        raise AssertionError("simclr_step should return the loss, a finite scalar tensor.")
    if torch.equal(view, run()[2]):
        raise AssertionError("two steps on the same batch saw the same view: draw a new one at every step, never "
                             "once before training.")
    if not loss.requires_grad:
        raise AssertionError("the loss has no gradient: do not encode the views under torch.no_grad() or detach them.")
    loss.backward()
    grads = [p.grad for p in encoder.parameters()]
    if any(g is None or not torch.isfinite(g).all() for g in grads) or not any(g.abs().sum() > 0 for g in grads):
        raise AssertionError("no gradient reaches every encoder parameter.")
    print("simclr_step: two jitters of each image, one cut and turned afresh, NT-Xent between them, gradients reach "
          "the encoder")


# ---------------------------------------------------------------------------- part 2

def _float(value, what: str) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value)
    if hasattr(value, "__float__") and not isinstance(value, bool):
        return float(value)
    raise AssertionError(f"{what} should be a number, got {type(value).__name__}.")


def check_projection_head(projection_head, thorough: bool = False) -> None:
    """An nn.Module (B, in_dim) -> (B, out_dim), nonlinear, not ending in a ReLU, new weights on every call."""
    g = generator(thorough)
    x = torch.randn(64, 12, generator=g)
    head = projection_head(12, 5)
    if not isinstance(head, torch.nn.Module):
        raise AssertionError(f"projection_head should return an nn.Module, got {type(head).__name__}.")
    out = as_tensor(head(x), "the head")
    if tuple(out.shape) != (64, 5):
        raise AssertionError(f"projection_head(12, 5) should map (64, 12) to (64, 5); got {tuple(out.shape)}.")
    default = as_tensor(projection_head(12)(x), "the head")
    if tuple(default.shape) != (64, 64):
        raise AssertionError(f"out_dim should default to 64: got {tuple(default.shape)}.")
    head.eval()
    with torch.no_grad():
        a, b = x[:32], x[32:]
        if (head(a + b) - head(a) - head(b) + head(torch.zeros_like(a))).abs().max() < 1e-4:
            raise AssertionError("the head is a linear map: put a ReLU between two nn.Linear layers.")
        if head(3 * x).min() >= 0:
            raise AssertionError("the head's output is never negative: do not end it with a ReLU.")
        if torch.allclose(head(x), projection_head(12, 5).eval()(x)):
            raise AssertionError("two calls returned the same weights: build a new module on every call.")
    print("projection_head: (B, in_dim) -> (B, out_dim), nonlinear, z can be negative, fresh weights per call")


class _ViewRecorder(torch.nn.Module):
    """Encoder (B, 3, 8, 8) -> (B, 10) or head (B, 10) -> (B, 6); keeps its inputs and outputs."""

    def __init__(self, net):
        super().__init__()
        self.net, self.inputs, self.outputs = net, [], []

    def forward(self, x):
        out = self.net(x)
        self.inputs.append(x.detach().clone())
        self.outputs.append(out.detach().clone())
        return out


def check_contrastive_step(contrastive_step, thorough: bool = False) -> None:
    """Two augmented views, z = head(encoder(view)), NT-Xent of z at the given temperature, gradients everywhere."""
    g = generator(thorough)
    torch.manual_seed(int(g.initial_seed()) % 1000)
    nn = torch.nn
    encoder = _ViewRecorder(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10)))
    head = _ViewRecorder(nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 6)))
    x = torch.rand(12, 3, 8, 8, generator=g)
    augment = lambda v, generator=None: (v + 0.2 * torch.randn(v.shape, generator=g)).clamp(0, 1)  # noqa: E731
    loss = contrastive_step(encoder, head, x.clone(), augment, temperature=0.3)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise AssertionError("contrastive_step should return the loss, a scalar tensor.")
    seen = torch.cat(encoder.inputs) if encoder.inputs else torch.zeros(0)
    if tuple(seen.shape) != (24, 3, 8, 8):
        raise AssertionError(f"the encoder should see two views of the 12 images (24 in all); it saw {tuple(seen.shape)}.")
    if torch.equal(seen[:12], x) or torch.equal(seen[12:], x) or torch.equal(seen[:12], seen[12:]):
        raise AssertionError("the encoder should see two different augmented views: call augment once per view.")
    z = torch.cat(head.outputs) if head.outputs else torch.zeros(0)
    if tuple(z.shape) != (24, 6):
        raise AssertionError("the head should turn both views' features h into z = head(h); the loss goes on z.")
    assert_close(loss.detach(), losses.contrastive_loss(z[:12], z[12:], 0.3), "the loss",
                 "NT-Xent between z of view 1 and z of view 2, at the temperature given.", rtol=1e-3, atol=1e-4)
    loss.backward()
    if any(p.grad is None or not p.grad.abs().sum() > 0 for p in [*encoder.parameters(), *head.parameters()]):
        raise AssertionError("a gradient should reach every parameter of the encoder and of the head.")
    print("contrastive_step: two views, NT-Xent on z = head(encoder(view)), gradients reach encoder and head")


def check_frozen_features(frozen_features, thorough: bool = False) -> None:
    """Eval-mode features of every image (uint8 -> [0, 1]), under no_grad, the encoder left unchanged."""
    g = generator(thorough)
    torch.manual_seed(int(g.initial_seed()) % 1000)
    nn = torch.nn
    encoder = nn.Sequential(nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(5, 6))
    with torch.no_grad():
        encoder[1].running_mean.normal_(generator=g)
        encoder[1].running_var.uniform_(0.5, 1.5, generator=g)
    encoder.train()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    images = torch.randint(0, 256, (70, 3, 8, 8), generator=g, dtype=torch.uint8)
    feats = frozen_features(encoder, images, batch_size=32)
    if not isinstance(feats, torch.Tensor):
        raise AssertionError(f"frozen_features should return a tensor, got {type(feats).__name__}.")
    if any(not torch.equal(before[k], v) for k, v in encoder.state_dict().items()):
        raise AssertionError("the encoder changed (BatchNorm running statistics?): call encoder.eval() first.")
    if feats.requires_grad:
        raise AssertionError("the features carry the autograd graph: compute them under torch.no_grad().")
    encoder.eval()
    with torch.no_grad():
        expected = encoder(images.float() / 255)
    assert_close(feats.float(), expected, "the features",
                 "encoder(to_float(batch)) in eval mode for every batch, the last partial one included.")
    print("frozen_features: eval-mode features of every image, no graph, encoder unchanged")


def _blob_split(g, shuffle_test=False):
    labels = torch.randint(0, 3, (1500,), generator=g)
    x = 2.0 * torch.eye(3, 8)[labels] + torch.randn(1500, 8, generator=g)  # three classes, about 90% separable
    test_labels = labels[1000:][torch.randperm(500, generator=g)] if shuffle_test else labels[1000:]
    return x[:1000], labels[:1000], x[1000:], test_labels


def check_sklearn_probe(sklearn_probe, thorough: bool = False) -> None:
    """Test accuracy in percent of a classifier fitted on the training features; chance when test labels are shuffled."""
    g = generator(thorough)
    acc = _float(sklearn_probe(*_blob_split(g)), "sklearn_probe's result")
    if not 50 <= acc <= 100:
        hint = " (return percent, 0-100, not a fraction)" if acc <= 1 else ""
        raise AssertionError(f"on three Gaussian classes a linear classifier should score well above chance; got "
                             f"{acc:.4g}{hint}.")
    shuffled = _float(sklearn_probe(*_blob_split(generator(thorough), shuffle_test=True)), "sklearn_probe's result")
    if shuffled > 52:
        raise AssertionError(f"with shuffled test labels the accuracy should fall to chance (~33%), got {shuffled:.1f}: "
                             "score on the test features and labels, not the training set.")
    print(f"sklearn_probe: {acc:.1f}% on three Gaussian classes, {shuffled:.1f}% with the test labels shuffled")


def check_kmeans_scores(kmeans_scores, thorough: bool = False) -> None:
    """{'ari', 'nmi'} of k-means clusters against the labels: near 1 for clear clusters, near 0 for noise."""
    g = generator(thorough)
    centres = torch.randn(4, 5, generator=g) * 10
    labels = torch.randint(0, 4, (200,), generator=g)
    scores = kmeans_scores(centres[labels] + torch.randn(200, 5, generator=g), labels, n_clusters=4, seed=0)
    if not isinstance(scores, dict) or not {"ari", "nmi"} <= set(scores):
        raise AssertionError("kmeans_scores should return a dict with the keys 'ari' and 'nmi'.")
    ari, nmi = _float(scores["ari"], "scores['ari']"), _float(scores["nmi"], "scores['nmi']")
    if ari < 0.95 or nmi < 0.95:
        raise AssertionError(f"four well-separated clusters with n_clusters=4 should give ARI and NMI near 1; got "
                             f"{ari:.3g}, {nmi:.3g}.")
    noise = kmeans_scores(torch.randn(300, 5, generator=g), torch.randint(0, 3, (300,), generator=g), n_clusters=3)
    if abs(_float(noise["ari"], "scores['ari']")) > 0.05:
        raise AssertionError("labels unrelated to the features should give ARI near 0: use adjusted_rand_score.")
    print(f"kmeans_scores: ARI {ari:.2f}, NMI {nmi:.2f} on clear clusters; ARI {float(noise['ari']):.3f} on noise")
