"""Lab 2 (SimCLR), part 1 on MNIST: the cutout-and-rotate view, the InfoNCE logits and NT-Xent.

References: ``labkit.augment.cutout_and_rotate`` (the view; graded by its properties, since its draws are
random) and ``labkit.losses.contrastive_loss`` (NT-Xent). The seeds' bugs are the mistakes caught here
(../shared/seeds/README.md): seed 001 draws ONE cutout position for the whole tensor and fills 255/2 whatever
the data's scale; seed 000's ``nt_xent_loss`` takes each view's similarity with itself as the positive, leaves the
true positive among the negatives and never normalizes the rows. NT-Xent's cases, probe and known-wrong variants
are lab 4's (the same loss under another name).
"""
from __future__ import annotations

import numpy as np
import torch

from labkit.checks.common import global_bound
from labkit.checks.lab2_simclr import IdentityJitter

from . import kit
from .kit import Example, Exercise
from .kit import tensor, to_numpy
from .lab4_representations import (CONTRASTIVE_MISTAKES, NT_XENT_GATE, contrastive_cases, contrastive_reference,
                                   nt_xent_checks, probe_contrastive)

F32 = np.float32
SQUARE, FILL = 9, 0.5


# ---------------------------------------------------------------------------- cutout_and_rotate

def cutout_cases(rng: np.random.Generator):
    def images(n, side):
        x = rng.uniform(0, 1, (n, 1, side, side))
        x[np.abs(x - FILL) < 1e-3] += 0.01  # no pixel is mid-gray already: the square is visible exactly
        return x.astype(F32)

    return {"mnist": {"images": images(256, 28)}, "other_size": {"images": images(64, 24)}}


def probe_cutout(cutout_and_rotate, args):
    x = tensor(args["images"])
    first = to_numpy(cutout_and_rotate(x.clone()), "the augmented images")
    second = to_numpy(cutout_and_rotate(x.clone()), "the augmented images")
    third = to_numpy(cutout_and_rotate(x.clone()), "the augmented images")
    return {"first": first, "second": second, "third": third}


def _unturned(out: np.ndarray, turns: int) -> np.ndarray:
    return np.rot90(out, -turns, axes=(-2, -1))


def _squares(out: np.ndarray, x: np.ndarray, turns: int = 1, fill: float = FILL):
    """Per image, the top-left corner of the one SQUARE x SQUARE patch of ``fill`` that turning ``out`` back by
    ``turns`` quarter turns shows (everything else unchanged), or None: ``[(row, col) or None, ...]``."""
    if out.shape[:2] != x.shape[:2] or out.shape[-2:] != x.shape[-1:-3:-1] or not np.all(np.isfinite(out)):
        return [None] * len(x)
    back = _unturned(out, turns)
    if back.shape != x.shape:
        return [None] * len(x)
    found = []
    for image, original in zip(back[:, 0], x[:, 0]):
        changed = np.argwhere(np.abs(image - original) > 1e-6)
        if len(changed) != SQUARE * SQUARE:
            found.append(None)
            continue
        (r, c), (r2, c2) = changed.min(0), changed.max(0)
        square = image[r:r + SQUARE, c:c + SQUARE]
        ok = r2 - r == SQUARE - 1 and c2 - c == SQUARE - 1 and np.allclose(square, fill, atol=1e-6)
        found.append((int(r), int(c)) if ok else None)
    return found


def _changed_corner(out: np.ndarray, x: np.ndarray):
    """Per image, the top-left corner of the pixels that differ from the input after the best of the four
    turns back (None when nothing changed): where a cutout was put, whatever its fill."""
    best = None
    for turns in range(4):
        back = _unturned(out, turns) if out.ndim == 4 else out
        if back.shape != x.shape:
            continue
        same = np.mean(np.abs(back - x) <= 1e-6)
        if best is None or same > best[0]:
            best = (same, back)
    if best is None:
        return [None] * len(x), 0.0
    corners = []
    for image, original in zip(best[1][:, 0], x[:, 0]):
        changed = np.argwhere(~(np.abs(image - original) <= 1e-6))
        corners.append(tuple(int(v) for v in changed.min(0)) if len(changed) else None)
    return corners, float(best[0])


def _cutout_pattern(case: str):
    def run(ev):
        x, out = ev.inputs[case]["images"].astype(np.float64), ev.get(case, "first")
        side = x.shape[-1]
        if _ok(_squares(out, x)):
            return None
        where = f" (on {side}x{side} images)" if case != "mnist" else ""
        if out.shape != x.shape:
            return f"the output should have the input's shape {tuple(x.shape)}; got {kit.describe_shape(out)}"
        if _ok(_squares(out, x, turns=0)):
            return "the square is there but the image is not rotated: turn it by 90 degrees, torch.rot90(x, 1, dims=(-2, -1))"
        if _ok(_squares(out, x, turns=3)):
            return "the image is rotated the other way: torch.rot90(x, 1, dims=(-2, -1)) turns it counter-clockwise"
        if _ok(_squares(out, x, fill=255 / 2)):
            return ("the square is filled with 255/2 = 127.5, mid-gray only for pixels in 0..255 (the seed's data); "
                    "these images are in [0, 1], so mid-gray is 0.5")
        if case != "mnist":
            return (f"on {side}x{side} images the output is not the image with one whole 9x9 mid-gray square, "
                    "rotated: draw positions from the images' own height and width, not from 28")
        return ("each output should be its input with one whole 9x9 square set to 0.5 (mid-gray), then rotated by "
                f"90 degrees counter-clockwise{where}")
    return run


def _ok(squares) -> bool:
    return all(s is not None for s in squares)


def _cutout_per_image(ev):
    x, out = ev.inputs["mnist"]["images"].astype(np.float64), ev.get("mnist", "first")
    corners, _ = _changed_corner(out, x)
    distinct = len({c for c in corners if c is not None})
    if distinct >= len(x) // 4:
        return None
    return (f"the {len(x)} images of one batch got only {distinct} cutout position(s): draw a position per image "
            "(one torch.randint per image, or a (B,) tensor of positions), not one for the whole batch")


def _cutout_per_call(ev):
    x = ev.inputs["mnist"]["images"].astype(np.float64)
    first, _ = _changed_corner(ev.get("mnist", "first"), x)
    for later in ("second", "third"):  # two chances: one draw per call repeats with probability 1/400
        again, _ = _changed_corner(ev.get("mnist", later), x)
        moved = np.mean([a is not None and b is not None and a != b for a, b in zip(first, again)])
        if moved >= 0.5:
            return None
    return ("two calls on the same images put the squares in the same places: draw fresh positions on every call "
            "(every training step sees new views)")


def _cutout_gate(ev):
    """The output is the input, turned, with a part of each image changed: not a constant, noise, or the input."""
    x = ev.inputs["mnist"]["images"].astype(np.float64)
    for key in ("first", "second"):
        out = ev.get("mnist", key)
        corners, agreement = _changed_corner(out, x)
        if not np.all(np.isfinite(out)) or agreement < 0.5 or any(c is None for c in corners):
            return "the output is not the input images with a patch of each one changed"
    return None


CUTOUT = Exercise(
    grade_id="cutout_and_rotate_test",
    function="cutout_and_rotate",
    cases=cutout_cases,
    probe=probe_cutout,
    checks=[kit.holds(1.5, _cutout_pattern("mnist")), kit.holds(1.0, _cutout_per_image),
            kit.holds(1.0, _cutout_per_call), kit.holds(0.5, _cutout_pattern("other_size"))],
    forbidden=("labkit.augment.cutout_and_rotate",),
    gate=kit.holds(0, _cutout_gate),
    mistakes=(
        Example("one cutout position for the whole batch (the seed's)", """\
def cutout_and_rotate(images, generator=None):
    # Mistake: one position is drawn for the whole batch, so every image loses the same square.
    out = images.clone()
    top = int(torch.randint(0, images.shape[-2] - 8, (1,), generator=generator))
    left = int(torch.randint(0, images.shape[-1] - 8, (1,), generator=generator))
    out[..., top:top + 9, left:left + 9] = 0.5
    return torch.rot90(out, 1, dims=(-2, -1))
""", share=3 / 4, message="only 1 cutout position", demo=True),
        Example("filled with 255/2 on [0, 1] images", """\
def cutout_and_rotate(images, generator=None):
    # Mistake: the seed's fill, 255/2, on images in [0, 1].
    B, _, H, W = images.shape
    top = torch.randint(0, H - 8, (B, 1, 1), generator=generator)
    left = torch.randint(0, W - 8, (B, 1, 1), generator=generator)
    rows, cols = torch.arange(H).view(1, H, 1), torch.arange(W).view(1, 1, W)
    inside = (rows >= top) & (rows < top + 9) & (cols >= left) & (cols < left + 9)
    return torch.rot90(images.masked_fill(inside.unsqueeze(1), 255 / 2), 1, dims=(-2, -1))
""", share=2 / 4, message="255/2"),
        Example("no rotation", """\
def cutout_and_rotate(images, generator=None):
    # Mistake: the cutout is there, the rotation is not.
    out = images.clone()
    H, W = images.shape[-2:]
    for i in range(len(images)):
        top, left = torch.randint(0, H - 8, (2,), generator=generator).tolist()
        out[i, :, top:top + 9, left:left + 9] = 0.5
    return out
""", share=2 / 4, message="not rotated"),
    ),
    solutions=(
        Example("a loop over the images", """\
def cutout_and_rotate(images, generator=None):
    out = images.clone()
    H, W = images.shape[-2:]
    for i in range(len(images)):
        top = int(torch.randint(0, H - 9 + 1, (1,), generator=generator))
        left = int(torch.randint(0, W - 9 + 1, (1,), generator=generator))
        out[i, :, top:top + 9, left:left + 9] = 0.5
    return torch.rot90(out, 1, dims=(-2, -1))
""", share=1.0),
    ),
    hostile=(
        Example("labkit's reference", """\
from labkit import augment

def cutout_and_rotate(images, generator=None):
    return augment.cutout_and_rotate(images, generator=generator)
""", share=0.0, message="labkit.augment.cutout_and_rotate"),
    ),
)


# ---------------------------------------------------------------------------- info_nce_logits

def logits_cases(rng: np.random.Generator):
    cases = contrastive_cases(rng)
    return {name: cases[name] for name in ("n5", "n6")}


def probe_logits(info_nce_logits, args):
    z1, z2 = tensor(args["z1"]), tensor(args["z2"])
    return {"logits": to_numpy(info_nce_logits(z1, z2, float(args["temperature"])), "the logits")}


def _similarities(a, normalize=True):
    z = np.concatenate([a["z1"], a["z2"]]).astype(np.float64)  # (2N, D)
    if normalize:
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
    return z @ z.T / float(a["temperature"])  # (2N, 2N)


def _reference_logits(a, normalize=True):
    """(2N, 2N - 1): column 0 the positive, then the 2N - 2 negatives sorted (their order does not matter)."""
    sim = _similarities(a, normalize)
    n2 = len(sim)
    rows = []
    for i in range(n2):
        partner = (i + n2 // 2) % n2
        negatives = [k for k in range(n2) if k not in (i, partner)]
        rows.append(np.concatenate([[sim[i, partner]], np.sort(sim[i, negatives])]))
    return np.array(rows)


def _sorted_negatives(logits):
    return np.concatenate([logits[:, :1], np.sort(logits[:, 1:], axis=1)], axis=1)


def _logits_shape_message(got, a):
    n2 = 2 * len(a["z1"])
    if got.shape == (n2, n2):
        return (f"the logits are ({n2}, {n2}): drop the anchor's similarity with itself, and put the positive in "
                f"column 0 rather than among the negatives, for ({n2}, {n2 - 1})")
    return f"expected logits of shape ({n2}, {n2 - 1}) for N = {n2 // 2} pairs; got {kit.describe_shape(got)}"


def _logits_column(part: str):
    def run(ev):
        for case in ("n5", "n6"):
            got, a = ev.get(case, "logits"), ev.inputs[case]
            want = _reference_logits(a)
            if got.shape != want.shape:
                return _logits_shape_message(got, a)
            got = _sorted_negatives(got)
            cols = slice(0, 1) if part == "positive" else slice(1, None)
            if kit.close(got[:, cols], want[:, cols]):
                continue
            if kit.close(got[:, cols], _reference_logits(a, normalize=False)[:, cols]):
                return "the rows are not L2-normalized: the logits are cosine similarities divided by T"
            if part == "positive":
                if np.allclose(got[:, 0], np.diag(_similarities(a)), atol=1e-5):
                    return ("column 0 holds each view's similarity with itself (the diagonal): the positive of row i "
                            "is its other view, row i + N (mod 2N)")
                return "column 0 should hold each anchor's similarity with its other view, sim(i, i + N) / T"
            diagonal = np.diag(_similarities(a))[:, None]
            if np.any(np.abs(got[:, 1:] - diagonal) <= 1e-5):
                return "the anchor's similarity with itself is among the negatives: leave out k = i (and k = i + N)"
            return "columns 1.. should hold the anchor's 2N - 2 negatives, sim(i, k) / T for k not i and not i + N"
    return run


def _logits_cross_entropy(ev):
    for case in ("n5", "n6"):
        got = ev.get(case, "logits")
        if got.ndim != 2 or not np.all(np.isfinite(got)):
            return "the logits should be a finite (2N, 2N - 1) matrix"
        lse = got.max(1) + np.log(np.exp(got - got.max(1, keepdims=True)).sum(1))
        if not kit.close(np.mean(lse - got[:, 0]), contrastive_reference(ev.inputs[case])):
            return "F.cross_entropy(logits, zeros) on these logits is not NT-Xent"
    return None


def _logits_gate(ev):
    for case in ("n5", "n6"):
        got, a = ev.get(case, "logits"), ev.inputs[case]
        n2 = 2 * len(a["z1"])
        if got.shape != (n2, n2 - 1) or not np.all(np.isfinite(got)):
            return _logits_shape_message(got, a)
    return kit.varies("logits", cases=("n5", "n6"), hint="the logits do not depend on the inputs").run(ev)


LOGITS = Exercise(
    grade_id="info_nce_logits_test",
    function="info_nce_logits",
    cases=logits_cases,
    probe=probe_logits,
    checks=[kit.holds(1.0, _logits_column("positive")), kit.holds(1.0, _logits_column("negatives")),
            kit.holds(1.0, _logits_cross_entropy)],
    forbidden=("labkit.losses.contrastive_loss",),
    gate=kit.holds(0, _logits_gate),
    mistakes=(
        Example("self-similarity kept among the negatives", """\
def info_nce_logits(z1, z2, temperature):
    # Mistake: only the positive leaves the negatives; each anchor's similarity with itself stays.
    n = len(z1)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    partner = torch.arange(2 * n).roll(n)
    positive = sim[torch.arange(2 * n), partner].unsqueeze(1)
    keep = ~torch.eye(2 * n, dtype=torch.bool).roll(n, dims=1)
    return torch.cat([positive, sim[keep].view(2 * n, 2 * n - 1)[:, :-1]], dim=1)
""", share=1 / 3, message="itself is among the negatives", demo=True, self_check=True),
        Example("rows not normalized", """\
def info_nce_logits(z1, z2, temperature):
    # Mistake: dot products instead of cosine similarities.
    n = len(z1)
    z = torch.cat([z1, z2])
    sim = z @ z.T / temperature
    partner = torch.arange(2 * n).roll(n)
    positive = sim[torch.arange(2 * n), partner].unsqueeze(1)
    keep = ~(torch.eye(2 * n, dtype=torch.bool) | torch.eye(2 * n, dtype=torch.bool).roll(n, dims=1))
    return torch.cat([positive, sim[keep].view(2 * n, 2 * n - 2)], dim=1)
""", share=0.0, message="not L2-normalized"),
    ),
    hostile=(
        Example("NT-Xent from labkit, with made-up logits around it", """\
from labkit import losses

def info_nce_logits(z1, z2, temperature):
    loss = losses.contrastive_loss(z1, z2, temperature)
    n = len(z1)
    return torch.cat([-loss.expand(2 * n, 1), torch.zeros(2 * n, 2 * n - 2)], dim=1)
""", share=0.0, message="labkit.losses.contrastive_loss"),
    ),
)


# ---------------------------------------------------------------------------- nt_xent_loss

def _seed_000(a):
    """Seed 000's nt_xent_loss in float64: no normalization, the diagonal as the positive, every other entry
    (the true positive included) as a negative."""
    z = np.concatenate([a["z1"], a["z2"]]).astype(np.float64)
    sim = z @ z.T / float(a["temperature"])
    top = sim.max(1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(sim - top).sum(1))
    return np.float64(np.mean(lse - np.diag(sim)))


SEED_000_MESSAGE = ("this is the seed's nt_xent_loss: it takes each view's similarity with itself (the diagonal) as "
                    "the positive, so the true positive (row i + N) is left among the negatives, and it never "
                    "L2-normalizes the rows; the positive of view i is view i + N, and only k = i leaves the "
                    "denominator")


NT_XENT = Exercise(
    grade_id="nt_xent_loss_test",
    function="nt_xent_loss",
    cases=contrastive_cases,
    probe=probe_contrastive,
    checks=nt_xent_checks([(_seed_000, SEED_000_MESSAGE), *CONTRASTIVE_MISTAKES], ("z1", "z2")),
    forbidden=("labkit.losses.contrastive_loss",),
    gate=NT_XENT_GATE,
    solutions=(
        Example("seed 001's loss class (a (2N, 2N, D) cosine and a mask built for the batch size), wrapped", """\
class SimCLRLoss(nn.Module):
    def __init__(self, batch_size, temperature):
        super().__init__()
        self.batch_size, self.temperature = batch_size, temperature
        n = 2 * batch_size
        mask = torch.ones((n, n), dtype=bool).fill_diagonal_(0)
        for i in range(batch_size):
            mask[i, batch_size + i] = 0
            mask[batch_size + i, i] = 0
        self.mask = mask
        self.criterion = nn.CrossEntropyLoss(reduction="sum")
        self.similarity = nn.CosineSimilarity(dim=2)

    def forward(self, z_i, z_j):
        n = 2 * self.batch_size
        z = torch.cat((z_i, z_j), dim=0)
        sim = self.similarity(z.unsqueeze(1), z.unsqueeze(0)) / self.temperature
        positives = torch.cat((torch.diag(sim, self.batch_size), torch.diag(sim, -self.batch_size))).reshape(n, 1)
        negatives = sim[self.mask].reshape(n, -1)
        labels = torch.zeros(n, dtype=torch.long)
        return self.criterion(torch.cat((positives, negatives), dim=1), labels) / n


def nt_xent_loss(z1, z2, temperature=0.5):
    return SimCLRLoss(len(z1), temperature)(z1, z2)
""", share=1.0),
    ),
    mistakes=(
        Example("seed 000's nt_xent_loss, pasted", """\
def nt_xent_loss(z1, z2, temperature=0.5):
    # The seed's loss: no normalization, the diagonal (each view with itself) as the positive.
    z = torch.cat([z1, z2], dim=0)
    n = z.size(0)
    sim = torch.matmul(z, z.T) / temperature
    sim = sim - torch.max(sim, dim=1, keepdim=True)[0]
    sim = torch.exp(sim)
    mask = (torch.ones_like(sim) - torch.eye(n)).bool()
    pos = sim[range(n), range(n)]
    neg = sim[mask].reshape(n, -1)
    return (-torch.log(pos / (pos + neg.sum(dim=-1)))).mean()
""", share=1.5 / 6, message="similarity with itself (the diagonal)", demo=True),
        Example("projections not L2-normalized", """\
def nt_xent_loss(z1, z2, temperature=0.5):
    # Mistake: dot products instead of cosine similarities.
    n = len(z1)
    z = torch.cat([z1, z2]).float()
    logits = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    return F.cross_entropy(logits, torch.arange(2 * n).roll(n))
""", share=2.5 / 6, message="not L2-normalized"),
    ),
    hostile=(
        Example("labkit's reference", """\
from labkit.losses import contrastive_loss

def nt_xent_loss(z1, z2, temperature=0.5):
    return contrastive_loss(z1, z2, temperature)
""", share=0.0, message="labkit.losses.contrastive_loss"),
    ),
)


# ---------------------------------------------------------------------------- simclr_step

STEP_TEMPERATURE = 0.5


def step_cases(rng: np.random.Generator):
    x = rng.uniform(0, 1, (32, 1, 28, 28))
    x[np.abs(x - FILL) < 1e-3] += 0.01
    return {"batch": {"images": x.astype(F32), "seed": np.array(int(rng.integers(1000)))}}


def _seed_weights(module: torch.nn.Module, seed: int, scale: float) -> torch.nn.Module:
    """Set every parameter of ``module`` to ``scale`` x N(0, 1) draws from ``seed`` (the same net in parent and child)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return module


class _Recorder(torch.nn.Module):
    """A small seeded encoder that keeps every batch it is given and what it returned."""

    def __init__(self, seed: int):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, kernel_size=5)
        self.fc = torch.nn.Linear(4 * 12 * 12, 16)
        _seed_weights(self, seed, 0.2)
        self.inputs, self.outputs = [], []

    def forward(self, x):
        h = self.fc(torch.nn.functional.max_pool2d(torch.relu(self.conv(x)), 2).flatten(1))  # (B, 16)
        self.inputs.append(x.detach().clone())
        self.outputs.append(h.detach().clone())
        return h


def _recorded(encoder, what):
    if not encoder.inputs:
        return np.full((0, 1, 28, 28), np.nan), np.full((0, 16), np.nan)
    return (to_numpy(torch.cat(encoder.inputs), what), to_numpy(torch.cat(encoder.outputs), what))


def _own_loss(step, a: torch.Tensor, b: torch.Tensor, temperature: float) -> np.ndarray:
    """The student's own ``nt_xent_loss`` (looked up where their step function looks it up) on ``a`` and ``b``, or
    NaN: a step that calls it correctly is right even when that loss is wrong (the loss's exercise grades it)."""
    loss_fn = getattr(step, "__globals__", {}).get("nt_xent_loss")
    if not callable(loss_fn) or len(a) == 0:
        return np.array(np.nan)
    try:
        return kit.scalar(loss_fn(a, b, temperature), "nt_xent_loss")
    except Exception:  # noqa: BLE001 - a broken loss is graded by its own exercise
        return np.array(np.nan)


def probe_step(simclr_step, args):
    x = tensor(args["images"])
    encoder, jitter = _Recorder(int(args["seed"])), IdentityJitter()
    with global_bound(simclr_step, "jitter", jitter):
        loss = simclr_step(encoder, x.clone(), temperature=STEP_TEMPERATURE)
    out = {"loss": kit.scalar(loss, "the loss"), "jittered": np.array(jitter.images)}
    if isinstance(loss, torch.Tensor) and loss.requires_grad:
        loss.backward()
    out["grads"] = np.array([float(p.grad.abs().sum()) if p.grad is not None else np.nan
                             for p in encoder.parameters()])
    out["inputs"], out["outputs"] = _recorded(encoder, "the encoder's inputs")
    h = torch.from_numpy(out["outputs"]).float()
    out["own_loss"] = _own_loss(simclr_step, h[: len(x)], h[len(x):], STEP_TEMPERATURE) if len(h) == 2 * len(x) \
        else np.array(np.nan)
    again = _Recorder(int(args["seed"]))
    with global_bound(simclr_step, "jitter", IdentityJitter()):
        simclr_step(again, x.clone(), temperature=STEP_TEMPERATURE)
    out["inputs_again"], _ = _recorded(again, "the encoder's inputs")
    return out


def _views(ev, key="inputs"):
    """The two views (B, 1, 28, 28) each the encoder saw, or None when it did not see 2B images of that shape."""
    x, seen = ev.inputs["batch"]["images"], ev.get("batch", key)
    if seen.shape != (2 * len(x),) + x.shape[1:]:
        return None
    return seen[: len(x)], seen[len(x):]


def _same(a, b):
    return np.abs(a - b).reshape(len(a), -1).max(1) <= 1e-6  # (B,) per image


def _split(ev, key="inputs"):
    """(original, augmented) halves of what the encoder saw, whichever order they came in; None when it did not see
    2B images of the batch's shape or neither half is the batch itself."""
    views, x = _views(ev, key), ev.inputs["batch"]["images"]
    if views is None:
        return None
    first, second = views
    if _same(first, x).mean() > 0.5:
        return first, second
    if _same(second, x).mean() > 0.5:
        return second, first
    return None


def _turned_cutout(view, x):
    """The share of images that are x with one mid-gray SQUARE, turned a quarter counter-clockwise."""
    return float(np.mean([s is not None for s in _squares(view, x)]))


def _step_views(ev):
    views, x = _views(ev), ev.inputs["batch"]["images"]
    if views is None:
        return (f"the encoder should see the {len(x)} images and one view of each ({2 * len(x)} images of shape "
                f"{tuple(x.shape[1:])}, in one call or two)")
    pair = _split(ev)
    if pair is None:
        if all(_turned_cutout(v, x) > 0.5 for v in views):
            return ("both views are turned: the encoder then never sees an upright digit, and every digit it is "
                    "tested on is upright; pair jitter(x), as it comes, with cutout_and_rotate(jitter(x))")
        return "pair jitter(x), as it comes, with a cutout_and_rotate view of another jitter(x)"
    if _same(*pair).mean() > 0.5:
        return "the two views are the same images: the second one should be cutout_and_rotate(x)"
    return None


def _step_fresh(ev):
    first, second = _split(ev), _split(ev, "inputs_again")
    if first is None or second is None:
        return "the encoder should see the batch and a fresh view of it at every step"
    if _same(first[1], second[1]).mean() < 0.5:
        return None
    return ("two steps on the same batch saw the same augmented view: draw a new one at every step (the blog post "
            "augments the data once, before training, so every epoch sees one fixed pair)")


def _step_loss(ev):
    x, h = ev.inputs["batch"]["images"], ev.get("batch", "outputs")
    if h.shape != (2 * len(x), 16):
        return "the loss should be NT-Xent between the encoder's outputs for the two views"
    reference = contrastive_reference({"z1": h[: len(x)].astype(F32), "z2": h[len(x):].astype(F32),
                                       "temperature": np.array(STEP_TEMPERATURE)})
    loss = ev.get("batch", "loss")
    if kit.close(loss, reference, rtol=1e-3, atol=1e-4) or kit.close(loss, ev.get("batch", "own_loss"), rtol=1e-3,
                                                                     atol=1e-4):
        return None
    return "the loss is not NT-Xent (at the given temperature) between the encoder's outputs for view 1 and view 2"


def _step_jitter(ev):
    images, n = int(ev.get("batch", "jittered")), len(ev.inputs["batch"]["images"])
    if images == 2 * n:
        return None
    if images == 0:
        return ("the views never went through jitter: start each view from its own jitter(x), the small random shift, "
                "scale and tilt that keeps the task from being solved by matching pixels")
    return (f"jitter was given {images} images, not {2 * n}: call jitter(x) once for each view, so that the two views "
            "differ by two independent shifts (one shared jitter lets the encoder match pixels)")


def _wrong_own_loss(ev, loss, own) -> bool:
    """The step returned the student's own nt_xent_loss, and that loss is not NT-Xent: its gradients are its own."""
    x, h = ev.inputs["batch"]["images"], ev.get("batch", "outputs")
    if h.shape != (2 * len(x), 16) or not (kit.close(loss, own, rtol=1e-3, atol=1e-4) or
                                          (not np.isfinite(loss).all() and not np.isfinite(own).all())):
        return False
    reference = contrastive_reference({"z1": h[: len(x)].astype(F32), "z2": h[len(x):].astype(F32),
                                       "temperature": np.array(STEP_TEMPERATURE)})
    return not kit.close(loss, reference, rtol=1e-3, atol=1e-4)


def _step_grads(ev):
    g, loss, own = ev.get("batch", "grads"), ev.get("batch", "loss"), ev.get("batch", "own_loss")
    if _wrong_own_loss(ev, loss, own):
        return None  # their own nt_xent_loss (seed 000's gives NaN gradients on some draws): graded in its exercise
    # some parameter gets a gradient, none is cut off (NaN: no grad at all). Not "every one > 0": with a wrong
    # nt_xent_loss (seed 000's) some weights get exactly 0 on some draws, and that loss is graded in its own exercise
    if g.size and np.all(np.isfinite(g)) and np.any(g > 0):
        return None
    return ("no gradient reaches every encoder parameter: return the loss as a tensor, without torch.no_grad(), "
            ".detach() or .item() on the way")


def _step_gate(ev):
    """The encoder was called on two views of the batch (a loss made up without it earns nothing)."""
    if _views(ev) is None:
        return "the encoder never saw the two views of the batch"
    return None


STEP = Exercise(
    grade_id="simclr_step_test",
    function="simclr_step",
    cases=step_cases,
    probe=probe_step,
    checks=[kit.holds(1.0, _step_views), kit.holds(1.0, _step_fresh), kit.holds(1.0, _step_jitter),
            kit.holds(1.0, _step_loss), kit.holds(1.0, _step_grads)],
    forbidden=("labkit.losses.contrastive_loss", "labkit.augment.cutout_and_rotate"),
    gate=kit.holds(0, _step_gate),
    mistakes=(
        Example("one fixed augmented copy per image, drawn once (the seed's)", """\
_fixed_views = {}


def simclr_step(encoder, x, temperature=0.5):
    # Mistake: the seed augments the data once, before training; every epoch sees the same pair.
    key = (tuple(x.shape), float(x.sum()))
    if key not in _fixed_views:
        _fixed_views[key] = cutout_and_rotate(jitter(x))
    return nt_xent_loss(encoder(jitter(x)), encoder(_fixed_views[key]), temperature)
""", share=0.8, message="augments the data once", demo=True),
        Example("the seed's pairing as it is: the image and one fixed view, no jitter", """\
_fixed_views = {}


def simclr_step(encoder, x, temperature=0.5):
    key = (tuple(x.shape), float(x.sum()))
    if key not in _fixed_views:
        _fixed_views[key] = cutout_and_rotate(x)
    return nt_xent_loss(encoder(x), encoder(_fixed_views[key]), temperature)
""", share=0.6, message="never went through jitter"),
        Example("one jitter shared by both views", """\
def simclr_step(encoder, x, temperature=0.5):
    # Mistake: view 2 is cut from the same jittered batch as view 1.
    shifted = jitter(x)
    return nt_xent_loss(encoder(shifted), encoder(cutout_and_rotate(shifted)), temperature)
""", share=0.8, message="call jitter(x) once for each view"),
        Example("both views turned", """\
def simclr_step(encoder, x, temperature=0.5):
    # Mistake: both views rotated, so the encoder never sees an upright digit.
    return nt_xent_loss(encoder(cutout_and_rotate(jitter(x))), encoder(cutout_and_rotate(jitter(x))), temperature)
""", share=0.6, message="both views are turned"),
        Example("views encoded without gradients", """\
def simclr_step(encoder, x, temperature=0.5):
    # Mistake: no gradient reaches the encoder.
    with torch.no_grad():
        h1, h2 = encoder(jitter(x)), encoder(cutout_and_rotate(jitter(x)))
    return nt_xent_loss(h1, h2, temperature)
""", share=0.8, message="no gradient reaches"),
    ),
    solutions=(
        Example("both views in one forward pass, the augmented one first", """\
def simclr_step(encoder, x, temperature=0.5):
    shifted = jitter(torch.cat([x, x]))          # both jitters in one call: 2B images, drawn per image
    h = encoder(torch.cat([cutout_and_rotate(shifted[len(x):]), shifted[: len(x)]]))
    h1, h2 = h.chunk(2)
    return nt_xent_loss(h1, h2, temperature)
""", share=1.0),
    ),
    hostile=(
        Example("labkit's loss and views", """\
from labkit import augment, losses

def simclr_step(encoder, x, temperature=0.5):
    return losses.contrastive_loss(encoder(x), encoder(augment.cutout_and_rotate(x)), temperature)
""", share=0.0),
    ),
)


# ============================================================================ part 2: SimCLR on STL-10 / CIFAR-10
# ---------------------------------------------------------------------------- projection_head

def head_cases(rng: np.random.Generator):
    return {"small": {"x": rng.normal(size=(64, 12)).astype(F32), "in_dim": np.array(12), "out_dim": np.array(5)},
            "default": {"x": rng.normal(size=(64, 20)).astype(F32), "in_dim": np.array(20)}}


def probe_head(projection_head, args):
    x, in_dim = tensor(args["x"]), int(args["in_dim"])
    make = ((lambda: projection_head(in_dim, int(args["out_dim"]))) if "out_dim" in args
            else (lambda: projection_head(in_dim)))
    head = make()
    if not isinstance(head, torch.nn.Module):
        raise TypeError(f"projection_head should return a torch.nn.Module, got {type(head).__name__}")
    head.train()
    out = head(x)
    loss = out.pow(2).mean() if isinstance(out, torch.Tensor) else None
    if loss is not None and loss.requires_grad:
        loss.backward()
    grads = np.array([float(p.grad.abs().sum()) if p.grad is not None else np.nan for p in head.parameters()])
    head.eval()
    with torch.no_grad():  # eval mode: BatchNorm (if any) is a fixed affine map, so only a nonlinearity breaks f(a+b)
        a, b = x[:32], x[32:]
        gap = head(a + b) - head(a) - head(b) + head(torch.zeros_like(a))
        wide = head(3 * torch.randn(512, in_dim, generator=torch.Generator().manual_seed(0)))
    other = make().eval()
    with torch.no_grad():
        again = other(x[:32])
    return {"out": to_numpy(out, "the head's output"), "grads": grads if grads.size else np.full(1, np.nan),
            "gap": to_numpy(gap, "the head's output"), "wide_min": np.array(float(to_numpy(wide, "the output").min())),
            "fresh_gap": np.array(float(np.abs(to_numpy(again, "the output") - to_numpy(head(x[:32]), "the output")).max()))}


def _head_shape(ev):
    for case, out_dim in (("small", 5), ("default", 64)):
        x, out = ev.inputs[case]["x"], ev.get(case, "out")
        if out.shape != (len(x), out_dim):
            extra = " (out_dim defaults to 64)" if case == "default" else ""
            return f"projection_head({x.shape[1]}{', 5' if case == 'small' else ''}) should map (B, {x.shape[1]}) to " \
                   f"(B, {out_dim}){extra}; got {describe(out)}"
    return None


def describe(a):
    return kit.describe_shape(a)


def _head_nonlinear(ev):
    if all(np.abs(ev.get(c, "gap")).max() > 1e-4 for c in ("small", "default")):
        return None
    return ("the head is a linear map (one nn.Linear, or several with nothing in between collapse into one): put a "
            "ReLU between two Linear layers, as SimCLR's head does")


def _head_output_sign(ev):
    if all(ev.get(c, "wide_min") < 0 for c in ("small", "default")):
        return None
    return ("the head's output is never negative: it ends with a ReLU, which confines z to one orthant (cosine "
            "similarities of z can never be negative); end with the last nn.Linear")


def _head_trainable(ev):
    g = np.concatenate([ev.get(c, "grads") for c in ("small", "default")])
    if g.size and np.all(np.isfinite(g)) and np.all(g > 0):
        return None
    return "a gradient should reach every parameter of the head (no torch.no_grad, .detach() or frozen layers)"


def _head_fresh(ev):
    if all(ev.get(c, "fresh_gap") > 1e-6 for c in ("small", "default")):
        return None
    return ("two calls returned heads with the same weights: build a new nn.Module inside projection_head on every "
            "call (a module created once outside would be shared by every model)")


def _head_gate(ev):
    out = ev.get("small", "out")
    if out.ndim == 2 and len(out) == len(ev.inputs["small"]["x"]) and np.all(np.isfinite(out)) and out.std() > 0:
        return None
    return "the head should map each of the B rows to a vector"


HEAD = Exercise(
    grade_id="projection_head_test",
    function="projection_head",
    cases=head_cases,
    probe=probe_head,
    checks=[kit.holds(1.0, _head_shape), kit.holds(1.0, _head_nonlinear), kit.holds(0.5, _head_output_sign),
            kit.holds(0.25, _head_trainable), kit.holds(0.25, _head_fresh)],
    forbidden=("labkit.models.mlp",),
    gate=kit.holds(0, _head_gate),
    mistakes=(
        Example("one linear layer", """\
def projection_head(in_dim, out_dim=64):
    # Mistake: a linear head (no nonlinearity).
    return nn.Linear(in_dim, out_dim)
""", share=2 / 3, message="linear map", demo=True),
        Example("a ReLU after the last layer", """\
def projection_head(in_dim, out_dim=64):
    # Mistake: z passes through a final ReLU.
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim), nn.ReLU())
""", share=2.5 / 3, message="never negative"),
    ),
    solutions=(
        Example("with BatchNorm and a wider hidden layer (SimCLR v2 style)", """\
def projection_head(in_dim, out_dim=64):
    return nn.Sequential(nn.Linear(in_dim, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, out_dim))
""", share=1.0),
    ),
    hostile=(
        Example("labkit's mlp", """\
from labkit import models

def projection_head(in_dim, out_dim=64):
    return models.mlp(in_dim, 64, out_dim)
""", share=0.0),
    ),
)


# ---------------------------------------------------------------------------- contrastive_step

CONTRASTIVE_T = 0.3  # not the default: the step must pass its temperature on


def contrastive_step_cases(rng: np.random.Generator):
    return {"batch": {"images": rng.uniform(0, 1, (12, 3, 8, 8)).astype(F32), "seed": np.array(int(rng.integers(1000)))}}


class _SmallEncoder(torch.nn.Module):
    """A seeded conv encoder (B, 3, 8, 8) -> (B, 10) that records what it saw and returned."""

    def __init__(self, seed: int):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, kernel_size=3)
        self.fc = torch.nn.Linear(4 * 3 * 3, 10)
        _seed_weights(self, seed, 0.3)
        self.inputs, self.outputs = [], []

    def forward(self, x):
        h = self.fc(torch.nn.functional.max_pool2d(torch.relu(self.conv(x)), 2).flatten(1))
        self.inputs.append(x.detach().clone())
        self.outputs.append(h.detach().clone())
        return h


class _SmallHead(torch.nn.Module):
    """A seeded head (B, 10) -> (B, 6) that records what it returned."""

    def __init__(self, seed: int):
        super().__init__()
        self.a, self.b = torch.nn.Linear(10, 10), torch.nn.Linear(10, 6)
        _seed_weights(self, seed + 1, 0.3)
        self.outputs = []

    def forward(self, h):
        z = self.b(torch.relu(self.a(h)))
        self.outputs.append(z.detach().clone())
        return z


def _noisy_augment(seed: int):
    """A stand-in for an augmentation pipeline: fresh noise on every call (and per image), clamped to [0, 1]."""
    g = torch.Generator().manual_seed(seed + 2)

    def augment(x, generator=None):
        return (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)

    return augment


def probe_contrastive_step(contrastive_step, args):
    x, seed = tensor(args["images"]), int(args["seed"])
    encoder, head = _SmallEncoder(seed), _SmallHead(seed)
    loss = contrastive_step(encoder, head, x.clone(), _noisy_augment(seed), temperature=CONTRASTIVE_T)
    out = {"loss": kit.scalar(loss, "the loss")}
    if isinstance(loss, torch.Tensor) and loss.requires_grad:
        loss.backward()
    for name, module in (("encoder_grads", encoder), ("head_grads", head)):
        out[name] = np.array([float(p.grad.abs().sum()) if p.grad is not None else np.nan for p in module.parameters()])
    empty = np.full((0,), np.nan)
    out["inputs"] = to_numpy(torch.cat(encoder.inputs), "the encoder's inputs") if encoder.inputs else empty
    out["h"] = to_numpy(torch.cat(encoder.outputs), "the encoder's outputs") if encoder.outputs else empty
    out["z"] = to_numpy(torch.cat(head.outputs), "the head's outputs") if head.outputs else empty
    for key in ("z", "h"):
        v, n = torch.from_numpy(out[key]).float(), len(x)
        out[f"own_{key}"] = (_own_loss(contrastive_step, v[:n], v[n:], CONTRASTIVE_T) if len(v) == 2 * n
                             else np.array(np.nan))
    return out


def _two_halves(ev, key, width):
    a, n = ev.get("batch", key), len(ev.inputs["batch"]["images"])
    return (a[:n], a[n:]) if a.shape == (2 * n, width) else None


def _cstep_views(ev):
    x, seen = ev.inputs["batch"]["images"], ev.get("batch", "inputs")
    if seen.shape != (2 * len(x),) + x.shape[1:]:
        return f"the encoder should see two views of the {len(x)} images ({2 * len(x)} images, in one call or two)"
    first, second = seen[: len(x)], seen[len(x):]
    if any(_same(v, x).mean() > 0.5 for v in (first, second)):
        return "one of the two views is the original batch: pass both views through augment"
    if _same(first, second).mean() > 0.5:
        return "the two views are the same images: call augment once per view, never reuse one view twice"
    return None


def _nt_xent_of(pair, temperature):
    return contrastive_reference({"z1": pair[0].astype(F32), "z2": pair[1].astype(F32),
                                  "temperature": np.array(temperature)})


def _cstep_loss(ev):
    loss, z, h = ev.get("batch", "loss"), _two_halves(ev, "z", 6), _two_halves(ev, "h", 10)
    own = lambda key: kit.close(loss, ev.get("batch", key), rtol=1e-3, atol=1e-4)  # noqa: E731 (the student's loss)
    if z is not None and (kit.close(loss, _nt_xent_of(z, CONTRASTIVE_T), rtol=1e-3, atol=1e-4) or own("own_z")):
        return None
    if h is not None and (kit.close(loss, _nt_xent_of(h, CONTRASTIVE_T), rtol=1e-3, atol=1e-4) or own("own_h")):
        return ("the loss is on the encoder's features h: SimCLR puts NT-Xent on the head's outputs "
                "z = head(encoder(view)) and keeps h for the downstream task")
    if z is not None and kit.close(loss, _nt_xent_of(z, 0.5), rtol=1e-3, atol=1e-4):
        return "the loss ignores the temperature argument: pass temperature on to nt_xent_loss"
    return "the loss should be NT-Xent (at the given temperature) between z = head(encoder(view)) of the two views"


def _cstep_grads(ev):
    """Every encoder parameter gets a gradient, and so does the head's when the head was used (skipping the head
    is the loss check's business)."""
    def reached(key):
        g = ev.get("batch", key)
        return bool(g.size and np.all(np.isfinite(g)) and np.all(g > 0))

    head_used = ev.get("batch", "z").size > 0
    if reached("encoder_grads") and (reached("head_grads") or not head_used):
        return None
    return ("a gradient should reach every parameter of the encoder and of the head: return the loss as a tensor, "
            "without torch.no_grad(), .detach() or .item() on the way")


def _cstep_gate(ev):
    x, seen = ev.inputs["batch"]["images"], ev.get("batch", "inputs")
    return None if seen.shape == (2 * len(x),) + x.shape[1:] else "the encoder never saw the two views of the batch"


CONTRASTIVE_STEP = Exercise(
    grade_id="contrastive_step_test",
    function="contrastive_step",
    cases=contrastive_step_cases,
    probe=probe_contrastive_step,
    checks=[kit.holds(1.0, _cstep_views), kit.holds(1.0, _cstep_loss), kit.holds(1.0, _cstep_grads)],
    forbidden=("labkit.losses.contrastive_loss",),
    gate=kit.holds(0, _cstep_gate),
    mistakes=(
        Example("the loss on h, the head skipped", """\
def contrastive_step(encoder, head, x, augment, temperature=0.5):
    # Mistake: NT-Xent on the encoder's features, not on the head's outputs.
    return nt_xent_loss(encoder(augment(x)), encoder(augment(x)), temperature)
""", share=2 / 3, message="features h", demo=True),
        Example("one view used twice", """\
def contrastive_step(encoder, head, x, augment, temperature=0.5):
    # Mistake: a single augmented view, paired with itself.
    v = augment(x)
    return nt_xent_loss(head(encoder(v)), head(encoder(v)), temperature)
""", share=2 / 3, message="the two views are the same images"),
    ),
    solutions=(
        Example("both views in one forward pass", """\
def contrastive_step(encoder, head, x, augment, temperature=0.5):
    z = head(encoder(torch.cat([augment(x), augment(x)])))
    return nt_xent_loss(*z.chunk(2), temperature)
""", share=1.0),
    ),
    hostile=(
        Example("labkit's loss", """\
from labkit import losses

def contrastive_step(encoder, head, x, augment, temperature=0.5):
    return losses.contrastive_loss(head(encoder(augment(x))), head(encoder(augment(x))), temperature)
""", share=0.0),
    ),
)


# ---------------------------------------------------------------------------- frozen_features

FEATURE_BATCH = 32


def features_cases(rng: np.random.Generator):
    images = rng.integers(0, 256, (70, 3, 8, 8)).astype(np.uint8)  # 70 = 2 x 32 + a partial batch of 6
    return {"images": {"images": images, "seed": np.array(int(rng.integers(1000)))}}


class _BNEncoder(torch.nn.Module):
    """A seeded encoder with BatchNorm (running statistics far from a fresh layer's), left in train mode as a
    training loop leaves it: (B, 3, 8, 8) -> (B, 6)."""

    def __init__(self, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv, self.bn, self.fc = torch.nn.Conv2d(3, 5, 3), torch.nn.BatchNorm2d(5), torch.nn.Linear(5, 6)
        with torch.no_grad():
            for p in [self.conv.weight, self.conv.bias, self.fc.weight, self.fc.bias]:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            self.bn.running_mean.copy_(torch.randn(5, generator=g))
            self.bn.running_var.copy_(torch.rand(5, generator=g) + 0.5)
        self.train()

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


def _state(module):
    return np.concatenate([t.detach().double().flatten().numpy() for t in module.state_dict().values()])


def probe_features(frozen_features, args):
    encoder = _BNEncoder(int(args["seed"]))
    before = _state(encoder)
    images = torch.from_numpy(np.array(args["images"], dtype=np.uint8))
    feats = frozen_features(encoder, images.clone(), batch_size=FEATURE_BATCH)
    out = {"features": to_numpy(feats, "the features"),
           "requires_grad": np.array(bool(isinstance(feats, torch.Tensor) and feats.requires_grad)),
           "state_change": np.array(float(np.abs(_state(encoder) - before).max()))}
    return out


def _reference_features(a, train_mode=False, scale=255.0, rows=None):
    encoder = _BNEncoder(int(a["seed"]))
    encoder.train(train_mode)
    x = torch.from_numpy(a["images"].astype(F32)) / scale
    with torch.no_grad():
        if train_mode:  # batch statistics, batch by batch
            h = torch.cat([encoder(b) for b in x.split(FEATURE_BATCH)])
        else:
            h = encoder(x)
    return h[:rows].double().numpy()


FEATURES = Exercise(
    grade_id="frozen_features_test",
    function="frozen_features",
    cases=features_cases,
    probe=probe_features,
    checks=[kit.matches(1.5, "features", _reference_features, cases=("images",), rtol=1e-4, atol=1e-4,
                        hint="the features should be encoder(to_float(batch)) in eval mode, for every image, in order",
                        variants=[(lambda a: _reference_features(a, train_mode=True),
                                   "BatchNorm used each batch's own statistics: call encoder.eval() first (a "
                                   "frozen encoder normalizes with its running statistics)"),
                                  (lambda a: _reference_features(a, scale=1.0),
                                   "the features are of 0-255 floats: convert each uint8 batch with to_float "
                                   "(or / 255), as the encoder saw its training images"),
                                  (lambda a: _reference_features(a, rows=-(len(a["images"]) % FEATURE_BATCH)),
                                   "the last, partial batch is missing: every image needs its features")]),
            kit.holds(1.0, lambda ev: None if ev.get("images", "state_change") <= 1e-7 else
                      "extracting features changed the encoder (its BatchNorm running statistics or its weights): "
                      "a frozen encoder must come out as it went in; call encoder.eval() and use torch.no_grad()"),
            kit.holds(0.5, lambda ev: None if not ev.get("images", "requires_grad") else
                      "the features still carry the autograd graph: compute them under torch.no_grad() (it keeps "
                      "every activation in memory otherwise)")],
    forbidden=("labkit.evaluation.extract_features", "labkit.evaluation.predict"),
    gate=kit.holds(0, lambda ev: None if ev.get("images", "features").ndim == 2
                   and 0 < len(ev.get("images", "features")) <= len(ev.inputs["images"]["images"])
                   and ev.get("images", "features").shape[1] == 6 else
                   "frozen_features should return the encoder's (N, D) features"),
    mistakes=(
        Example("BatchNorm left in train mode", """\
def frozen_features(encoder, images, batch_size=256):
    # Mistake: no encoder.eval(), so BatchNorm normalizes with batch statistics and updates its running ones.
    with torch.no_grad():
        return torch.cat([encoder(to_float(b)) for b in images.split(batch_size)])
""", share=0.5 / 3, message="call encoder.eval()", demo=True),
        Example("0-255 floats", """\
def frozen_features(encoder, images, batch_size=256):
    # Mistake: the uint8 images are cast, not scaled to [0, 1].
    encoder.eval()
    with torch.no_grad():
        return torch.cat([encoder(b.float()) for b in images.split(batch_size)])
""", share=1.5 / 3, message="0-255 floats"),
        Example("the graph kept", """\
def frozen_features(encoder, images, batch_size=256):
    # Mistake: no torch.no_grad().
    encoder.eval()
    return torch.cat([encoder(to_float(b)) for b in images.split(batch_size)])
""", share=2.5 / 3, message="torch.no_grad()"),
    ),
    hostile=(
        Example("labkit's extract_features", """\
from labkit import evaluation

def frozen_features(encoder, images, batch_size=256):
    return evaluation.extract_features(encoder, images, batch_size=batch_size)
""", share=0.0),
    ),
)


# ---------------------------------------------------------------------------- sklearn_probe

def _blobs(rng, n, dim=8, spread=1.0):
    """Three Gaussian classes at fixed centres 2 e_1, 2 e_2, 2 e_3 (about 90% linearly separable, on every draw),
    in a random rotation."""
    centres = 2.0 * np.eye(3, dim)
    rotation = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
    labels = rng.integers(0, 3, n)
    return ((centres[labels] + spread * rng.normal(size=(n, dim))) @ rotation).astype(F32), labels.astype(np.int64)


def probe_cases(rng: np.random.Generator):
    x, y = _blobs(rng, 1500)
    train = {"train_features": x[:1000], "train_labels": y[:1000]}
    return {"blobs": {**train, "test_features": x[1000:], "test_labels": y[1000:]},
            "shuffled": {**train, "test_features": x[1000:], "test_labels": rng.permutation(y[1000:])}}


def probe_sklearn(sklearn_probe, args):
    value = sklearn_probe(tensor(args["train_features"]), tensor(args["train_labels"]),
                          tensor(args["test_features"]), tensor(args["test_labels"]))
    if isinstance(value, torch.Tensor):
        return {"accuracy": kit.scalar(value, "the accuracy")}
    if not isinstance(value, (int, float, np.floating, np.integer)) or isinstance(value, bool):
        raise TypeError(f"sklearn_probe should return a number (the test accuracy in percent), got {type(value).__name__}")
    return {"accuracy": np.array(float(value))}


def _reference_probe(a):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(a["train_features"], a["train_labels"])
    return 100.0 * model.score(a["test_features"], a["test_labels"])


def _probe_blobs(ev):
    got, want = float(ev.get("blobs", "accuracy")), _reference_probe(ev.inputs["blobs"])
    if abs(got - want) <= 6:
        return None
    if abs(100 * got - want) <= 6:
        return "return the accuracy in percent (0-100), not as a fraction"
    return (f"on three Gaussian classes a linear classifier on the training features scores about {want:.0f}% on the "
            f"test features; yours returned {got:.4g}")


def _probe_shuffled(ev):
    got = float(ev.get("shuffled", "accuracy"))
    chance_band = (15.0, 52.0)
    if chance_band[0] <= got <= chance_band[1] or chance_band[0] <= 100 * got <= chance_band[1]:
        return None
    return ("with the test labels shuffled the test accuracy should fall to chance (about 33% for three classes); "
            "yours stayed high: score the classifier on the test features and test labels, never on the training set")


SKLEARN_PROBE = Exercise(
    grade_id="sklearn_probe_test",
    function="sklearn_probe",
    cases=probe_cases,
    probe=probe_sklearn,
    checks=[kit.holds(1.0, _probe_blobs), kit.holds(1.0, _probe_shuffled)],
    forbidden=("labkit.evaluation.linear_probe",),
    gate=kit.holds(0, lambda ev: None if np.isfinite(ev.get("blobs", "accuracy")) else "the accuracy should be a number"),
    mistakes=(
        Example("the training accuracy returned", """\
def sklearn_probe(train_features, train_labels, test_features, test_labels):
    # Mistake: scored on the training set.
    clf = LogisticRegression(max_iter=1000).fit(train_features.cpu().numpy(), train_labels.cpu().numpy())
    return 100 * clf.score(train_features.cpu().numpy(), train_labels.cpu().numpy())
""", share=0.5, message="never on the training set", demo=True),
        Example("a fraction", """\
def sklearn_probe(train_features, train_labels, test_features, test_labels):
    # Mistake: the accuracy as a fraction.
    clf = LogisticRegression(max_iter=1000).fit(train_features.cpu().numpy(), train_labels.cpu().numpy())
    return clf.score(test_features.cpu().numpy(), test_labels.cpu().numpy())
""", share=0.5, message="in percent"),
    ),
    solutions=(
        Example("a linear SVM on standardized features", """\
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

def sklearn_probe(train_features, train_labels, test_features, test_labels):
    scaler = StandardScaler().fit(train_features.cpu().numpy())
    svm = LinearSVC(C=0.1).fit(scaler.transform(train_features.cpu().numpy()), train_labels.cpu().numpy())
    return 100.0 * svm.score(scaler.transform(test_features.cpu().numpy()), test_labels.cpu().numpy())
""", share=1.0),
    ),
    hostile=(
        Example("labkit's linear_probe", """\
from labkit import evaluation

def sklearn_probe(train_features, train_labels, test_features, test_labels):
    return evaluation.linear_probe(train_features, train_labels, test_features, test_labels)
""", share=0.0),
    ),
)


# ---------------------------------------------------------------------------- kmeans_scores

def kmeans_cases(rng: np.random.Generator):
    centres = rng.normal(size=(4, 5)) * 10
    labels = rng.integers(0, 4, 200)
    blobs = (centres[labels] + rng.normal(size=(200, 5))).astype(F32)
    return {"blobs": {"features": blobs, "labels": labels.astype(np.int64), "n_clusters": np.array(4)},
            "noise": {"features": rng.normal(size=(300, 5)).astype(F32),
                      "labels": rng.integers(0, 3, 300).astype(np.int64), "n_clusters": np.array(3)}}


def probe_kmeans(kmeans_scores, args):
    scores = kmeans_scores(tensor(args["features"]), tensor(args["labels"]), n_clusters=int(args["n_clusters"]), seed=0)
    if not isinstance(scores, dict) or not {"ari", "nmi"} <= set(scores):
        raise TypeError("kmeans_scores should return a dict with the keys 'ari' and 'nmi'")
    out = {}
    for key in ("ari", "nmi"):
        value = scores[key]
        if isinstance(value, torch.Tensor):
            out[key] = kit.scalar(value, key)
        elif isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool):
            out[key] = np.array(float(value))
        else:
            raise TypeError(f"scores[{key!r}] should be a number, got {type(value).__name__}")
    return out


def _kmeans_blobs(ev):
    ari, nmi = float(ev.get("blobs", "ari")), float(ev.get("blobs", "nmi"))
    if ari > 0.95 and nmi > 0.95:
        return None
    return ("on four well-separated clusters k-means with n_clusters=4 finds the labels (ARI and NMI near 1); "
            f"yours gave ARI {ari:.3g}, NMI {nmi:.3g}: fit KMeans(n_clusters) and compare its cluster ids with the labels")


def _kmeans_noise(ev):
    ari, nmi = float(ev.get("noise", "ari")), float(ev.get("noise", "nmi"))
    if abs(ari) <= 0.05 and 0 <= nmi <= 0.1:
        return None
    if ari > 0.3:
        return ("with labels unrelated to the features the score should be near 0: use adjusted_rand_score (the "
                "plain Rand index is high by chance)")
    return f"with labels unrelated to the features ARI and NMI should be near 0; yours gave ARI {ari:.3g}, NMI {nmi:.3g}"


KMEANS = Exercise(
    grade_id="kmeans_scores_test",
    function="kmeans_scores",
    cases=kmeans_cases,
    probe=probe_kmeans,
    checks=[kit.holds(1.0, _kmeans_blobs), kit.holds(1.0, _kmeans_noise)],
    forbidden=("labkit.evaluation.cluster_scores",),
    gate=kit.holds(0, lambda ev: None if np.isfinite(ev.get("blobs", "ari")) else "the scores should be numbers"),
    mistakes=(
        Example("the plain Rand index", """\
from sklearn.metrics import rand_score

def kmeans_scores(features, labels, n_clusters=10, seed=0):
    # Mistake: the Rand index is not adjusted for chance.
    ids = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(features.cpu().numpy())
    return {"ari": rand_score(labels.cpu().numpy(), ids),
            "nmi": normalized_mutual_info_score(labels.cpu().numpy(), ids)}
""", share=0.5, message="adjusted_rand_score", demo=True),
        Example("ten clusters whatever n_clusters says", """\
def kmeans_scores(features, labels, n_clusters=10, seed=0):
    # Mistake: the number of clusters is fixed.
    ids = KMeans(n_clusters=10, n_init=10, random_state=seed).fit_predict(features.cpu().numpy())
    return {"ari": adjusted_rand_score(labels.cpu().numpy(), ids),
            "nmi": normalized_mutual_info_score(labels.cpu().numpy(), ids)}
""", share=0.5, message="n_clusters=4"),
    ),
    hostile=(
        Example("labkit's cluster_scores", """\
from labkit import evaluation

def kmeans_scores(features, labels, n_clusters=10, seed=0):
    return evaluation.cluster_scores(features, labels, n_clusters=n_clusters, seed=seed)
""", share=0.0),
    ),
)

EXERCISES = [CUTOUT, LOGITS, NT_XENT, STEP, HEAD, CONTRASTIVE_STEP, FEATURES, SKLEARN_PROBE, KMEANS]
