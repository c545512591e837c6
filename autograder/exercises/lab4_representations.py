"""Lab 4 (dSprites representations): the RSM and the SimCLR loss, with Neuromatch's function names.

References: ``labkit.rsm.compute_rsm`` and ``labkit.losses.contrastive_loss``;
the properties are those of DESIGN.md 5.2 (rescaled rows, swapped views, joint
permutation, odd N, the closed form, a small temperature, finite gradients).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..judge import checks
from ..judge.exercise import Exercise
from ..judge.probing import grad_of, scalar, tensor, to_numpy

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
        checks.matches(2, "rsm", rsm_reference, cases=("n7", "n13"), variants=RSM_MISTAKES,
                       hint="the RSM should hold the cosine similarity of every pair of rows", atol=1e-5),
        checks.same(1, "rsm", [("n7", "n7_rescaled")], atol=1e-5,
                    hint="rescaling a row changed the RSM: normalize each row to unit length"),
        checks.holds(1, _rsm_symmetric),
    ],
    forbidden=("labkit.rsm.compute_rsm",),
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
        "n5_permuted": case(z1[perm], z2[perm], 0.5),
        "closed_form": case(basis, basis, 0.5), "cold": case(*views(5, 8), 0.01),
    }


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


def _contrastive_grads(ev):
    for key in ("grad1", "grad2"):
        g = ev.get("n5", key)
        if not np.all(np.isfinite(g)) or not np.any(g):
            return ("no finite gradient reaches the projections: build the loss with torch operations "
                    "(no .item() or numpy)")
    return None


CONTRASTIVE = Exercise(
    grade_id="contrastive_loss_test",
    function="custom_simclr_contrastive_loss",
    cases=contrastive_cases,
    probe=probe_contrastive,
    checks=[
        checks.matches(2, "loss", contrastive_reference, cases=("n5", "n6"), variants=CONTRASTIVE_MISTAKES,
                       hint="the loss differs from NT-Xent on fresh inputs"),
        checks.same(1, "loss", [("n5", "n5_rescaled")],
                    hint="rescaling rows changed the loss: L2-normalize the rows (cosine similarity)"),
        checks.same(1, "loss", [("n5", "n5_swapped"), ("n5", "n5_permuted")],
                    hint="swapping the views or permuting the batch (both views alike) changed the loss: row i of "
                         "proj_feat1 pairs with row i of proj_feat2, and every anchor of both views counts"),
        checks.matches(1, "loss", _closed_form, cases=("closed_form",),
                       hint="identical views with orthogonal rows should give -log(e^(1/T) / (e^(1/T) + 2N - 2))"),
        checks.matches(0.5, "loss", contrastive_reference, cases=("cold",), rtol=1e-3,
                       hint="at a small temperature (T = 0.01) the loss overflows or loses precision: compute it as a "
                            "cross-entropy / logsumexp of the logits, not exp then log"),
        checks.holds(0.5, _contrastive_grads),
    ],
    forbidden=("labkit.losses.contrastive_loss",),
)

EXERCISES = [RSM, CONTRASTIVE]
