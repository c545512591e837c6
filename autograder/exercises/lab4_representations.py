"""Lab 4 (dSprites representations): the RSM and the SimCLR loss (Neuromatch's function names),
the supervised encoder, the RSM figure, the frozen-feature probe, the probe's number of epochs read
off its loss curve, and the RSM histogram.

References: ``labkit.rsm.compute_rsm`` and ``labkit.losses.contrastive_loss``;
the properties are those of DESIGN.md 5.2 (rescaled rows, swapped views, joint
permutation, odd N, the closed form, a small temperature, finite gradients).
The fill-in exercises are graded by what they return: the child calls them on
generated dSprites and small seeded encoders; the parent rebuilds the same data and
encoders with labkit (same seed, same code) and compares.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from . import kit
from .kit import Example, Exercise
from .kit import grad_of, scalar, tensor, to_numpy

F32 = np.float32


# ---------------------------------------------------------------------------- custom_torch_RSM_fct

def rsm_cases(rng: np.random.Generator):
    # An offset per feature, so that centring (a correlation matrix) gives visibly different values.
    small = (rng.normal(size=(7, 5)) + 2 * rng.normal(size=(1, 5))).astype(F32)
    scales = rng.uniform(0.2, 5.0, size=(7, 1)).astype(F32)
    return {"n7": {"features": small}, "n7_rescaled": {"features": small * scales},
            "n13": {"features": (rng.normal(size=(13, 20)) + rng.normal(size=(1, 20))).astype(F32)}}


def probe_rsm(custom_torch_RSM_fct, args):
    return {"rsm": to_numpy(custom_torch_RSM_fct(tensor(args["features"])), "the RSM", allow_numpy=True)}


def rsm_reference(a):
    from labkit import rsm

    return rsm.compute_rsm(torch.from_numpy(a["features"])).double().numpy()


def _unit_rows(f):
    return f / np.linalg.norm(f, axis=1, keepdims=True)


def _f64(a):
    return a["features"].astype(np.float64)


RSM_MISTAKES = [
    (lambda a: np.corrcoef(_f64(a)), "each row was centred (a correlation matrix): the RSM here is the cosine "
     "similarity of the raw rows, without mean subtraction"),
    (lambda a: _unit_rows(_f64(a) - _f64(a).mean(0)) @ _unit_rows(_f64(a) - _f64(a).mean(0)).T,
     "the features were centred over the inputs: the RSM here is the cosine similarity without centring"),
    (lambda a: _f64(a) @ _f64(a).T, "the rows are not L2-normalized: divide each row by its norm first"),
    (lambda a: 1 - _unit_rows(_f64(a)) @ _unit_rows(_f64(a)).T,
     "this is a dissimilarity (1 - cosine); the RSM is the cosine similarity itself"),
    (lambda a: (_f64(a) / np.linalg.norm(_f64(a), axis=0)) @ (_f64(a) / np.linalg.norm(_f64(a), axis=0)).T,
     "normalized along the wrong dimension: normalize each row (dim=1), not each feature"),
]


def _rsm_depends(ev):
    m, expected = ev.get("n13", "rsm"), rsm_reference(ev.inputs["n13"])
    if m.shape != expected.shape or not np.all(np.isfinite(m)):
        return "the RSM should be an (N, N) matrix of finite similarities"
    got, want = _upper_triangle(m), _upper_triangle(expected)
    if np.std(got) > 1e-6 and abs(np.corrcoef(got, want)[0, 1]) > 0.5:
        return None
    return "the RSM's entries do not follow the similarity of the feature rows"


def _upper_triangle(m):
    return m[np.triu_indices(len(m), k=1)]


def _rsm_symmetric(ev):
    m = ev.get("n13", "rsm")
    if m.shape == (13, 13) and np.allclose(m, m.T, atol=1e-5) and np.allclose(np.diag(m), 1, atol=1e-4):
        return None
    return "an RSM is an (N, N) symmetric matrix with ones on the diagonal (each input is identical to itself)"


RSM = Exercise(
    grade_id="rsm_test",
    function="custom_torch_RSM_fct",
    cases=rsm_cases,
    probe=probe_rsm,
    checks=[
        kit.matches(2, "rsm", rsm_reference, cases=("n7", "n13"), variants=RSM_MISTAKES,
                       hint="the RSM should hold the cosine similarity of every pair of rows", atol=1e-5),
        kit.same(1, "rsm", [("n7", "n7_rescaled")], atol=1e-5,
                    hint="rescaling a row changed the RSM: normalize each row to unit length"),
        kit.holds(1, _rsm_symmetric),
    ],
    forbidden=("labkit.rsm.compute_rsm",),
    gate=kit.holds(0, _rsm_depends),
    mistakes=(
        Example("a correlation matrix", """\
def custom_torch_RSM_fct(features):
    # Mistake: a correlation matrix (each row centred) instead of the cosine similarity.
    return torch.corrcoef(features)
""", share=0.5, message="each row was centred", demo=True),
    ),
    hostile=(
        Example("labkit's reference", """\
from labkit import rsm

def custom_torch_RSM_fct(features):
    return rsm.compute_rsm(features)
""", share=0.0, message="labkit.rsm.compute_rsm"),
    ),
)


# ---------------------------------------------------------------------------- custom_simclr_contrastive_loss

def contrastive_cases(rng: np.random.Generator):
    def views(n, d):
        z1 = rng.normal(size=(n, d))
        return z1.astype(F32), (z1 + 0.8 * rng.normal(size=(n, d))).astype(F32)

    z1, z2 = views(5, 8)
    perm = rng.permutation(5)
    a, b = rng.uniform(0.2, 5.0, (5, 1)), rng.uniform(0.2, 5.0, (5, 1))
    basis = np.linalg.qr(rng.normal(size=(8, 8)))[0][:4].astype(F32)  # 4 orthonormal rows
    case = lambda p, q, t: {"z1": p.astype(F32), "z2": q.astype(F32), "temperature": np.array(t)}
    return {
        "n5": case(z1, z2, 0.5), "n6": case(*views(6, 16), 0.2),
        "n5_rescaled": case(z1 * a, z2 * b, 0.5), "n5_swapped": case(z2, z1, 0.5),
        "n5_permuted": case(z1[perm], z2[perm], 0.5), "n5_again": case(z1, z2, 0.5),
        "closed_form": case(basis, basis, 0.5), "cold": case(*_cold_views(rng), 0.01),
    }


def _cold_views(rng: np.random.Generator):
    """Views for T = 0.01 with a fixed geometry, so that each wrong variant fails (or passes) this case on every seed.

    Random views at T = 0.01 often give a loss of ~0 (every positive wins by far), and then the sum, one-view and
    unnormalized variants pass by chance. These fixed views give 6.1 nats: three of the ten anchors lose to a
    negative, the two views' means differ by a third, and one positive's cosine (0.94) overflows a float32 exp(sim/T).
    A random rotation, row scales and batch order keep the numbers fresh; the loss does not depend on them.
    """
    fixed = np.random.default_rng(8)
    z1 = fixed.normal(size=(5, 8))
    z2 = z1 + fixed.normal(size=(5, 8))
    rotation = np.linalg.qr(rng.normal(size=(8, 8)))[0]
    order = rng.permutation(5)
    scaled = lambda z: _unit_rows(z) @ rotation * rng.uniform(2.0, 5.0, (5, 1))
    return scaled(z1)[order], scaled(z2)[order]


def probe_contrastive(custom_simclr_contrastive_loss, args):
    z1, z2 = tensor(args["z1"], grad=True), tensor(args["z2"], grad=True)
    loss = custom_simclr_contrastive_loss(z1, z2, float(args["temperature"]))
    out = {"loss": scalar(loss, "the loss")}
    if loss.requires_grad:
        loss.backward()
    out["grad1"], out["grad2"] = grad_of(z1), grad_of(z2)
    return out


def contrastive_reference(a):
    from labkit import losses

    z1, z2 = torch.from_numpy(a["z1"]), torch.from_numpy(a["z2"])
    return losses.contrastive_loss(z1, z2, float(a["temperature"])).double().numpy()


def _nt_xent(a, normalize=True, keep_positive=True, mask_self=True, first_view_only=False, multiply=False,
             reduce=np.mean):
    """NT-Xent and its usual wrong versions, in float64 (logsumexp, so it never overflows)."""
    z = np.concatenate([a["z1"], a["z2"]]).astype(np.float64)  # (2N, D)
    if normalize:
        z = _unit_rows(z)
    t = float(a["temperature"])
    logits = z @ z.T * t if multiply else z @ z.T / t  # (2N, 2N)
    n2 = len(z)
    idx = np.arange(n2)
    positive = (idx + n2 // 2) % n2
    allowed = np.ones((n2, n2), bool)
    allowed[idx, idx] = not mask_self
    if not keep_positive:
        allowed[idx, positive] = False
    masked = np.where(allowed, logits, -np.inf)
    top = masked.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(masked - top).sum(axis=1))
    per_anchor = lse - logits[idx, positive]
    return np.float64(reduce(per_anchor[: n2 // 2] if first_view_only else per_anchor))


CONTRASTIVE_MISTAKES = [
    (lambda a: _nt_xent(a, normalize=False), "the rows are not L2-normalized: use cosine similarity"),
    (lambda a: _nt_xent(a, keep_positive=False),
     "the positive pair is left out of the denominator: it sums over every k != i, the positive included"),
    (lambda a: _nt_xent(a, mask_self=False), "the anchor's similarity with itself (k = i) must be left out of "
     "the denominator"),
    (lambda a: _nt_xent(a, first_view_only=True), "only the N anchors of the first view are averaged: "
     "average over all 2N anchors (both views)"),
    (lambda a: _nt_xent(a, multiply=True), "the similarities are multiplied by the temperature: divide (sim / T)"),
    (lambda a: _nt_xent(a, reduce=np.sum), "the loss is summed over anchors: take the mean over the 2N anchors"),
]


def _closed_form(a):
    n, t = len(a["z1"]), float(a["temperature"])
    return np.float64(-math.log(math.exp(1 / t) / (math.exp(1 / t) + 2 * n - 2)))


def nt_xent_checks(variants, views: tuple[str, str]) -> list:
    """The weighted checks of an NT-Xent exercise (this lab's and lab 2's): the reference with ``variants`` (known-wrong
    losses), the invariances, the closed form, a small temperature, gradients; ``views`` name the two arguments."""
    def grads(ev):
        for key in ("grad1", "grad2"):
            g = ev.get("n5", key)
            if not np.all(np.isfinite(g)) or not np.any(g):
                return (f"no finite gradient reaches {views[0]} and {views[1]}: build the loss with torch operations "
                        "(no .item() or numpy)")
        return None

    return [
        kit.matches(2, "loss", contrastive_reference, cases=("n5", "n6"), variants=variants,
                    hint="the loss differs from NT-Xent on fresh inputs"),
        kit.same(1, "loss", [("n5", "n5_rescaled")],
                 hint="rescaling rows changed the loss: L2-normalize the rows (cosine similarity)"),
        kit.same(1, "loss", [("n5", "n5_swapped"), ("n5", "n5_permuted")],
                 hint=f"swapping the views or permuting the batch (both views alike) changed the loss: row i of "
                      f"{views[0]} pairs with row i of {views[1]}, and every anchor of both views counts"),
        kit.matches(1, "loss", _closed_form, cases=("closed_form",),
                    hint="identical views with orthogonal rows should give -log(e^(1/T) / (e^(1/T) + 2N - 2))"),
        kit.matches(0.5, "loss", contrastive_reference, cases=("cold",), rtol=1e-3,
                    hint="at a small temperature (T = 0.01) the loss overflows or loses precision: compute it as a "
                         "cross-entropy / logsumexp of the logits, not exp then log"),
        kit.holds(0.5, grads),
    ]


# An NT-Xent answer must change with its inputs and repeat on the same ones: else it earns nothing.
NT_XENT_GATE = kit.holds(0, kit.all_pass(
    kit.varies("loss", cases=("n5", "n6", "closed_form"), hint="the loss is the same (or not finite) on different "
                                                              "inputs"),
    kit.same(0, "loss", [("n5", "n5_again")], hint="the loss changes between two calls on the same inputs")))


CONTRASTIVE = Exercise(
    grade_id="contrastive_loss_test",
    function="custom_simclr_contrastive_loss",
    cases=contrastive_cases,
    probe=probe_contrastive,
    checks=nt_xent_checks(CONTRASTIVE_MISTAKES, ("proj_feat1", "proj_feat2")),
    forbidden=("labkit.losses.contrastive_loss",),
    gate=NT_XENT_GATE,
    solutions=(
        Example("positive first, then the 2N - 2 negatives, as one cross-entropy", """\
def custom_simclr_contrastive_loss(proj_feat1, proj_feat2, temperature=0.5):
    n = len(proj_feat1)
    z = F.normalize(torch.cat([proj_feat1, proj_feat2]), dim=1)
    sim = z @ z.T / temperature
    partner = torch.arange(2 * n).roll(n)
    positive = sim[torch.arange(2 * n), partner].unsqueeze(1)
    keep = ~(torch.eye(2 * n, dtype=torch.bool) | torch.eye(2 * n, dtype=torch.bool).roll(n, dims=1))
    negatives = sim[keep].view(2 * n, 2 * n - 2)
    logits = torch.cat([positive, negatives], dim=1)
    return F.cross_entropy(logits, torch.zeros(2 * n, dtype=torch.long))
""", share=1.0),
    ),
    mistakes=(
        Example("projections not L2-normalized", """\
def custom_simclr_contrastive_loss(proj_feat1, proj_feat2, temperature=0.5):
    # Mistake: the projections are not L2-normalized (dot products instead of cosine similarities).
    n = len(proj_feat1)
    z = torch.cat([proj_feat1, proj_feat2]).float()
    logits = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    return F.cross_entropy(logits, torch.arange(2 * n).roll(n))
""", share=2.5 / 6, message="not L2-normalized", demo=True),
        Example("exp, then log", """\
def custom_simclr_contrastive_loss(proj_feat1, proj_feat2, temperature=0.5):
    # Mistake: raw exp(sim / T) overflows in float32 at small temperatures.
    z = F.normalize(torch.cat([proj_feat1, proj_feat2]), dim=1)
    sim = torch.exp(z @ z.T / temperature)
    n = len(proj_feat1)
    positives = torch.cat([torch.diagonal(sim, n), torch.diagonal(sim, -n)])
    return -torch.log(positives / (sim.sum(1) - sim.diagonal())).mean()
""", share=11 / 12, message="small temperature", self_check=False),
        Example("similarities multiplied by the temperature", """\
def custom_simclr_contrastive_loss(proj_feat1, proj_feat2, temperature=0.5):
    # Mistake: sim * T instead of sim / T.
    z = F.normalize(torch.cat([proj_feat1, proj_feat2]), dim=1)
    sim = torch.exp(z @ z.T * temperature)
    n = len(proj_feat1)
    positives = torch.cat([torch.diagonal(sim, n), torch.diagonal(sim, -n)])
    return -torch.log(positives / (sim.sum(1) - sim.diagonal())).mean()
""", share=5 / 12, message="multiplied by the temperature"),
    ),
    hostile=(
        Example("labkit's reference", """\
from labkit.losses import contrastive_loss

def custom_simclr_contrastive_loss(proj_feat1, proj_feat2, temperature=0.5):
    return contrastive_loss(proj_feat1, proj_feat2, temperature)
""", share=0.0, message="labkit.losses.contrastive_loss"),
    ),
)



# ---------------------------------------------------------------------------- shared: seeded data and encoders

def _dsprites(args):
    """The generated dSprites of a case and its seeded 80/20 split (the same in child and parent).

    With ``noise`` in the case, the labels are the image's third of the x axis, and that fraction of them is redrawn
    at random (seeded): a fresh task whose accuracy nobody can know without training on it (a random encoder's
    probe reads about 57-72% over the noise drawn; on shape labels it read 34-40% whatever the noise, so a
    made-up 45% passed one draw in six). With ``chance``, the test images' shapes are coin flips.
    """
    from labkit.checks.fixtures import small_dsprites

    data, train, test = small_dsprites(int(args["num_images"]), int(args["seed"]))
    if "noise" in args:
        # the task: the image's third of the x axis (column 0, where the probe reads its labels), which even a random
        # encoder decodes well, so that label noise moves the accuracy over a wide range no constant can cover
        data.latents_classes[:, 0] = data.latents_classes[:, 3] * 3 // 32
        g = torch.Generator().manual_seed(int(args["seed"]) + 1)
        redraw = torch.rand(len(data), generator=g) < float(args["noise"])
        shapes = data.latents_classes[:, 0].clone()
        shapes[redraw] = torch.randint(0, 3, (int(redraw.sum()),), generator=g, dtype=shapes.dtype)
        data.latents_classes[:, 0] = shapes
    if "chance" in args:
        # the test images' shapes redrawn as fair three-sided coin flips: any classifier's test accuracy is then
        # 1/3 (give or take 1.9 points on 600 test images), whatever it learned, and a made-up number cannot know it
        g = torch.Generator().manual_seed(int(args["seed"]) + 2)
        test_idx = torch.as_tensor(test.indices)
        data.latents_classes[test_idx, 0] = torch.randint(0, 3, (len(test_idx),), generator=g,
                                                          dtype=data.latents_classes.dtype)
    return data, train, test


def _encoder(images, seed: int):
    """A seeded random encoder with calibrated BatchNorm, in eval mode (deterministic on CPU)."""
    from labkit.checks.fixtures import calibrated_encoder

    return calibrated_encoder(images, seed)


def _features(encoder, images) -> np.ndarray:
    from labkit.checks.fixtures import features

    return features(encoder, images)


def _axes_list(value, what: str) -> list:
    from matplotlib.axes import Axes

    items = list(value) if isinstance(value, (list, tuple)) or hasattr(value, "flat") else [value]
    items = list(np.asarray(items, dtype=object).flat)
    if not items or not all(isinstance(ax, Axes) for ax in items):
        raise TypeError(f"{what} should return matplotlib Axes")
    return items


def _close_figures():
    import matplotlib.pyplot as plt

    plt.close("all")


# ---------------------------------------------------------------------------- train_supervised_encoder

SUPERVISED_MARGIN = 10.0  # percentage points above an untrained encoder, on the training images


def supervised_cases(rng: np.random.Generator):
    return {"small": {"seed": np.array(int(rng.integers(1000))), "num_images": np.array(800),
                      "num_epochs": np.array(5), "batch_size": np.array(40)}}


def probe_supervised(train_supervised_encoder, args):
    data, train, test = _dsprites(args)
    out = train_supervised_encoder(data, train, test, num_epochs=int(args["num_epochs"]),
                                   batch_size=int(args["batch_size"]))
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError("train_supervised_encoder should return the pair (encoder, test_acc)")
    encoder, test_acc = out
    if not isinstance(encoder, torch.nn.Module) or not hasattr(encoder, "get_features"):
        raise TypeError("the first returned value should be the trained encoder (with get_features)")
    encoder.eval()
    return {"features": _features(encoder, data.images), "test_acc": scalar(torch.as_tensor(float(test_acc)),
                                                                            "test_acc")}


def _supervised_shape(ev):
    f = ev.get("small", "features")
    if f.shape == (int(ev.inputs["small"]["num_images"]), 84) and np.all(np.isfinite(f)):
        return None
    return f"the encoder should map each image to 84 finite features; got {kit.describe_shape(f)}"


def _train_probe(features, data, train) -> float:
    """How well a logistic regression fits shape on the training images' features (what the encoder learned)."""
    from labkit.checks.fixtures import shape_fit

    return shape_fit(features, data, train.indices)


def _supervised_probe(ev):
    f = ev.get("small", "features")
    data, train, _ = _dsprites(ev.inputs["small"])
    if f.shape[0] != len(data):
        return "no features to score"
    learned = _train_probe(f, data, train)
    untrained = _train_probe(_features(_encoder(data.images, int(ev.inputs["small"]["seed"])), data.images),
                             data, train)
    if learned >= untrained + SUPERVISED_MARGIN:
        return None
    return (f"the returned encoder's features separate shapes no better than an untrained encoder's (linear fit "
            f"{learned:.0f}% vs {untrained:.0f}% on the training images): train a fresh encoder end to end with "
            "its classifier (freeze_features=False) and return that encoder")


def _heldout_fit(features, data, train, test) -> float:
    """Test accuracy (%) of a logistic regression fitted on the training images' features: measured by the judge."""
    from labkit.evaluation import linear_probe

    labels, tr, te = data.latents_classes[:, 0].numpy(), np.asarray(train.indices), np.asarray(test.indices)
    return linear_probe(features[tr], labels[tr], features[te], labels[te])


ACCURACY_TOLERANCE = 15.0  # points between the returned test accuracy and the judge's own measurement (seen: <= 3)


def _supervised_accuracy(ev):
    acc = float(ev.get("small", "test_acc"))
    f = ev.get("small", "features")
    data, train, test = _dsprites(ev.inputs["small"])
    if not 0.0 <= acc <= 100.0 or f.shape[0] != len(data):
        return f"test_acc should be the classifier's test accuracy in percent (0-100, chance is 33); got {acc:.3g}"
    measured = _heldout_fit(f, data, train, test)
    if abs(acc - measured) <= ACCURACY_TOLERANCE:
        return None
    return (f"test_acc {acc:.1f}% is not what the returned encoder gives: a linear classifier on its features reaches "
            f"{measured:.0f}% on the test images; return the accuracy of the classifier you trained")


SHIPPED_COMPARED = 128  # images on which the features are compared with each shipped encoder's (10,752 numbers)


def _not_shipped(ev):
    """The returned encoder is not one of labkit's shipped encoders (their files are withheld from the child, but a
    copy could come with the submission)."""
    from labkit import pretrained

    f = ev.get("small", "features")
    data, *_ = _dsprites(ev.inputs["small"])
    if f.shape != (len(data), 84) or not np.all(np.isfinite(f)):
        return f"the encoder should map each image to 84 finite features; got {kit.describe_shape(f)}"
    some = slice(0, SHIPPED_COMPARED)
    for name in pretrained.NAMES:
        try:
            shipped = _features(pretrained.load_encoder(name, device="cpu"), data.images[some])
        except Exception:  # a missing file: nothing to compare with
            continue
        if np.corrcoef(shipped.ravel(), f[some].ravel())[0, 1] > 0.99:
            return f"the returned encoder is labkit's shipped '{name}' encoder, not one trained here"
    return None


SUPERVISED = Exercise(
    grade_id="supervised_encoder_test",
    function="train_supervised_encoder",
    cases=supervised_cases,
    probe=probe_supervised,
    checks=[kit.holds(0.5, _supervised_shape), kit.holds(1.0, _supervised_probe),
            kit.holds(0.5, _supervised_accuracy)],
    forbidden=("labkit.pretrained.load_encoder", "labkit.pretrained._state"),
    gate=kit.holds(0, kit.all_pass(kit.holds(0, _not_shipped), kit.holds(0, _supervised_probe))),
    mistakes=(
        Example("an untrained encoder and a made-up accuracy", """\
def train_supervised_encoder(dataset, train_sampler, test_sampler, num_epochs=10, batch_size=1000):
    # Mistake: the encoder is never trained.
    return models.DSpritesEncoder().eval(), 90.0
""", share=0.0, message="no better than an untrained"),
    ),
    hostile=(
        Example("labkit's shipped supervised encoder, loaded from a copy of its file", """\
def train_supervised_encoder(dataset, train_sampler, test_sampler, num_epochs=10, batch_size=1000):
    import glob, os, torch
    encoder = models.DSpritesEncoder()
    for path in glob.glob("**/supervised.pt", recursive=True) + glob.glob(os.path.dirname(pretrained.__file__) + "/../weights/supervised.pt"):
        encoder.load_state_dict(torch.load(path, map_location="cpu"))
        break
    return encoder.eval(), 97.5
""", share=0.0),
    ),
)


# ---------------------------------------------------------------------------- plot_model_rsms

def model_rsm_cases(rng: np.random.Generator):
    n = int(rng.integers(24, 40))
    return {"two": {"seed": np.array(int(rng.integers(1000))), "num_images": np.array(n),
                    "latent": rng.permutation(n).astype(F32) / n}}  # distinct values: one sorted order


def _rsm_encoders(args):
    data, *_ = _dsprites(args)
    seed = int(args["seed"])
    return data, {"first": _encoder(data.images, seed), "second": _encoder(data.images, seed + 1)}


def _reference_rsm(features):
    """labkit.rsm.compute_rsm's cosine similarity (labkit's own is withheld in the scoring child: rsm_test forbids it)."""
    unit = torch.nn.functional.normalize(torch.as_tensor(features).float(), dim=1)  # (N, D)
    return unit @ unit.T                                                            # (N, N)


def probe_model_rsms(plot_model_rsms, args):
    """The figure is graded with the reference RSM bound to ``custom_torch_RSM_fct`` in the student's namespace
    while it is drawn (restored after): a wrong RSM loses its points in rsm_test only, not here too. rsm_test is
    probed before this exercise (notebook order), so nothing the figure does with the reference reaches it."""
    from labkit.checks.common import global_bound

    data, encoders = _rsm_encoders(args)
    with global_bound(plot_model_rsms, "custom_torch_RSM_fct", _reference_rsm):
        drawn = plot_model_rsms(encoders, data.images.unsqueeze(1).float(), tensor(args["latent"]),
                                latent_name="a latent")
    axes = _axes_list(drawn, "plot_model_rsms")
    shown = []
    for ax in axes:
        images = ax.get_images()
        shown.append(np.asarray(images[0].get_array(), dtype=np.float64) if images else np.full((1, 1), np.nan))
    _close_figures()
    sizes = {a.shape for a in shown}
    return {"count": np.array(len(axes)),
            "rsms": np.stack(shown) if len(sizes) == 1 else np.full((len(shown), 1, 1), np.nan)}


def _sorted_rsms(a, source=_features, normalize=True, sort=True):
    data, encoders = _rsm_encoders(a)
    order = np.argsort(a["latent"], kind="stable") if sort else np.arange(len(a["latent"]))
    out = []
    for encoder in encoders.values():
        f = source(encoder, data.images)
        if normalize:
            f = _unit_rows(f)
        out.append((f @ f.T)[order][:, order])
    return np.stack(out)


MODEL_RSM_MISTAKES = [
    (lambda a: _sorted_rsms(a, sort=False), "the RSMs are not sorted: reorder rows and columns by the latent "
     "(rsm.sort_by_latent)"),
    (lambda a: _sorted_rsms(a, source=lambda e, x: x.flatten(1).double().numpy()),
     "these are RSMs of the raw pixels: use each encoder's features (get_features)"),
    (lambda a: _sorted_rsms(a, normalize=False), "the rows are not L2-normalized: an RSM holds cosine similarities "
     "(compute it with custom_torch_RSM_fct)"),
]


def _model_rsm_count(ev):
    if int(ev.get("two", "count")) == 2:
        return None
    return "return one axis per encoder, in the order of the dict (2 encoders here)"


# atol 2e-3: the child's float32 features (jailed, other thread count) differ from the parent's by up to
# ~2e-4 in cosine similarity; the known mistakes differ by more than 0.05.
MODEL_RSMS = Exercise(
    grade_id="model_rsms_test",
    function="plot_model_rsms",
    cases=model_rsm_cases,
    probe=probe_model_rsms,
    checks=[kit.holds(0.5, _model_rsm_count),
            kit.matches(1.5, "rsms", _sorted_rsms, cases=("two",), variants=MODEL_RSM_MISTAKES, atol=2e-3,
                           hint="the images shown are not the encoders' RSMs sorted by the latent")],
    forbidden=(),
    solutions=(
        Example("a right figure after a wrong RSM (graded with the reference RSM: full marks here)", """\
def custom_torch_RSM_fct(features):
    # Exercise 2 answered wrong (rows not normalized): rsm_test takes its points, this figure keeps its own.
    return features.float() @ features.float().T


def plot_model_rsms(encoders, images, latent_values, latent_name="shape"):
    fig, axes = plt.subplots(1, len(encoders), figsize=(4 * len(encoders), 3.6), squeeze=False)
    axes = list(axes[0])
    for ax, (title, encoder) in zip(axes, encoders.items()):
        with torch.no_grad():
            features = encoder.get_features(images)
        sorted_rsm, sorted_values = rsm.sort_by_latent(custom_torch_RSM_fct(features), latent_values)
        plots.plot_rsm(sorted_rsm, sorted_values, latent_name, title, ax=ax)
    return axes
""", share=1.0),
    ),
    mistakes=(
        Example("RSMs in the data's order", """\
def plot_model_rsms(encoders, images, latent_values, latent_name="shape"):
    # Mistake: the RSMs are drawn in the data's order, never sorted by the latent.
    fig, axes = plt.subplots(1, len(encoders), figsize=(4 * len(encoders), 3.6), squeeze=False)
    axes = list(axes[0])
    for ax, (title, encoder) in zip(axes, encoders.items()):
        with torch.no_grad():
            features = encoder.get_features(images)
        plots.plot_rsm(custom_torch_RSM_fct(features), title=title, ax=ax)
    return axes
""", share=0.25, message="not sorted", demo=True),
    ),
)


# ---------------------------------------------------------------------------- train_and_plot_probe

def probe_cases(rng: np.random.Generator):
    seed = int(rng.integers(1000))
    # 200 epochs (600 steps): the classifier converges, so its accuracy varies by under a point with its seed
    # (at 40 epochs by up to 5, and a correct answer could land 6.5 points from the reference's mean)
    return {"frozen": {"seed": np.array(seed), "num_images": np.array(3000),
                       "num_epochs": np.array(200), "noise": np.array(rng.uniform(0.0, 0.3))},
            # coin-flip test labels: 1/3 whatever the classifier learned, so a short training will do
            "chance": {"seed": np.array(seed + 1), "num_images": np.array(3000), "num_epochs": np.array(40),
                       "chance": np.array(1)}}


def probe_probe(train_and_plot_probe, args):
    data, train, test = _dsprites(args)
    encoder = _encoder(data.images, int(args["seed"]))
    before = [t.clone() for t in encoder.state_dict().values()]
    out = train_and_plot_probe(encoder, data, train, test, num_epochs=int(args["num_epochs"]), title="probe")
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError("train_and_plot_probe should return the pair (test_acc, ax)")
    test_acc, ax = out
    ax = _axes_list(ax, "train_and_plot_probe's second value")[0]
    lines = ax.get_lines()
    change = max(float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
                 for a, b in zip(before, encoder.state_dict().values()))
    curve = np.asarray(lines[0].get_ydata(), dtype=np.float64) if len(lines) == 1 else np.full(0, np.nan)
    _close_figures()
    return {"test_acc": scalar(torch.as_tensor(float(test_acc)), "test_acc"), "curve": curve,
            "change": np.array(change), "training_mode": np.array(float(encoder.training))}


def _probe_frozen(ev):
    if float(ev.get("frozen", "change")) == 0.0 and float(ev.get("frozen", "training_mode")) == 0.0:
        return None
    return ("the encoder changed (weights, BatchNorm statistics or mode): train only the classifier on frozen "
            "features (freeze_features=True)")


def _probe_curve(ev):
    curve, epochs = ev.get("frozen", "curve"), int(ev.inputs["frozen"]["num_epochs"])
    if len(curve) >= epochs and np.all(np.isfinite(curve)) and curve[-max(1, len(curve) // 10):].mean() < curve[0]:
        return None
    return "the axis should hold one line: the classifier's loss at every step, falling as it trains"


def _probe_reference(a) -> list[float]:
    from labkit import training

    data, train, test = _dsprites(a)
    # the frozen features once, then three classifiers on them: the accuracies train_classifier(encoder, data, ...)
    # gives with these seeds, to the last digit, in a third of the time
    pair = (torch.as_tensor(_features(_encoder(data.images, int(a["seed"])), data.images)), data.latents_classes[:, 0])
    return [training.train_classifier(None, pair, train, test, int(a["num_epochs"]), seed=s, device="cpu",
                                      progress=False)[3] for s in range(3)]


CHANCE_TOLERANCE = 8.0  # points around 100/3 for test labels drawn at random: over 4 standard deviations at 600 images


def _probe_accuracy(ev):
    acc, chance = float(ev.get("frozen", "test_acc")), float(ev.get("chance", "test_acc"))
    reference = _probe_reference(ev.inputs["frozen"])
    hint = "return the test accuracy in percent from training.train_classifier"
    if abs(acc - np.mean(reference)) > max(6.0, 3 * np.std(reference)):
        return (f"test_acc {acc:.1f}% is far from a linear classifier's test accuracy on these frozen features "
                f"(about {np.mean(reference):.0f}%): {hint}")
    if abs(chance - 100 / 3) > CHANCE_TOLERANCE:
        return (f"with the test images' labels drawn at random, test_acc should be about 33% (chance), "
                f"not {chance:.1f}%: {hint}")
    return None


PROBE = Exercise(
    grade_id="probe_test",
    function="train_and_plot_probe",
    cases=probe_cases,
    probe=probe_probe,
    checks=[kit.holds(0.75, _probe_frozen), kit.holds(0.5, _probe_curve), kit.holds(0.75, _probe_accuracy)],
    forbidden=(),
    gate=kit.holds(0, _probe_accuracy),  # a made-up accuracy and a drawn curve earn nothing
    hostile=(
        Example("a plausible accuracy and a drawn falling curve, without training", """\
def train_and_plot_probe(encoder, dataset, train_sampler, test_sampler, num_epochs=10, title="", ax=None):
    import numpy as np
    if ax is None:
        ax = plt.subplots()[1]
    ax.plot(1.1 * np.exp(-np.arange(num_epochs * 3) / 30) + 0.3)
    return 45.0, ax
""", share=0.0),
    ),
    mistakes=(
        Example("no loss curve", """\
def train_and_plot_probe(encoder, dataset, train_sampler, test_sampler, num_epochs=10, title="", ax=None):
    # Mistake: the loss curve is never drawn.
    _, loss_array, _, test_acc = training.train_classifier(encoder, dataset, train_sampler, test_sampler, num_epochs,
                                                           freeze_features=True, device=dataset.images.device)
    if ax is None:
        ax = plt.subplots(figsize=(5, 3))[1]
    ax.set_title(title)
    return test_acc, ax
""", share=0.75, message="one line", demo=True),
    ),
)


# ---------------------------------------------------------------------------- choose_probe_epochs

# The lab's probe (labkit's train_classifier: Adam 1e-3, cosine schedule, batch 1,000) on the shipped random, VAE
# and SimCLR encoders, full scale (16,000 training images), 75 epochs (three times the lab's 25): the mean loss of
# each epoch, measured on one CPU thread, rounded to 4 decimals. Real curves, with the long tails exponentials lack.
REAL_PROBE_CURVES = {
    "random_encoder": (
        1.2002, 1.1353, 1.0997, 1.0791, 1.0670, 1.0600, 1.0554, 1.0523, 1.0503, 1.0487, 1.0475, 1.0465, 1.0457, 1.0450,
        1.0446, 1.0442, 1.0438, 1.0435, 1.0431, 1.0430, 1.0427, 1.0425, 1.0424, 1.0422, 1.0422, 1.0421, 1.0419, 1.0419,
        1.0418, 1.0418, 1.0417, 1.0417, 1.0416, 1.0415, 1.0414, 1.0414, 1.0414, 1.0414, 1.0413, 1.0413, 1.0413, 1.0412,
        1.0412, 1.0412, 1.0412, 1.0411, 1.0411, 1.0411, 1.0411, 1.0411, 1.0410, 1.0410, 1.0410, 1.0410, 1.0410, 1.0410,
        1.0409, 1.0409, 1.0409, 1.0409, 1.0409, 1.0409, 1.0409, 1.0409, 1.0409, 1.0409, 1.0409, 1.0409, 1.0408, 1.0408,
        1.0408, 1.0408, 1.0408, 1.0408, 1.0408),
    "vae_encoder": (
        1.1645, 1.0670, 1.0262, 1.0119, 1.0053, 1.0008, 0.9970, 0.9936, 0.9907, 0.9880, 0.9855, 0.9834, 0.9814, 0.9795,
        0.9781, 0.9766, 0.9750, 0.9736, 0.9724, 0.9713, 0.9702, 0.9693, 0.9684, 0.9675, 0.9669, 0.9660, 0.9653, 0.9647,
        0.9640, 0.9637, 0.9630, 0.9626, 0.9620, 0.9616, 0.9611, 0.9607, 0.9604, 0.9601, 0.9598, 0.9594, 0.9593, 0.9589,
        0.9588, 0.9585, 0.9583, 0.9581, 0.9579, 0.9577, 0.9576, 0.9574, 0.9573, 0.9572, 0.9571, 0.9570, 0.9569, 0.9568,
        0.9567, 0.9566, 0.9566, 0.9565, 0.9565, 0.9564, 0.9564, 0.9563, 0.9563, 0.9563, 0.9563, 0.9563, 0.9562, 0.9562,
        0.9562, 0.9562, 0.9562, 0.9562, 0.9562),
    "simclr_encoder": (
        0.7862, 0.3756, 0.2377, 0.1813, 0.1510, 0.1315, 0.1177, 0.1073, 0.0991, 0.0926, 0.0872, 0.0827, 0.0789, 0.0756,
        0.0727, 0.0702, 0.0680, 0.0660, 0.0643, 0.0627, 0.0613, 0.0600, 0.0588, 0.0577, 0.0567, 0.0558, 0.0550, 0.0542,
        0.0535, 0.0529, 0.0523, 0.0517, 0.0512, 0.0507, 0.0502, 0.0498, 0.0494, 0.0490, 0.0487, 0.0484, 0.0481, 0.0478,
        0.0475, 0.0473, 0.0471, 0.0469, 0.0467, 0.0465, 0.0463, 0.0462, 0.0460, 0.0459, 0.0458, 0.0456, 0.0455, 0.0455,
        0.0454, 0.0453, 0.0452, 0.0452, 0.0451, 0.0451, 0.0450, 0.0450, 0.0449, 0.0449, 0.0449, 0.0449, 0.0449, 0.0449,
        0.0449, 0.0449, 0.0448, 0.0448, 0.0448),
}


def epochs_cases(rng: np.random.Generator):
    """Synthetic curves whose plateau is known (fast, slow and noisy falls) and the three real probe curves.

    "slow" stops soon after it levels off (4.5 time constants), "fast" and "noisy" run far beyond (15 and 12): using
    every epoch given is right for the first only, whatever the draw.
    """
    from labkit.checks.fixtures import synthetic_loss_curve

    def synthetic(tau, length_in_taus, fall, plateau, noise):
        losses, smooth = synthetic_loss_curve(rng, tau, round(length_in_taus * tau), fall, plateau, noise)
        return {"losses_per_epoch": losses, "_smooth": smooth, "_plateau": np.array(plateau)}

    cases = {"fast": synthetic(rng.uniform(1.5, 3.0), 15, rng.uniform(0.5, 2.0), rng.uniform(0.02, 0.8), 0.002),
             "slow": synthetic(rng.uniform(6.0, 10.0), 4.5, rng.uniform(0.05, 0.3), rng.uniform(0.8, 1.1), 0.002),
             "noisy": synthetic(rng.uniform(3.0, 5.0), 12, rng.uniform(0.3, 1.0), rng.uniform(0.1, 0.6), 0.01)}
    for name, curve in REAL_PROBE_CURVES.items():
        smooth = np.array(curve)
        cases[name] = {"losses_per_epoch": smooth.astype(F32), "_smooth": smooth,
                       "_plateau": np.array(smooth[-5:].mean())}
    return cases


def probe_epochs_choice(choose_probe_epochs, args):
    chosen = choose_probe_epochs(np.array(args["losses_per_epoch"]))
    if isinstance(chosen, torch.Tensor):
        chosen = scalar(chosen, "the number of epochs")
    elif not isinstance(chosen, (int, float, np.integer, np.floating)) or isinstance(chosen, bool):
        raise TypeError(f"choose_probe_epochs should return a number of epochs (an int), got {type(chosen).__name__}")
    return {"epochs": np.array(float(chosen))}


def _epochs_fit(*cases):
    def run(ev):
        from labkit.checks.fixtures import epochs_verdict

        for case in cases:
            a = ev.inputs[case]
            message = epochs_verdict(ev.get(case, "epochs"), a["_smooth"], float(a["_plateau"]))
            if message:
                return f"on the {case.replace('_', ' ')}'s curve: {message}" if case in REAL_PROBE_CURVES else \
                    f"on a {case} curve ({len(a['_smooth'])} epochs): {message}"
        return None

    return run


PROBE_EPOCHS = Exercise(
    grade_id="probe_epochs_test",
    function="choose_probe_epochs",
    cases=epochs_cases,
    probe=probe_epochs_choice,
    checks=[kit.holds(0.5, _epochs_fit("fast")), kit.holds(0.5, _epochs_fit("slow")),
            kit.holds(0.5, _epochs_fit("noisy")), kit.holds(0.5, _epochs_fit(*REAL_PROBE_CURVES))],
    forbidden=("labkit.checks.fixtures.levelled_off_window", "labkit.checks.fixtures.epochs_verdict"),
    # a rule reads its curve: one number for every curve (or no number) earns nothing
    gate=kit.varies("epochs", cases=("fast", "slow", "noisy", *REAL_PROBE_CURVES),
                    hint="the same number of epochs for every curve: choose_probe_epochs should read the curve it is "
                         "given (a rule, not a constant)"),
    solutions=(
        Example("the first epoch within 4% of the fall from the last three epochs' mean, no smoothing", """\
def choose_probe_epochs(losses_per_epoch):
    losses = np.asarray(losses_per_epoch, dtype=float)
    final = losses[-3:].mean()
    return int(np.argmax(losses - final <= 0.04 * (losses[0] - final))) + 1
""", share=1.0),
    ),
    mistakes=(
        Example("every epoch shown", """\
def choose_probe_epochs(losses_per_epoch):
    # Mistake: all the epochs of the curve, long after the loss has levelled off.
    return len(losses_per_epoch)
""", share=0.25, message="wasteful", demo=True),
        Example("halfway down", """\
def choose_probe_epochs(losses_per_epoch):
    # Mistake: stops once the loss is halfway down, while it is still falling.
    losses = np.asarray(losses_per_epoch)
    return int(np.argmax(losses <= (losses[0] + losses[-1]) / 2)) + 1
""", share=0.0, message="still falling"),
        Example("a fixed number", """\
def choose_probe_epochs(losses_per_epoch):
    # Mistake: the number read off one curve, returned for every curve.
    return 25
""", share=0.0, message="same number of epochs for every curve"),
    ),
    hostile=(
        Example("the judge's own window, from the shared fixtures", """\
from labkit.checks.fixtures import levelled_off_window

def choose_probe_epochs(losses_per_epoch):
    losses = np.asarray(losses_per_epoch, dtype=float)
    return levelled_off_window(losses, losses[-3:].mean())[1]
""", share=0.0, message="labkit.checks.fixtures.levelled_off_window"),
    ),
)


# ---------------------------------------------------------------------------- rsm_similarity_histogram

def histogram_cases(rng: np.random.Generator):
    def matrix(n, d, positive):
        f = rng.uniform(0, 1, (n, d)) if positive else rng.normal(size=(n, d))
        return (_unit_rows(f) @ _unit_rows(f).T).astype(F32)

    return {"pair": {"first": matrix(int(rng.integers(20, 30)), 6, False), "second": matrix(25, 4, True),
                     "bins": np.array(int(rng.integers(12, 25)))}}


def probe_histogram(rsm_similarity_histogram, args):
    bins = int(args["bins"])
    ax = _axes_list(rsm_similarity_histogram({"first": tensor(args["first"]), "second": tensor(args["second"])},
                                             bins=bins), "rsm_similarity_histogram")[0]
    bars = [c for c in ax.containers if len(c) == bins]
    heights = [[bar.get_height() for bar in c] for c in bars]
    edges = [[bar.get_x() for bar in c] + [c[-1].get_x() + c[-1].get_width()] for c in bars]
    _close_figures()
    return {"heights": np.array(heights, dtype=np.float64).reshape(len(bars), bins),
            "edges": np.array(edges, dtype=np.float64).reshape(len(bars), bins + 1)}


def _normalized_histograms(a, values):
    out = []
    for key in ("first", "second"):
        counts, _ = np.histogram(values(a[key].astype(np.float64)), bins=int(a["bins"]), range=(-1, 1))
        out.append(counts / counts.sum())
    return np.stack(out)


def _upper(m):
    return m[np.triu_indices(len(m), k=1)]


def _histogram_reference(a):
    return _normalized_histograms(a, _upper)


def probe_normalized(ev):
    h = ev.get("pair", "heights")
    return h / np.maximum(h.sum(axis=1, keepdims=True), 1e-300)


HISTOGRAM_MISTAKES = [
    (lambda a: _normalized_histograms(a, np.ravel), "the diagonal (each input with itself, always 1) is counted: "
     "use the off-diagonal entries only (rsm.offdiagonal)"),
]


def _histogram_matches(ev):
    got, a = probe_normalized(ev), ev.inputs["pair"]
    if got.shape != (2, int(a["bins"])):
        return (f"expected one histogram of {int(a['bins'])} bins per RSM drawn with ax.hist (2 here); "
                f"found {got.shape[0]}")
    edges = ev.get("pair", "edges")
    if not np.allclose(edges[:, [0, -1]], [-1, 1], atol=1e-6):
        return "the bins should span the whole range of cosine similarity: range=(-1, 1)"
    if np.allclose(got, _histogram_reference(a), atol=1e-6):
        return None
    for variant, message in HISTOGRAM_MISTAKES:
        if np.allclose(got, variant(a), atol=1e-6):
            return message
    return "the bar heights are not the histogram of each RSM's off-diagonal similarities"


HISTOGRAM = Exercise(
    grade_id="rsm_histogram_test",
    function="rsm_similarity_histogram",
    cases=histogram_cases,
    probe=probe_histogram,
    checks=[kit.holds(1.0, _histogram_matches)],
    forbidden=("labkit.plots.plot_rsm_histogram",),
    mistakes=(
        Example("the diagonal counted", """\
def rsm_similarity_histogram(rsms, bins=100, ax=None):
    # Mistake: the whole matrix, diagonal included, goes into the histogram.
    if ax is None:
        ax = plt.subplots(figsize=(5, 3))[1]
    for name, matrix in rsms.items():
        ax.hist(torch.as_tensor(matrix).flatten().numpy(), bins=bins, range=(-1, 1), density=True, alpha=0.5, label=name)
    ax.legend(fontsize=8)
    return ax
""", share=0.0, message="diagonal", demo=True),
    ),
)

# The notebook's cells that train, print or plot for the reader (no module state but torch's seed): the child skips
# each unless a cell it runs reads what it binds (the judge of a perfect submission: 18-23 s -> 13 s on the 2-core CPU).
EXPERIMENTS = ("data", "show_dsprites", "raw_pixels", "train_supervised", "supervised_rsm", "supervised_rsm_other",
               "random_rsm", "random_probe", "long_probe", "chosen_probe", "vae_reconstructions", "vae_rsm", "vae_probe",
               "augmented_views", "train_simclr", "simclr_rsm", "simclr_probe", "biased_sets", "bias_experiment",
               "rsms_by_latent", "simclr_2neg_rsm", "rsm_histograms", "simclr_2neg_probe", "few_shot", "summary_table")
EXERCISES = [SUPERVISED, RSM, MODEL_RSMS, PROBE, PROBE_EPOCHS, CONTRASTIVE, HISTOGRAM]
