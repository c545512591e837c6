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


class _Recorder(torch.nn.Module):
    """A small seeded encoder that keeps every batch it is given and what it returned."""

    def __init__(self, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = torch.nn.Conv2d(1, 4, kernel_size=5)
        self.fc = torch.nn.Linear(4 * 12 * 12, 16)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
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


def probe_step(simclr_step, args):
    x = tensor(args["images"])
    encoder = _Recorder(int(args["seed"]))
    loss = simclr_step(encoder, x.clone(), temperature=STEP_TEMPERATURE)
    out = {"loss": kit.scalar(loss, "the loss")}
    if isinstance(loss, torch.Tensor) and loss.requires_grad:
        loss.backward()
    out["grads"] = np.array([float(p.grad.abs().sum()) if p.grad is not None else np.nan
                             for p in encoder.parameters()])
    out["inputs"], out["outputs"] = _recorded(encoder, "the encoder's inputs")
    again = _Recorder(int(args["seed"]))
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


def _step_views(ev):
    views, x = _views(ev), ev.inputs["batch"]["images"]
    if views is None:
        return (f"the encoder should see two views of the {len(x)} images ({2 * len(x)} images of shape "
                f"{tuple(x.shape[1:])}, in one call or two)")
    if any(_same(v, x).mean() > 0.5 for v in views):
        return ("one of the two views is the original image: the seed pairs each image with one fixed augmented copy; "
                "augment both views (cutout_and_rotate twice)")
    if _same(*views).mean() > 0.5:
        return "the two views are the same images: draw each view separately (two calls of cutout_and_rotate)"
    return None


def _step_fresh(ev):
    first, second = _views(ev), _views(ev, "inputs_again")
    if first is None or second is None:
        return "the encoder should see two views of the batch at every step"
    if all(_same(a, b).mean() < 0.5 for a, b in zip(first, second)):
        return None
    return "two steps on the same batch saw the same views: draw new views at every step, never once before training"


def _step_loss(ev):
    x, h = ev.inputs["batch"]["images"], ev.get("batch", "outputs")
    if h.shape != (2 * len(x), 16):
        return "the loss should be NT-Xent between the encoder's outputs for the two views"
    reference = contrastive_reference({"z1": h[: len(x)].astype(F32), "z2": h[len(x):].astype(F32),
                                       "temperature": np.array(STEP_TEMPERATURE)})
    if kit.close(ev.get("batch", "loss"), reference, rtol=1e-3, atol=1e-4):
        return None
    return "the loss is not NT-Xent (at the given temperature) between the encoder's outputs for view 1 and view 2"


def _step_grads(ev):
    g = ev.get("batch", "grads")
    if g.size and np.all(np.isfinite(g)) and np.all(g > 0):
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
    checks=[kit.holds(1.0, _step_views), kit.holds(0.5, _step_fresh), kit.holds(0.5, _step_loss),
            kit.holds(1.0, _step_grads)],
    forbidden=("labkit.losses.contrastive_loss", "labkit.augment.cutout_and_rotate"),
    gate=kit.holds(0, _step_gate),
    mistakes=(
        Example("the original paired with one augmented view (the seed's)", """\
def simclr_step(encoder, x, temperature=0.5):
    # Mistake: the seed's pairing, each image with one augmented copy.
    return nt_xent_loss(encoder(x), encoder(cutout_and_rotate(x)), temperature)
""", share=0.5, message="one of the two views is the original", demo=True),
        Example("views encoded without gradients", """\
def simclr_step(encoder, x, temperature=0.5):
    # Mistake: no gradient reaches the encoder.
    with torch.no_grad():
        h1, h2 = encoder(cutout_and_rotate(x)), encoder(cutout_and_rotate(x))
    return nt_xent_loss(h1, h2, temperature)
""", share=2 / 3, message="no gradient reaches"),
    ),
    solutions=(
        Example("both views in one forward pass", """\
def simclr_step(encoder, x, temperature=0.5):
    h = encoder(torch.cat([cutout_and_rotate(x), cutout_and_rotate(x)]))
    h1, h2 = h.chunk(2)
    return nt_xent_loss(h1, h2, temperature)
""", share=1.0),
    ),
    hostile=(
        Example("labkit's loss and views", """\
from labkit import augment, losses

def simclr_step(encoder, x, temperature=0.5):
    return losses.contrastive_loss(encoder(augment.cutout_and_rotate(x)), encoder(augment.cutout_and_rotate(x)),
                                   temperature)
""", share=0.0),
    ),
)

EXERCISES = [CUTOUT, LOGITS, NT_XENT, STEP]
