"""Lab 3 (BYOL): the regression loss, the asymmetric views of Table 6, the moving-average target, the tau schedule
and the training step.

References: ``labkit.losses.byol_loss``, ``labkit.augment.byol_augment`` (graded statistically, since its draws are
random), ``labkit.training.ema_update``, ``labkit.training.cosine_tau`` and ``labkit.training.byol_step``. The seed's
bugs are the mistakes caught here (../shared/seeds/README.md, seed 003): an unnormalized MSE, two identical view
pipelines (blur 0.5 / 0.5, no solarization, saturation 0.4), an EMA that skips BatchNorm's buffers, and a BYOL step
whose loss never uses the target network (both terms regress online outputs; it detaches the prediction p2 and lets
gradient flow into the projection z1).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from . import kit
from .kit import Example, Exercise
from .kit import tensor, to_numpy

F32 = np.float32


# ---------------------------------------------------------------------------- byol_loss

def loss_cases(rng: np.random.Generator):
    p, z = rng.normal(size=(16, 8)), rng.normal(size=(16, 8))
    return {"batch": {"p": p.astype(F32), "z": z.astype(F32)},
            "again": {"p": p.astype(F32), "z": z.astype(F32)},
            "wide": {"p": (3 * rng.normal(size=(5, 32))).astype(F32), "z": (0.2 * rng.normal(size=(5, 32))).astype(F32)}}


def probe_loss(byol_loss, args):
    p, z = tensor(args["p"], grad=True), tensor(args["z"], grad=True)
    loss = byol_loss(p, z)
    out = {"loss": kit.scalar(loss, "the loss")}
    if isinstance(loss, torch.Tensor) and loss.requires_grad:
        loss.backward()
    out["grad_p"], out["grad_z"] = kit.grad_of(p), kit.grad_of(z)
    return out


def _unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def loss_reference(a):
    p, z = _unit(a["p"].astype(np.float64)), _unit(a["z"].astype(np.float64))
    return np.mean(2 - 2 * (p * z).sum(1))


LOSS_VARIANTS = [
    (lambda a: np.mean((a["p"].astype(np.float64) - a["z"]) ** 2),
     "this is an unnormalized MSE (the seed's F.mse_loss(p, z)): it depends on the vectors' lengths; BYOL "
     "L2-normalizes p and z first, and 2 - 2 cos(p, z) is the squared distance of the unit vectors"),
    (lambda a: np.mean((_unit(a["p"].astype(np.float64)) - _unit(a["z"].astype(np.float64))) ** 2),
     "the squared distance of the unit vectors is averaged over the D dimensions too (F.mse_loss on normalized "
     "vectors): sum over the dimensions, average over the batch"),
    (lambda a: len(a["p"]) * loss_reference(a),
     "the loss is summed over the batch: take the mean, so that it does not grow with the batch size"),
    (lambda a: -np.mean((_unit(a["p"].astype(np.float64)) * _unit(a["z"].astype(np.float64))).sum(1)),
     "this is -cos(p, z): BYOL's loss is 2 - 2 cos(p, z) (the same minimum, but a different value and scale)"),
]


def _loss_gate(ev):
    for case in ("batch", "again", "wide"):
        if not np.isfinite(ev.get(case, "loss")):
            return "the loss should be a finite number"
    if not kit.close(ev.get("batch", "loss"), ev.get("again", "loss"), rtol=1e-5, atol=1e-6):
        return "the same inputs gave two different losses: the loss should depend only on p and z"
    return kit.varies("loss", cases=("batch", "wide"), hint="the loss does not depend on p and z").run(ev)


def _no_grad_into_z(ev):
    for case in ("batch", "wide"):
        g = ev.get(case, "grad_z")
        if not (np.all(np.isnan(g)) or np.allclose(g, 0, atol=1e-7)):
            return ("a gradient reaches z: the target's projection is a fixed regression target in BYOL; detach it "
                    "(z.detach(), the stop-gradient) so that only the prediction p is trained")
    return None


def _grad_into_p(ev):
    for case in ("batch", "wide"):
        g = ev.get(case, "grad_p")
        if not np.all(np.isfinite(g)) or np.allclose(g, 0, atol=1e-9):
            return ("no gradient reaches the prediction p (it is detached, or computed under torch.no_grad()): the "
                    "prediction is the only side BYOL trains; detach z, never p")
    return None


LOSS = Exercise(
    grade_id="byol_loss_test",
    function="byol_loss",
    cases=loss_cases,
    probe=probe_loss,
    checks=[kit.matches(1.5, "loss", loss_reference, cases=("batch", "wide"), variants=LOSS_VARIANTS,
                        hint="the loss should be the mean over the batch of 2 - 2 cos(p_i, z_i)"),
            kit.holds(0.75, _no_grad_into_z), kit.holds(0.75, _grad_into_p)],
    forbidden=("labkit.losses.byol_loss",),
    gate=kit.holds(0, _loss_gate),
    mistakes=(
        Example("the seed's unnormalized MSE", """\
def byol_loss(p, z):
    # Mistake (the seed's): a plain MSE of the raw vectors.
    return F.mse_loss(p, z.detach())
""", share=1.5 / 3, message="unnormalized MSE", demo=True),
        Example("the prediction detached", """\
def byol_loss(p, z):
    # Mistake: the prediction is detached (the seed detaches p2), so nothing trains the online network.
    p = F.normalize(p.detach(), dim=1)
    z = F.normalize(z.detach(), dim=1)
    return (2 - 2 * (p * z).sum(dim=1)).mean()
""", share=2.25 / 3, message="no gradient reaches the prediction p"),
        Example("z not detached", """\
def byol_loss(p, z):
    # Mistake: no stop-gradient on the target's side.
    return (2 - 2 * F.cosine_similarity(p, z, dim=1)).mean()
""", share=2.25 / 3, message="detach it"),
        Example("MSE of the unit vectors, averaged over dimensions", """\
def byol_loss(p, z):
    # Mistake: F.mse_loss averages over the D dimensions as well as the batch.
    return F.mse_loss(F.normalize(p, dim=1), F.normalize(z.detach(), dim=1))
""", share=1.5 / 3, message="averaged over the D dimensions"),
    ),
    solutions=(
        Example("the squared distance of unit vectors", """\
def byol_loss(p, z):
    p, z = F.normalize(p, dim=1), F.normalize(z, dim=1).detach()
    return (p - z).pow(2).sum(dim=1).mean()
""", share=1.0),
    ),
    hostile=(
        Example("labkit's loss", """\
from labkit import losses

def byol_loss(p, z):
    return losses.byol_loss(p, z)
""", share=0.0, message="labkit.losses.byol_loss"),
    ),
)


# ---------------------------------------------------------------------------- byol_augment
# The probe runs the student's two pipelines on images built so that each transform's effect shows on its own:
#   checker: grey 12 px squares of 0.05 / 0.25 on 96 px images. Cropping and resizing to 32 px keeps its edges
#            sharp (a step spread over at most about one pixel); a Gaussian blur of sigma > ~0.6 softens them. The
#            values stay below the solarization threshold whatever the jitter.
#   ramp:    a grey left-to-right ramp 0.05 -> 0.25: monotone jitter keeps its direction, a flip reverses it.
#   bright:  constant grey 0.95: brightness keeps it >= 0.5, so solarization shows as a mean < 0.5.
#   colour:  constant (0.30, 0.20, 0.10): grayscale makes R = G = B exactly; jitter changes the colour; the spread
#            (max - min channel) is multiplied by the product of the brightness, contrast and saturation factors
#            (hue keeps it), so its log-variance measures the jitter's strength.
#   dim:     constant grey 0.30: only brightness changes it, by its factor.

VIEW_SIZE, CONSTANT_SIZE = 32, 16  # the constant images need no detail: smaller views, same distributions
N_CHECKER, N_CONSTANT = 384, 2048


def augment_cases(rng: np.random.Generator):
    return {"views": {"seed": np.array(int(rng.integers(2**31)))}}


def _probe_images():
    rows = torch.arange(96)
    checker = (((rows.view(-1, 1) // 12 + rows.view(1, -1) // 12) % 2) * 0.2 + 0.05).expand(3, 96, 96)
    ramp = torch.linspace(0.05, 0.25, 64).view(1, 1, 64).expand(3, 64, 64)

    def constant(values, n=N_CONSTANT):
        return torch.tensor(values).view(1, 3, 1, 1).expand(n, 3, 8, 8).contiguous()

    return {"checker": checker.expand(N_CHECKER, 3, 96, 96).contiguous(),
            "ramp": ramp.expand(N_CHECKER, 3, 64, 64).contiguous(),
            "bright": constant([0.95] * 3), "colour": constant([0.30, 0.20, 0.10]),
            "dim": constant([0.30] * 3, N_CONSTANT // 2)}


def _apply(transform, x, size, what):
    out = to_numpy(transform(x.clone()), what)
    if out.shape != (len(x), 3, size, size):
        raise ValueError(f"{what} should be a batch of shape {(len(x), 3, size, size)} (crops resized to "
                         f"size={size}); got {kit.describe_shape(out)}")
    return out


def view_statistics(transform, small, view: int) -> dict[str, np.ndarray]:
    """Per image, the statistics above: ``transform`` makes VIEW_SIZE views, ``small`` CONSTANT_SIZE ones."""
    images, out = _probe_images(), {}
    what = f"byol_augment(size, view={view}) applied to a batch"
    checker = _apply(transform, images["checker"], VIEW_SIZE, what)
    steps = np.maximum(np.abs(np.diff(checker, axis=-1)).max((1, 2, 3)), np.abs(np.diff(checker, axis=-2)).max((1, 2, 3)))
    out["sharpness"] = steps / np.maximum(checker.max((1, 2, 3)) - checker.min((1, 2, 3)), 1e-6)
    flat = checker.reshape(len(checker), -1)
    out["distinct"] = np.array(len(np.unique(np.round(flat[:, ::97], 5), axis=0)) / len(flat))
    ramp = _apply(transform, images["ramp"], VIEW_SIZE, what)
    half = VIEW_SIZE // 2
    out["flipped"] = (ramp[..., half:].mean((1, 2, 3)) < ramp[..., :half].mean((1, 2, 3))).astype(np.float64)
    out["bright"] = _apply(small, images["bright"], CONSTANT_SIZE, what).mean((1, 2, 3))
    out["colour"] = _apply(small, images["colour"], CONSTANT_SIZE, what).mean((2, 3))  # (N, 3): one colour each
    out["dim"] = _apply(small, images["dim"], CONSTANT_SIZE, what).mean((1, 2, 3)) / 0.30
    return {f"{key}_{view}": value for key, value in out.items()}


def probe_augment(byol_augment, args):
    torch.manual_seed(int(args["seed"]))
    out = {}
    for view in (1, 2):
        out.update(view_statistics(byol_augment(VIEW_SIZE, view=view), byol_augment(CONSTANT_SIZE, view=view), view))
    return out


BLURRED = 0.6  # sharpness below this: blurred (sigma above about 0.6 with the 3-tap kernel of 32 px views)


def _rates(ev, view):
    colour = ev.get("views", f"colour_{view}")
    gray = np.abs(colour - colour.mean(1, keepdims=True)).max(1) < 1e-4
    jittered = ~gray & (np.abs(colour - np.array([0.30, 0.20, 0.10])).max(1) > 1e-4)
    spread = colour.max(1) - colour.min(1)
    return {"blur": float(np.mean(ev.get("views", f"sharpness_{view}") < BLURRED)),
            "solarize": float(np.mean(ev.get("views", f"bright_{view}") < 0.5)),
            "flip": float(np.mean(ev.get("views", f"flipped_{view}"))),
            "gray": float(np.mean(gray)),
            "jitter": float(np.mean(jittered[~gray])) if np.any(~gray) else 0.0,
            "strength": float(np.var(np.log(spread[jittered] / 0.2))) if np.sum(jittered) > 10 else np.nan,
            "brightness": np.quantile(ev.get("views", f"dim_{view}")[np.abs(ev.get("views", f"dim_{view}") - 1) > 1e-4],
                                      [0.01, 0.99]) if np.sum(np.abs(ev.get("views", f"dim_{view}") - 1) > 1e-4) > 10
            else np.array([1.0, 1.0])}


# Expected under Table 6 (measured on labkit's reference over 30 seeds, mean and range): blur detected 0.70 (0.65-0.75)
# in view 1 and 0.07 (0.04-0.10) in view 2, solarized 0 / 0.20 (0.18-0.22), flipped 0.49 (0.45-0.57), grayscale 0.20,
# jitter among colour images 0.80 (0.78-0.83), log-variance of the colour spread 0.129 (0.117-0.139; the seed's
# saturation 0.4 gives 0.172, 0.155-0.186). The bands sit about four standard deviations from the expected values.
BANDS = {"blur": ((0.60, 0.80), (0.015, 0.14)), "solarize": ((0.0, 0.01), (0.16, 0.24)),
         "flip": (0.38, 0.62), "gray": (0.16, 0.24), "jitter": (0.75, 0.85), "strength": (0.10, 0.147)}


def _inside(value, band):
    return band[0] <= value <= band[1]


def _augment_blur(ev):
    r1, r2 = _rates(ev, 1)["blur"], _rates(ev, 2)["blur"]
    if _inside(r1, BANDS["blur"][0]) and _inside(r2, BANDS["blur"][1]):
        return None
    if abs(r1 - r2) < 0.15:
        return (f"both views are blurred about equally often ({r1:.0%} and {r2:.0%} of the images look blurred): "
                "Table 6 is asymmetric, blur with probability 1.0 in view 1 and 0.1 in view 2 (the seed used 0.5 "
                "for both)")
    return (f"{r1:.0%} of view 1 and {r2:.0%} of view 2 look blurred; with Table 6's probabilities (1.0 and 0.1, "
            "sigma 0.1 to 2, a kernel of about 10% of the side) about 70% and 7% do")


def _augment_solarize(ev):
    r1, r2 = _rates(ev, 1)["solarize"], _rates(ev, 2)["solarize"]
    if _inside(r1, BANDS["solarize"][0]) and _inside(r2, BANDS["solarize"][1]):
        return None
    return (f"{r1:.0%} of view 1 and {r2:.0%} of view 2 were solarized; Table 6 solarizes view 2 only, with "
            "probability 0.2 (pixels >= 0.5 become 1 - x), and never view 1")


def _augment_shared(ev):
    for view in (1, 2):
        r = _rates(ev, view)
        if not _inside(r["flip"], BANDS["flip"]):
            return f"{r['flip']:.0%} of view {view} was flipped left-right: flip each image with probability 0.5"
        if not _inside(r["gray"], BANDS["gray"]):
            return f"{r['gray']:.0%} of view {view} was turned to grayscale: Table 6 uses probability 0.2 in both views"
    return None


def _augment_jitter(ev):
    for view in (1, 2):
        r = _rates(ev, view)
        if not _inside(r["jitter"], BANDS["jitter"]):
            return (f"colour jitter changed {r['jitter']:.0%} of the (non-gray) images of view {view}: apply it with "
                    "probability 0.8")
        low, high = r["brightness"]
        if not (0.55 <= low <= 0.68 and 1.32 <= high <= 1.45):
            return (f"brightness factors of view {view} range from {low:.2f} to {high:.2f}: Table 6's brightness 0.4 "
                    "draws them from [0.6, 1.4]")
        if view == 1 and not _inside(r["strength"], BANDS["strength"]):
            return ("the colour jitter changes colours more (or less) than Table 6's: brightness 0.4, contrast 0.4, "
                    "saturation 0.2, hue 0.1 (the seed used saturation 0.4)")
    return None


def _augment_per_image(ev):
    distinct = [float(ev.get("views", f"distinct_{view}")) for view in (1, 2)]
    if min(distinct) > 0.9:
        return None
    return ("copies of one image in a batch came out identical: every image needs its own random draws (a "
            "torchvision transform applied to a whole batch draws once for all of them); use labkit.augment's "
            "batched transforms")


def _augment_gate(ev):
    for view in (1, 2):
        if ev.get("views", f"sharpness_{view}").size != N_CHECKER:
            return "byol_augment(size, view) should return a transform t(x) that maps a batch to a batch of views"
    return None


AUGMENT = Exercise(
    grade_id="byol_augment_test",
    function="byol_augment",
    cases=augment_cases,
    probe=probe_augment,
    checks=[kit.holds(0.75, _augment_blur), kit.holds(0.75, _augment_solarize), kit.holds(0.5, _augment_shared),
            kit.holds(0.5, _augment_jitter), kit.holds(0.5, _augment_per_image)],
    forbidden=("labkit.augment.byol_augment",),
    gate=kit.holds(0, _augment_gate),
    mistakes=(
        Example("the seed's two identical pipelines", """\
def byol_augment(size, view=1):
    # Mistake (the seed's): both views get the same pipeline, blur 0.5, no solarization, saturation 0.4.
    return augment.Compose([
        augment.RandomResizedCrop(size, scale=(0.2, 1.0)),
        augment.RandomHorizontalFlip(0.5),
        augment.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, p=0.8),
        augment.RandomGrayscale(0.2),
        augment.GaussianBlur(int(0.1 * size) // 2 * 2 + 1, sigma=(0.1, 2.0), p=0.5),
    ])
""", share=1 / 3, message="Table 6 is asymmetric", demo=True),
        Example("solarization in the wrong view", """\
def byol_augment(size, view=1):
    # Mistake: the solarization probabilities are swapped between the views.
    return augment.Compose([
        augment.RandomResizedCrop(size, scale=(0.08, 1.0)),
        augment.RandomHorizontalFlip(0.5),
        augment.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, p=0.8),
        augment.RandomGrayscale(0.2),
        augment.GaussianBlur(int(0.1 * size) // 2 * 2 + 1, sigma=(0.1, 2.0), p=1.0 if view == 1 else 0.1),
        augment.RandomSolarize(0.5, p=0.2 if view == 1 else 0.0),
    ])
""", share=2.25 / 3, message="solarizes view 2 only"),
    ),
    hostile=(
        Example("labkit's preset", """\
def byol_augment(size, view=1):
    return augment.byol_augment(size, view)
""", share=0.0, message="labkit.augment.byol_augment"),
    ),
)


# ---------------------------------------------------------------------------- update_target

def _net(seed: int) -> torch.nn.Module:
    """A seeded network with BatchNorm whose running statistics are far from a fresh layer's."""
    g = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
        net[1].running_mean.copy_(torch.randn(6, generator=g))
        net[1].running_var.copy_(torch.rand(6, generator=g) + 0.5)
        net[1].num_batches_tracked.fill_(int(torch.randint(1, 100, (1,), generator=g)))
    return net


def _flat(tensors) -> np.ndarray:
    return np.concatenate([t.detach().double().flatten().numpy() for t in tensors])


def target_cases(rng: np.random.Generator):
    seeds = rng.integers(0, 10_000, 2)
    return {f"tau_{name}": {"target_seed": np.array(int(seeds[0])), "online_seed": np.array(int(seeds[1])),
                            "tau": np.array(tau)} for name, tau in (("0.9", 0.9), ("0.99", 0.99), ("0", 0.0))}


def probe_target(update_target, args):
    target, online = _net(int(args["target_seed"])), _net(int(args["online_seed"]))
    target.requires_grad_(False)
    update_target(target, online, float(args["tau"]))
    floats = [b for b in target.buffers() if b.is_floating_point()]
    return {"params": _flat(target.parameters()), "buffers": _flat(floats),
            "online": np.concatenate([_flat(online.parameters()), _flat(b for b in online.buffers() if b.is_floating_point())])}


def _ema(a, part: str, tau=None):
    tau = float(a["tau"]) if tau is None else tau
    target, online = _net(int(a["target_seed"])), _net(int(a["online_seed"]))
    pick = (lambda n: list(n.parameters())) if part == "params" else (lambda n: [b for b in n.buffers() if b.is_floating_point()])
    return tau * _flat(pick(target)) + (1 - tau) * _flat(pick(online))


TARGET_CASES = ("tau_0.9", "tau_0.99", "tau_0")


def _target_buffers(ev):
    for case in TARGET_CASES:
        a, got = ev.inputs[case], ev.get(case, "buffers")
        if kit.close(got, _ema(a, "buffers"), rtol=1e-5, atol=1e-6):
            continue
        if float(a["tau"]) > 0 and kit.close(got, _ema(a, "buffers", tau=1.0)):
            return ("BatchNorm's running statistics (the buffers) were left as they were: the target's running mean "
                    "and variance should follow the same moving average as its weights (loop over target.buffers() "
                    "too); otherwise the target in eval mode normalizes with statistics that belong to no network")
        return "the BatchNorm buffers should become tau * target + (1 - tau) * online, as the parameters do"
    return None


def _online_untouched(ev):
    for case in TARGET_CASES:
        a = ev.inputs[case]
        online = _net(int(a["online_seed"]))
        want = np.concatenate([_flat(online.parameters()), _flat(b for b in online.buffers() if b.is_floating_point())])
        if not kit.close(ev.get(case, "online"), want, rtol=0, atol=0):
            return "the online network changed: update_target may only write to the target"
    return None


def _target_gate(ev):
    if all(kit.close(ev.get(case, "params"), _ema(ev.inputs[case], "params", tau=1.0)) for case in TARGET_CASES):
        return "the target's parameters did not change: update them in place (under torch.no_grad())"
    return None


TARGET = Exercise(
    grade_id="update_target_test",
    function="update_target",
    cases=target_cases,
    probe=probe_target,
    checks=[kit.matches(1.0, "params", lambda a: _ema(a, "params"), cases=TARGET_CASES, rtol=1e-5, atol=1e-6,
                        variants=[(lambda a: _ema(a, "params", tau=1 - float(a["tau"])),
                                   "tau and 1 - tau are swapped: tau weights the TARGET, xi <- tau * xi + (1 - tau) * "
                                   "theta, so that with tau near 1 the target moves slowly")],
                        hint="every target parameter should become tau * target + (1 - tau) * online"),
            kit.holds(0.75, _target_buffers), kit.holds(0.25, _online_untouched)],
    forbidden=("labkit.training.ema_update",),
    gate=kit.holds(0, _target_gate),
    mistakes=(
        Example("the seed's EMA: parameters only", """\
def update_target(target, online, tau):
    # Mistake (the seed's): BatchNorm's running statistics are skipped.
    for online_params, target_params in zip(online.parameters(), target.parameters()):
        target_params.data = tau * target_params.data + (1 - tau) * online_params.data
""", share=1.25 / 2, message="BatchNorm's running statistics", demo=True),
        Example("tau on the wrong side", """\
def update_target(target, online, tau):
    # Mistake: tau weights the online network.
    with torch.no_grad():
        for t, o in zip([*target.parameters(), *target.buffers()], [*online.parameters(), *online.buffers()]):
            if t.is_floating_point():
                t.copy_((1 - tau) * t + tau * o)
""", share=0.25 / 2, message="swapped"),
    ),
    solutions=(
        Example("lerp over the state dicts", """\
def update_target(target, online, tau):
    with torch.no_grad():
        online_state = online.state_dict()
        for name, t in target.state_dict().items():
            if t.is_floating_point():
                t.lerp_(online_state[name], 1 - tau)
            else:
                t.copy_(online_state[name])
""", share=1.0),
    ),
    hostile=(
        Example("labkit's ema_update", """\
from labkit import training

def update_target(target, online, tau):
    training.ema_update(target, online, tau)
""", share=0.0, message="labkit.training.ema_update"),
    ),
)


# ---------------------------------------------------------------------------- cosine_tau

TAU_STEPS = (0, 1, 10, 25, 50, 75, 99, 100)


def tau_cases(rng: np.random.Generator):
    total = int(rng.integers(100, 1000))
    steps = np.array([round(s * total / 100) for s in TAU_STEPS])
    return {"long": {"steps": steps, "total": np.array(total), "base": np.array(0.996)},
            "short": {"steps": steps, "total": np.array(total), "base": np.array(0.97)}}


def probe_tau(cosine_tau, args):
    values = []
    for step in args["steps"]:
        value = cosine_tau(int(step), int(args["total"]), base=float(args["base"]))
        if isinstance(value, torch.Tensor):
            value = kit.scalar(value, "tau")
        elif not isinstance(value, (int, float, np.floating, np.integer)) or isinstance(value, bool):
            raise TypeError(f"cosine_tau should return a number, got {type(value).__name__}")
        values.append(float(value))
    return {"tau": np.array(values)}


def _tau(a, shape):
    k, total, base = a["steps"].astype(np.float64), float(a["total"]), float(a["base"])
    return 1 - (1 - base) * shape(k / total)


TAU = Exercise(
    grade_id="cosine_tau_test",
    function="cosine_tau",
    cases=tau_cases,
    probe=probe_tau,
    checks=[kit.matches(1.0, "tau", lambda a: _tau(a, lambda u: (np.cos(np.pi * u) + 1) / 2), cases=("long", "short"),
                        rtol=1e-6, atol=1e-7,
                        variants=[(lambda a: _tau(a, lambda u: (1 - np.cos(np.pi * u)) / 2),
                                   "the schedule runs backwards: tau should start at base (step 0) and rise to 1 at "
                                   "the last step"),
                                  (lambda a: _tau(a, lambda u: 1 - u),
                                   "tau rises on a straight line: BYOL's schedule follows a half cosine, "
                                   "(cos(pi k / K) + 1) / 2"),
                                  (lambda a: _tau(a, lambda u: np.cos(np.pi * u)),
                                   "the cosine is not shifted and halved: use (cos(pi k / K) + 1) / 2, which goes "
                                   "from 1 to 0")],
                        hint="tau should be 1 - (1 - base) * (cos(pi * step / total_steps) + 1) / 2")],
    forbidden=("labkit.training.cosine_tau",),
    gate=kit.varies("tau", cases=("long", "short"), hint="tau should depend on the step and the base"),
    mistakes=(
        Example("the schedule backwards", """\
def cosine_tau(step, total_steps, base=0.996):
    # Mistake: starts at 1 and falls to base.
    return 1 - (1 - base) * (1 - math.cos(math.pi * step / total_steps)) / 2
""", share=0.0, message="runs backwards", demo=True),
    ),
    hostile=(
        Example("labkit's cosine_tau", """\
from labkit import training

def cosine_tau(step, total_steps, base=0.996):
    return training.cosine_tau(step, total_steps, base)
""", share=0.0, message="labkit.training.cosine_tau"),
    ),
)


# ---------------------------------------------------------------------------- byol_step

STEP_BATCH = 12


class _Recorder(torch.nn.Module):
    """A small seeded network (no BatchNorm: one call on both views equals two calls) that keeps what it saw."""

    def __init__(self, seed: int, image: bool):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, 2, 3) if image else None
        self.fc = torch.nn.Linear(2 * 6 * 6 if image else 8, 8)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        self.inputs, self.outputs = [], []

    def forward(self, x):
        h = torch.relu(self.conv(x)).flatten(1) if self.conv is not None else x  # (B, 72) or (B, 8): no pooling,
        # so that different images get clearly different outputs
        out = self.fc(h)
        self.inputs.append(x.detach().clone())
        self.outputs.append(out.detach().clone())
        return out


def _networks(seed: int):
    """online (encoder + projector), predictor, target: images (B, 3, 8, 8) -> (B, 8)."""
    return _Recorder(seed, True), _Recorder(seed + 1, False), _Recorder(seed + 2, True)


def step_cases(rng: np.random.Generator):
    # Two unrelated batches: the probe's small networks would give two close views almost the same outputs, and
    # pairing a prediction with the wrong view must change the loss visibly.
    x1, x2 = rng.uniform(0, 1, (STEP_BATCH, 3, 8, 8)), rng.uniform(0, 1, (STEP_BATCH, 3, 8, 8))
    return {"batch": {"x1": x1.astype(F32), "x2": x2.astype(F32), "seed": np.array(int(rng.integers(10_000)))}}


def _grads(module):
    return np.array([float(p.grad.abs().sum()) if p.grad is not None else 0.0 for p in module.parameters()])


def probe_step(byol_step, args):
    online, predictor, target = _networks(int(args["seed"]))
    loss = byol_step(online, predictor, target, tensor(args["x1"]), tensor(args["x2"]))
    out = {"loss": kit.scalar(loss, "the loss")}
    if isinstance(loss, torch.Tensor) and loss.requires_grad:
        loss.backward()
    out.update(grad_online=_grads(online), grad_predictor=_grads(predictor), grad_target=_grads(target))
    for name, net in (("online", online), ("target", target)):
        out[f"{name}_inputs"] = (to_numpy(torch.cat(net.inputs), "the inputs") if net.inputs
                                 else np.zeros((0, 3, 8, 8)))
    return out


def _outputs(a):
    """What the seeded networks give for each view, in float64: p1, p2 (online + predictor), o1, o2 (online), t1, t2."""
    online, predictor, target = _networks(int(a["seed"]))
    x1, x2 = torch.from_numpy(a["x1"]), torch.from_numpy(a["x2"])
    with torch.no_grad():
        o1, o2 = online(x1), online(x2)
        p1, p2 = predictor(o1), predictor(o2)
        t1, t2 = target(x1), target(x2)
    return {k: v.double().numpy() for k, v in dict(p1=p1, p2=p2, o1=o1, o2=o2, t1=t1, t2=t2).items()}


def _cosine_loss(p, z):
    return np.mean(2 - 2 * (_unit(p) * _unit(z)).sum(1))


def step_reference(a):
    o = _outputs(a)
    return _cosine_loss(o["p1"], o["t2"]) + _cosine_loss(o["p2"], o["t1"])


STEP_VARIANTS = [
    (lambda a: (lambda o: 0.5 * (np.mean((o["p1"] - o["o2"]) ** 2) + np.mean((o["p2"] - o["o1"]) ** 2)))(_outputs(a)),
     "this is the seed's step: both terms regress online outputs, so the target network never enters the loss (and "
     "the MSE is unnormalized); regress each prediction on the TARGET's projection of the other view"),
    (lambda a: (lambda o: _cosine_loss(o["p1"], o["o2"]) + _cosine_loss(o["p2"], o["o1"]))(_outputs(a)),
     "the regression targets are the online network's projections: they should come from the target network, "
     "target(x2) for p1 and target(x1) for p2"),
    (lambda a: (lambda o: _cosine_loss(o["p1"], o["t2"]))(_outputs(a)),
     "only one direction: BYOL's loss is symmetric, byol_loss(p1, z2) + byol_loss(p2, z1)"),
    (lambda a: (lambda o: _cosine_loss(o["p1"], o["t1"]) + _cosine_loss(o["p2"], o["t2"]))(_outputs(a)),
     "each prediction is compared with the target's projection of the SAME view: pair view 1's prediction with "
     "view 2's target projection and the other way round"),
    (lambda a: 0.5 * step_reference(a),
     "the two terms are averaged: add them, byol_loss(p1, z2) + byol_loss(p2, z1)"),
]


def _seen(ev, net):
    """Which of the two views (by the rows as given) the network was called on: (saw x1, saw x2)."""
    a, seen = ev.inputs["batch"], ev.get("batch", f"{net}_inputs")
    flat = seen.reshape(-1, *a["x1"].shape[1:])

    def contains(x):
        return any(len(flat) >= start + len(x) and np.allclose(flat[start:start + len(x)], x, atol=1e-6)
                   for start in range(0, len(flat) - len(x) + 1, len(x)))
    return contains(a["x1"]), contains(a["x2"])


def _step_target_views(ev):
    saw1, saw2 = _seen(ev, "target")
    if saw1 and saw2:
        return None
    if not (saw1 or saw2):
        return ("the target network is never called: BYOL regresses the online prediction of one view on the "
                "target's projection of the other; call target(x1) and target(x2)")
    return "the target network should see both views (the loss is symmetric): target(x1) and target(x2)"


def _step_no_target_grad(ev):
    if not any(_seen(ev, "target")):
        return "the target network is never called (so there is no target side to protect)"
    if np.all(ev.get("batch", "grad_target") == 0):
        return None
    return ("a gradient reaches the target network: compute its projections under torch.no_grad() (or detach "
            "them); the target is updated only by the moving average")


def _step_online_grads(ev):
    if np.all(ev.get("batch", "grad_online") > 0) and np.all(ev.get("batch", "grad_predictor") > 0):
        return None
    return ("no gradient reaches every parameter of the online network and the predictor: return the loss as a "
            "tensor, with no torch.no_grad() or .detach() on the online side")


def _step_gate(ev):
    if not any(_seen(ev, "online")):
        return ("the online network was not called on the views as given (x1 and x2, row i of each a view of the "
                "same image i)")
    if not np.isfinite(ev.get("batch", "loss")):
        return "the loss should be a finite number"
    return None


STEP = Exercise(
    grade_id="byol_step_test",
    function="byol_step",
    cases=step_cases,
    probe=probe_step,
    checks=[kit.matches(1.25, "loss", step_reference, cases=("batch",), variants=STEP_VARIANTS, rtol=1e-4, atol=1e-5,
                        hint="the loss should be byol_loss(predictor(online(x1)), target(x2)) + "
                             "byol_loss(predictor(online(x2)), target(x1))"),
            kit.holds(0.5, _step_target_views), kit.holds(0.5, _step_no_target_grad),
            kit.holds(0.75, _step_online_grads)],
    forbidden=("labkit.losses.byol_loss", "labkit.training.byol_step"),
    gate=kit.holds(0, _step_gate),
    mistakes=(
        Example("the seed's step: no target in the loss", """\
def byol_step(online, predictor, target, x1, x2):
    # Mistake (the seed's BYOL.forward and loss): the target network is never used.
    z1, z2 = online(x1), online(x2)
    p1, p2 = predictor(z1), predictor(z2)
    z2, p2 = z2.detach(), p2.detach()
    return 0.5 * (F.mse_loss(p1, z2) + F.mse_loss(p2, z1))
""", share=0.75 / 3, message="target network never enters the loss", demo=True),
        Example("a gradient into the target", """\
def byol_step(online, predictor, target, x1, x2):
    # Mistake: the cosine is written out without a stop-gradient, so the target gets gradients too.
    p1, p2 = predictor(online(x1)), predictor(online(x2))
    z1, z2 = target(x1), target(x2)
    return (2 - 2 * F.cosine_similarity(p1, z2)).mean() + (2 - 2 * F.cosine_similarity(p2, z1)).mean()
""", share=2.5 / 3, message="a gradient reaches the target network"),
        Example("one direction only", """\
def byol_step(online, predictor, target, x1, x2):
    # Mistake: only view 1 predicts view 2.
    with torch.no_grad():
        z2 = target(x2)
    return byol_loss(predictor(online(x1)), z2)
""", share=1.25 / 3, message="only one direction"),
        Example("each view regressed on itself", """\
def byol_step(online, predictor, target, x1, x2):
    # Mistake: the prediction of a view is compared with the target's projection of the same view.
    p1, p2 = predictor(online(x1)), predictor(online(x2))
    with torch.no_grad():
        z1, z2 = target(x1), target(x2)
    return byol_loss(p1, z1) + byol_loss(p2, z2)
""", share=1.75 / 3, message="SAME view"),
    ),
    solutions=(
        Example("both views in one batch", """\
def byol_step(online, predictor, target, x1, x2):
    n = len(x1)
    p = predictor(online(torch.cat([x1, x2])))
    with torch.no_grad():
        z = target(torch.cat([x1, x2]))
    return byol_loss(p[:n], z[n:]) + byol_loss(p[n:], z[:n])
""", share=1.0),
    ),
    hostile=(
        Example("labkit's byol_step", """\
from labkit import training

def byol_step(online, predictor, target, x1, x2):
    return training.byol_step(online, predictor, target, x1, x2)
""", share=0.0),
    ),
)

# The notebook's cells that train, print or plot for the reader (no module state but torch's seed): the scoring child
# skips each unless a cell it runs reads what it binds (autograder/exercises/README.md).
EXPERIMENTS = ("config", "data", "baseline", "show_views", "plot_tau", "pretrain", "ablations", "results")
EXERCISES = [LOSS, AUGMENT, TARGET, TAU, STEP]
