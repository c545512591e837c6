"""dSprites, rendered by labkit: the latent grid, a vectorized renderer, the dataset and its splits.

dSprites (Matthey et al. 2017) is itself procedurally generated: a white square,
ellipse or heart on a black 64 x 64 canvas, from five latents (shape, scale,
orientation, posX, posY). :func:`render_latents` redraws any latent vector, so
the labs need no download. Its geometry was fitted to the real images: the mean
IoU with them is 0.999 for every shape (``tests/test_dsprites.py`` measures it
when the real files are at hand). A real ``.npz`` is used instead when one is
given or found under the data site (:func:`load_dsprites`).

Conventions: pixel (row i, column j) is the point (j, i); the sprite's centre is
at 15.5 + 32 * pos (rows grow downward with posY); orientation turns the sprite
counter-clockwise as displayed, about that centre; a pixel is on when its centre
lies inside the shape (no anti-aliasing).
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..images import to_float

LATENT_NAMES = ("shape", "scale", "orientation", "posX", "posY")
SHAPE_NAMES = ("square", "ellipse", "heart")
LATENT_SIZES = (3, 6, 40, 32, 32)
NUM_IMAGES = math.prod(LATENT_SIZES)  # 737,280: the full grid
OFFICIAL_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"

# Geometry at scale 1, in pixels, fitted to the real images (see the module docstring).
_SQUARE_HALF = 9.6                       # side 19.2
_ELLIPSE_AXES = (12.76, 7.215)           # semi-axes: 25.5 x 14.4, major axis horizontal
_HEART_SCALE = (0.6, 0.662)              # pixels per unit of the curve x = 16 sin^3 t, y = 13 cos t - ...
_HEART_LIFT = 1.44                       # curve origin this far above the centre (bbox centre ~0.24 px below it)
_WINDOW = 32                             # sprites are drawn in a window this wide around the centre
_CHUNK = 8192                            # images per rendering pass (bounds memory: ~32 MB per float map)


def latent_grid() -> dict[str, np.ndarray]:
    """The possible values of each latent, ``{name: (size,) float64}``, in class order."""
    return {"shape": np.array([1.0, 2.0, 3.0]), "scale": np.linspace(0.5, 1.0, 6),
            "orientation": np.linspace(0.0, 2 * np.pi, 40),
            "posX": np.linspace(0.0, 1.0, 32), "posY": np.linspace(0.0, 1.0, 32)}


def classes_to_values(classes) -> torch.Tensor:
    """(M, 5) integer classes (shape class 0..2) -> (M, 5) float64 latent values (shape 1..3)."""
    classes = torch.as_tensor(classes, dtype=torch.long)
    grid = latent_grid()
    return torch.stack([torch.as_tensor(grid[name], device=classes.device)[classes[:, k]]
                        for k, name in enumerate(LATENT_NAMES)], dim=1)


def values_to_classes(values) -> torch.Tensor:
    """(M, 5) latent values -> (M, 5) int64 classes: the index of the nearest grid value per latent."""
    values = torch.as_tensor(values, dtype=torch.float64)
    grid = latent_grid()
    return torch.stack([(values[:, k, None] - torch.as_tensor(grid[name], device=values.device)).abs().argmin(1)
                        for k, name in enumerate(LATENT_NAMES)], dim=1)


def index_to_classes(index) -> torch.Tensor:
    """(M,) flat indices into the full grid (official file order: posY varies fastest) -> (M, 5) classes."""
    return torch.as_tensor(np.stack(np.unravel_index(np.asarray(index), LATENT_SIZES), axis=1), dtype=torch.long)


@lru_cache(maxsize=None)
def _heart_tables(num: int = 4096) -> tuple[torch.Tensor, float, float]:
    """The heart's right half as two functions of height v (curve units) on a uniform grid.

    The curve x = 16 sin^3 t, y = 13 cos t - 5 cos 2t - 2 cos 3t - cos 4t, t in [0, pi],
    rises from the notch (0, 5) to the top of the lobe, then falls to the tip (0, -17):
    at height v a point is inside when x_inner(v) <= |x| <= x_outer(v).
    Returns the (2, num) float32 table of x_inner, x_outer and the grid's (bottom, top).
    """
    t = np.linspace(0.0, np.pi, 20001)
    x = 16 * np.sin(t) ** 3
    y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
    top = int(np.argmax(y))
    v = np.linspace(y[-1], y[top], num)
    inner = np.interp(v, y[: top + 1], x[: top + 1], left=0.0)      # y increasing on [0, t_top]
    outer = np.interp(v, y[top:][::-1], x[top:][::-1])               # y decreasing on [t_top, pi]
    return torch.tensor(np.stack([inner, outer]), dtype=torch.float32), float(y[-1]), float(y[top])


def _inside_heart(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Heart test for points (u, v) in pixels at scale 1, v up, relative to the sprite centre."""
    table, bottom, top = _heart_tables()
    inner, outer = table.to(u.device)
    x = u.abs() / _HEART_SCALE[0]
    y = (v - _HEART_LIFT) / _HEART_SCALE[1]
    pos = ((y - bottom) / (top - bottom) * (len(inner) - 1)).clamp(0, len(inner) - 1)
    lo = pos.floor().long().clamp(max=len(inner) - 2)
    frac = pos - lo
    lerp = lambda table: table[lo] * (1 - frac) + table[lo + 1] * frac  # noqa: E731
    return (y >= bottom) & (y <= top) & (x >= lerp(inner)) & (x <= lerp(outer))


def _render(values: torch.Tensor, kind: int) -> torch.Tensor:
    """(N, 5) float32 latent values, all of shape ``kind`` -> (N, _WINDOW, _WINDOW) bool, the window around the centre.

    The window's pixel (i, j) is canvas pixel (top + i, left + j), see :func:`_window_corner`.
    """
    _, scale, angle, pos_x, pos_y = values.T[:, :, None, None]               # each (N, 1, 1)
    steps = torch.arange(_WINDOW, dtype=torch.float32, device=values.device)
    centre_x, centre_y = 15.5 + 32 * pos_x, 15.5 + 32 * pos_y
    dx = steps[None, None, :] - (centre_x - _window_corner(centre_x))         # (N, 1, W) columns
    dy = (centre_y - _window_corner(centre_y)) - steps[None, :, None]         # (N, W, 1) rows, up
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    u = dx * cos + dy * sin                                                   # (N, W, W) sprite frame,
    v = dy * cos - dx * sin                                                   # pixels at scale 1
    if kind == 1:
        return (u.abs() <= _SQUARE_HALF) & (v.abs() <= _SQUARE_HALF)
    if kind == 2:
        return (u / _ELLIPSE_AXES[0]) ** 2 + (v / _ELLIPSE_AXES[1]) ** 2 <= 1
    return _inside_heart(u, v)


def _window_corner(centre: torch.Tensor) -> torch.Tensor:
    """Canvas index of a window's first row/column: the centre sits 15..16 px in, 0 <= corner <= 64 - _WINDOW."""
    return centre.floor() - (_WINDOW // 2 - 1)


def render_latents(values):
    """Draw dSprites images: (N, 5) latent values -> (N, 64, 64) uint8 in {0, 1}.

    Columns as in :data:`LATENT_NAMES`: shape (1 square, 2 ellipse, 3 heart), scale
    (0.5..1; at most 1.1), orientation (radians, counter-clockwise), posX and posY
    (0..1). Any values in range work, not only grid points. A torch tensor gives a
    uint8 tensor on its device (the work runs there, e.g. on a GPU); anything else
    gives numpy. Each sprite is drawn in a 32 x 32 window around its centre, then pasted.
    """
    is_tensor = torch.is_tensor(values)
    values = torch.as_tensor(values if is_tensor else np.asarray(values, dtype=np.float32))
    if values.dim() != 2 or values.shape[1] != 5:
        raise ValueError(f"values must be (N, 5) latents {LATENT_NAMES}; got shape {tuple(values.shape)}.")
    values = values.to(torch.float32)
    shapes = values[:, 0].round().long()
    if not ((shapes >= 1) & (shapes <= 3)).all():
        raise ValueError("The shape latent (column 0) must be 1 (square), 2 (ellipse) or 3 (heart); "
                         "convert shape classes 0..2 with classes_to_values().")
    if not (((values[:, 1] > 0) & (values[:, 1] <= 1.1)).all() and ((values[:, 3:] >= 0) & (values[:, 3:] <= 1)).all()):
        raise ValueError("scale must be in (0, 1.1] and posX, posY in [0, 1] (the sprite must fit the canvas).")
    out = torch.zeros(len(values), 64, 64, dtype=torch.uint8, device=values.device)
    steps = torch.arange(_WINDOW, device=values.device)
    for kind in (1, 2, 3):
        rows = (shapes == kind).nonzero().flatten()
        for chunk in rows.split(_CHUNK) if len(rows) else ():
            top, left = (_window_corner(15.5 + 32 * values[chunk, k]).long() for k in (4, 3))
            out[chunk[:, None, None], (top[:, None] + steps)[:, :, None], (left[:, None] + steps)[:, None, :]] = (
                _render(values[chunk], kind).to(torch.uint8))
    return out if is_tensor else out.numpy()


class DSprites(torch.utils.data.Dataset):
    """dSprites images with their latents, held as whole tensors (GPU-resident training slices them).

    Attributes: ``images`` (N, 64, 64) uint8 in {0, 1}; ``latents_values`` (N, 5) float32;
    ``latents_classes`` (N, 5) int64 (shape class 0 square, 1 ellipse, 2 heart);
    ``source``, a line saying where the images came from.
    Items are ``(image (1, 64, 64) float in [0, 1], shape class)`` for a DataLoader.
    """

    def __init__(self, images, latents_values, latents_classes, source: str = "given tensors"):
        self.images = torch.as_tensor(images, dtype=torch.uint8)
        self.latents_values = torch.as_tensor(latents_values, dtype=torch.float32)
        self.latents_classes = torch.as_tensor(latents_classes, dtype=torch.long)
        if not (len(self.images) == len(self.latents_values) == len(self.latents_classes)):
            raise ValueError(f"images, latents_values and latents_classes differ in length: {len(self.images)}, "
                             f"{len(self.latents_values)}, {len(self.latents_classes)}.")
        self.source = source

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return to_float(self.images[i].unsqueeze(0), max_value=1)[0], self.latents_classes[i, 0]  # (1, 64, 64)

    def __repr__(self) -> str:
        return f"DSprites({len(self)} images, {self.source}, on {self.images.device})"

    def to(self, device) -> DSprites:
        """Move all tensors to ``device``; returns self."""
        self.images, self.latents_values, self.latents_classes = (
            t.to(device) for t in (self.images, self.latents_values, self.latents_classes))
        return self

    def latent(self, name: str) -> torch.Tensor:
        """(N,) values of one latent, e.g. ``data.latent("posX")``."""
        if name not in LATENT_NAMES:
            raise KeyError(f"Unknown latent {name!r}; use one of {LATENT_NAMES}.")
        return self.latents_values[:, LATENT_NAMES.index(name)]

    @classmethod
    def generate(cls, num_images: int = 20_000, seed: int = 0, device=None) -> DSprites:
        """Render a uniform random subset (without replacement) of the full 737,280-image grid.

        Rendering runs on ``device`` (default CPU); the same seed gives the same images.
        """
        if not 0 < num_images <= NUM_IMAGES:
            raise ValueError(f"num_images must be in 1..{NUM_IMAGES}; got {num_images}.")
        index = torch.randperm(NUM_IMAGES, generator=torch.Generator().manual_seed(seed))[:num_images]
        classes = index_to_classes(index)
        values = classes_to_values(classes).float()
        images = render_latents(values.to(device or "cpu"))
        return cls(images, values, classes, f"generated (labkit renderer, seed {seed})").to(images.device)

    @classmethod
    def from_npz(cls, path, num_images: int | None = None, seed: int = 0) -> DSprites:
        """Load a real dSprites ``.npz`` (keys imgs, latents_values, latents_classes).

        Works with the official file (6 latent columns, colour first: dropped) and with
        5-column subsets. Classes are recomputed from the values, because subsets such as
        the downsampled one number classes within their own grid. With ``num_images``
        smaller than the file, a seeded random subset is kept. The official file holds
        2.9 GB of pixels once decompressed.
        """
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"No dSprites file at {path}; pass the path of a .npz with keys imgs, "
                                    "latents_values, latents_classes (or call DSprites.generate()).")
        with np.load(path) as npz:  # no pickles: the metadata entry is never read
            missing = {"imgs", "latents_values"} - set(npz.files)
            if missing:
                raise KeyError(f"{path} lacks {sorted(missing)}; is it a dSprites .npz?")
            values = npz["latents_values"]
            total = len(values)
            keep = np.arange(total)
            if num_images is not None and num_images < total:
                keep = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:num_images].numpy()
                keep.sort()
            images = npz["imgs"][keep]
        values = values[keep]
        if values.shape[1] == 6:  # official layout: colour, shape, scale, orientation, posX, posY
            values = values[:, 1:]
        if values.shape[1] != 5:
            raise ValueError(f"{path}: latents_values has {values.shape[1]} columns; expected 5 or 6 (colour first).")
        source = f"real dSprites from {path}"
        if len(keep) < total:
            source += f" (random {len(keep)} of {total}, seed {seed})"
        return cls(images, values, values_to_classes(values), source)


def _find_real_file() -> Path | None:
    """A dSprites .npz under ``<site root>/dsprites``, the official file first; None if there is none."""
    from ..config import get_site

    folder = get_site().root / "dsprites"
    if (folder / OFFICIAL_FILE).is_file():
        return folder / OFFICIAL_FILE
    found = sorted(folder.glob("*.npz")) if folder.is_dir() else []
    if len(found) > 1:
        raise ValueError(f"Several .npz files in {folder}: {[p.name for p in found]}; "
                         "pass load_dsprites(path=...) to pick one.")
    return found[0] if found else None


def load_dsprites(num_images: int = 20_000, seed: int = 0, path=None, device=None) -> DSprites:
    """The lab's dSprites: a real file if given or found at the data site, else generated.

    ``path`` may be a .npz file or a folder holding one. The result's ``source`` says
    which it is; ``device`` is where its tensors end up.
    """
    if path is not None and Path(path).expanduser().is_dir():
        found = sorted(Path(path).expanduser().glob("*.npz"))
        if len(found) != 1:
            raise FileNotFoundError(f"Expected one .npz in {path}, found {[p.name for p in found]}; pass the file.")
        path = found[0]
    path = path if path is not None else _find_real_file()
    if path is None:
        return DSprites.generate(num_images, seed=seed, device=device)
    return DSprites.from_npz(path, num_images=num_images, seed=seed).to(device or "cpu")


def _sampler(indices: torch.Tensor) -> torch.utils.data.SubsetRandomSampler:
    return torch.utils.data.SubsetRandomSampler(indices.sort().values.tolist())


def _split_indices(n: int, train_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be strictly between 0 and 1; got {train_fraction}.")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = int(train_fraction * n)
    return order[:cut], order[cut:]


def train_test_split(dataset, train_fraction: float = 0.8, seed: int = 0):
    """Seeded disjoint (train_sampler, test_sampler) covering the dataset; ``int(f * N)`` go to train."""
    train, test = _split_indices(len(dataset), train_fraction, seed)
    return _sampler(train), _sampler(test)


def limit(sampler, n: int | None, seed: int = 0):
    """A sampler over a seeded random ``n`` of ``sampler``'s indices (all of them when n is None or larger).

    The lab's reduced scales keep the 20,000-image dataset and its split (so that the shipped
    encoders never see a test image) and only evaluate on fewer of the images.
    """
    indices = torch.as_tensor(list(sampler.indices))
    if n is None or n >= len(indices):
        return sampler
    keep = torch.randperm(len(indices), generator=torch.Generator().manual_seed(seed))[:n]
    return _sampler(indices[keep])


# Neuromatch's "shape_posX_spaced" bias: shape class -> the posX range [lo, hi) it keeps.
BIAS_POSX_RANGES = ((0.0, 0.3), (0.35, 0.65), (0.7, 1.0))


def biased_split(dataset, seed: int = 0, control: bool = False, train_fraction: float = 0.95):
    """Train on a shape-posX-correlated subset, test on unbiased held-out images.

    As in the Neuromatch tutorial: the data are first split ``train_fraction`` : rest
    (seeded, as :func:`train_test_split`); the rest (5%) is the test set, where shape
    and posX are independent. The training pool then keeps only squares with posX in
    [0, 0.3), ellipses in [0.35, 0.65) and hearts in [0.7, 1.0) (29 of 96 shape-posX
    cells: about 3.3x fewer images). ``control=True`` keeps the same number of images
    drawn at random from the same pool instead (no bias).
    Returns (train_sampler, test_sampler).
    """
    pool, test = _split_indices(len(dataset), train_fraction, seed)
    shape = dataset.latents_classes[pool.to(dataset.latents_classes.device), 0].cpu()
    pos_x = dataset.latent("posX")[pool.to(dataset.latents_values.device)].cpu()
    keep = torch.zeros(len(pool), dtype=torch.bool)
    for kind, (lo, hi) in enumerate(BIAS_POSX_RANGES):
        keep |= (shape == kind) & (pos_x >= lo) & (pos_x < hi)
    if control:
        chosen = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed + 1))[: int(keep.sum())]
        return _sampler(pool[chosen]), _sampler(test)
    return _sampler(pool[keep]), _sampler(test)
