"""Batched image augmentation with per-sample random parameters, on the batch's device.

Why this module exists: torchvision's random transforms, applied to a batched
tensor (B, C, H, W), draw ONE set of random parameters and apply it to every
image of the batch (the same crop, the same rotation, the same jitter). That is
wrong for SimCLR and BYOL, whose views must be independent draws per sample.
Running torchvision per sample in a DataLoader is right but slow. Here every
transform draws B parameter sets at once and applies them in one batched op
(affine_grid + grid_sample, grouped conv, masks) on whatever device the batch
is on: no per-sample Python loop, no DataLoader, no host-device copy or sync.

Measured (benchmarks/bench_byol.py, 2-core CPU shared with other jobs, torch 2.14): BYOL's view-1 pipeline on a
batch of 256 images of 96 px took 0.92 s here, kornia.augmentation's equivalent 1.32 s (1.43x; an earlier run
under other load: 1.07x), torchvision image by image 22.5 s (24x). So this module is faster than kornia on a CPU,
but not by much: kornia is a well-kept alternative. In a whole BYOL step of a ResNet-18 on a CPU the network
dominates (see the benchmark); no GPU figure has been measured.

Data flow in the labs: the dataset stays on the device as one uint8 tensor (4x
smaller than float32); each step slices a batch by index and converts only
that batch:

>>> images = torch.randint(0, 256, (1000, 3, 32, 32), dtype=torch.uint8)  # .cuda() in the labs
>>> x = to_float(images[:256], max_value=255)       # (B, C, H, W) float in [0, 1], no device sync
>>> x1, x2 = two_views(x, simclr_augment(32))
>>> x1.shape
torch.Size([256, 3, 32, 32])

Every transform is called as ``t(x, generator=None)``: ``x`` a float batch
(B, C, H, W) in [0, 1] with C = 1 or 3; ``generator`` an optional
``torch.Generator`` on the batch's device, for reproducible draws. The output
has x's shape, dtype and device (the crops change H, W to ``size``). Semantics
follow the torchvision transform of the same name, applied per sample; each
docstring says where they differ.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .images import to_float  # noqa: F401  (labkit's one uint8 -> float converter, also reached as augment.to_float)

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision's rgb_to_grayscale


# ---------------------------------------------------------------- helpers

def _check(x):
    if not (torch.is_tensor(x) and x.is_floating_point() and x.ndim == 4 and x.shape[1] in (1, 3)):
        got = f"{tuple(x.shape)} {x.dtype}" if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"augment expects a float batch (B, C, H, W), C = 1 or 3, values in [0, 1]; got {got}. "
                         "Convert uint8 or bool images with labkit.images.to_float(images), which maps 0..255 "
                         "to [0, 1] and keeps binary 0/1 images (dSprites) at 0/1.")


def _uniform(lo, hi, shape, x, generator):
    """Floats uniform in [lo, hi), of the given shape, on x's device and dtype."""
    u = torch.rand(shape, device=x.device, generator=generator)
    return (lo + (hi - lo) * u).to(x.dtype)


def _coin(p, x, generator):
    """(B, 1, 1, 1) bool: which samples a transform with probability p applies to."""
    return (torch.rand(x.shape[0], device=x.device, generator=generator) < p).view(-1, 1, 1, 1)


def _pm(v, center=0.0):
    """torchvision's range convention: a number v -> (center - v, center + v), a pair -> itself."""
    return (float(v[0]), float(v[1])) if isinstance(v, (tuple, list)) else (center - v, center + v)


def _pair(size):
    return (size, size) if isinstance(size, int) else tuple(size)


def _gray(x):
    """(B, 3, H, W) -> (B, 1, H, W) luma; (B, 1, H, W) is returned as it is."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b).unsqueeze(1)


def _adjust_brightness(x, f):
    """Blend (B, C, H, W) with black by factors f (B, 1, 1, 1), as torchvision's adjust_brightness."""
    return (x * f).clamp_(0, 1)


def _adjust_contrast(x, f):
    """Blend with the image's mean luma, as torchvision's adjust_contrast."""
    mean = _gray(x.mean((2, 3), keepdim=True))               # (B, 1, 1, 1): luma is linear
    return torch.lerp(mean, x, f).clamp_(0, 1)


def _adjust_saturation(x, f):
    """Blend RGB with its own luma, as torchvision's adjust_saturation."""
    return torch.lerp(_gray(x), x, f).clamp_(0, 1)


def _shift_hue(x, shift):
    """Turn the hue of RGB (B, 3, H, W) by ``shift`` (B, 1, 1, 1) turns, keeping HSV saturation and
    value, as torchvision's adjust_hue; done without a full HSV round trip (the per-pixel max and
    min channel stay, the hue decides which channel is which)."""
    r, g, b = x.unbind(1)                                    # (B, H, W) each
    maxc = torch.maximum(torch.maximum(r, g), b)
    delta = maxc - torch.minimum(torch.minimum(r, g), b)     # = HSV value * saturation
    d = torch.where(delta > 0, delta, torch.ones_like(delta))
    h = torch.where(maxc == r, (g - b) / d, torch.where(maxc == g, (b - r) / d + 2, (r - g) / d + 4))
    h = h + 6 * shift.view(-1, 1, 1)                         # hue in sixths of the circle
    h = h - 6 * torch.floor(h / 6)                           # wrapped into [0, 6)
    k = torch.stack([h + 5, h + 3, h + 1], 1)                # (B, 3, H, W): R, G, B
    k = torch.where(k >= 6, k - 6, k)
    return maxc.unsqueeze(1) - delta.unsqueeze(1) * torch.minimum(k, 4 - k).clamp_(0, 1)


def _sample_boxes(x, scale, ratio, generator, attempts=10):
    """torchvision's RandomResizedCrop.get_params, vectorised over samples and attempts.

    Returns ``fits`` (B,) bool and the box (top, left, height, width), each (B,),
    whole pixels, of each sample's first attempt that fits in the image.
    """
    B, _, H, W = x.shape
    area = H * W * _uniform(scale[0], scale[1], (B, attempts), x, generator).float()
    aspect = _uniform(math.log(ratio[0]), math.log(ratio[1]), (B, attempts), x, generator).float().exp()
    w, h = (area * aspect).sqrt().round(), (area / aspect).sqrt().round()   # (B, attempts)
    ok = (w > 0) & (w <= W) & (h > 0) & (h <= H)
    first = ok.float().argmax(1, keepdim=True)               # first attempt that fits, (B, 1)
    h, w = h.gather(1, first).squeeze(1), w.gather(1, first).squeeze(1)     # (B,)
    u = torch.rand(2, B, device=x.device, generator=generator)
    top = torch.minimum((u[0] * (H - h + 1)).floor(), H - h)
    left = torch.minimum((u[1] * (W - w + 1)).floor(), W - w)
    return ok.any(1), top, left, h, w


# ---------------------------------------------------------------- functional ops

def affine(x, angle, translate, scale, interpolation="nearest", fill=0.0):
    """Per-sample rotation, translation and scaling about the image centre, one grid_sample call.

    x (B, C, H, W); angle (B,) degrees, counter-clockwise as displayed (as
    torchvision's rotate and dSprites' orientation); translate (B, 2) pixels
    (right, down); scale (B,). Equals torchvision.transforms.functional.affine(
    x[b], -angle[b], translate[b], scale[b], shear=0): its affine counts angles clockwise.
    """
    B, C, H, W = x.shape
    a = torch.deg2rad(angle.to(x.dtype))
    c, s = torch.cos(a) / scale, torch.sin(a) / scale
    tx, ty = translate.to(x.dtype).unbind(1)
    # Inverse map in centred pixel coordinates (y down): p_in = [[c, -s], [s, c]] (p_out - t),
    # conjugated by diag(W/2, H/2) into affine_grid's normalised [-1, 1] coordinates.
    theta = torch.stack([torch.stack([c, -s * H / W, -(c * tx - s * ty) * 2 / W], 1),
                         torch.stack([s * W / H, c, -(s * tx + c * ty) * 2 / H], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta, [B, C, H, W], align_corners=False)                   # (B, H, W, 2)
    if fill == 0:
        return F.grid_sample(x, grid, mode=interpolation, padding_mode="zeros", align_corners=False)
    out = F.grid_sample(torch.cat([x, x.new_ones(B, 1, H, W)], 1), grid, mode=interpolation,
                        padding_mode="zeros", align_corners=False)                   # (B, C + 1, H, W)
    inside = out[:, -1:]                 # weight that came from inside the source image, (B, 1, H, W)
    return out[:, :-1] + fill * (1 - inside)  # torchvision's img * inside + ... darkens bilinear edges twice


def resized_crop(x, boxes, size, interpolation="bilinear"):
    """Crop box b = (top, left, height, width) in pixels, (B, 4), from sample b; resize to size.

    One grid_sample call; equals torchvision's resized_crop(..., antialias=False)
    (no antialiasing when shrinking), except on the outermost output rows and
    columns when enlarging: there it blends in the true pixels just outside the
    box, where torchvision repeats the box's edge.
    """
    B, C, H, W = x.shape
    out_h, out_w = _pair(size)
    top, left, h, w = boxes.to(x.dtype).unbind(1)            # (B,) each
    zero = torch.zeros_like(h)
    theta = torch.stack([torch.stack([w / W, zero, (2 * left + w) / W - 1], 1),
                         torch.stack([zero, h / H, (2 * top + h) / H - 1], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta, [B, C, out_h, out_w], align_corners=False)        # (B, out_h, out_w, 2)
    return F.grid_sample(x, grid, mode=interpolation, padding_mode="border", align_corners=False)


# ---------------------------------------------------------------- transforms

@dataclass
class RandomAffine:
    """Per-sample RandomAffine: angle ~ U(-degrees, degrees) (or U(degrees) for a pair),
    translation ~ U(-t W, t W) x U(-t H, t H) rounded to whole pixels, scale ~ U(scale).

    Same distribution as torchvision's RandomAffine (whose angles count clockwise:
    the same for a symmetric range). ``interpolation="nearest"`` is torchvision's default and keeps binary images
    (dSprites) binary; "bilinear" is smoother for grey or colour images.
    (B, C, H, W) -> (B, C, H, W); ``fill`` is the value outside the source image.
    """
    degrees: float | tuple[float, float] = 90.0
    translate: tuple[float, float] = (0.2, 0.2)
    scale: tuple[float, float] = (0.8, 1.2)
    interpolation: str = "nearest"
    fill: float = 0.0

    def __post_init__(self):
        if self.interpolation not in ("nearest", "bilinear"):
            raise ValueError(f"interpolation must be 'nearest' or 'bilinear', got {self.interpolation!r}")

    def __call__(self, x, generator=None):
        _check(x)
        B, _, H, W = x.shape
        angle = _uniform(*_pm(self.degrees), B, x, generator)
        max_dx, max_dy = self.translate[0] * W, self.translate[1] * H
        shift = torch.stack([_uniform(-max_dx, max_dx, B, x, generator),
                             _uniform(-max_dy, max_dy, B, x, generator)], 1).round()      # (B, 2) pixels
        return affine(x, angle, shift, _uniform(*self.scale, B, x, generator), self.interpolation, self.fill)


@dataclass
class RandomResizedCrop:
    """Per-sample crop of area fraction ~ U(scale) and aspect ratio w/h ~ logU(ratio),
    resized to ``size``: (B, C, H, W) -> (B, C, *size).

    Boxes are drawn as torchvision does (10 tries, then a centre crop clipped to
    ``ratio``); resizing is bilinear without antialiasing.
    """
    size: int | tuple[int, int]
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __call__(self, x, generator=None):
        _check(x)
        H, W = x.shape[-2:]
        fits, top, left, h, w = _sample_boxes(x, self.scale, self.ratio, generator)
        # Fallback when no try fits: the whole image, clipped to the ratio range, centred.
        fw, fh = W, H
        if W / H < min(self.ratio):
            fh = round(W / min(self.ratio))
        elif W / H > max(self.ratio):
            fw = round(H * max(self.ratio))
        fallback = ((H - fh) // 2, (W - fw) // 2, fh, fw)
        boxes = torch.stack([torch.where(fits, v, f) for v, f in zip((top, left, h, w), fallback)], 1)  # (B, 4)
        return resized_crop(x, boxes, self.size)


@dataclass
class RandomCrop:
    """Per-sample crop of ``size`` at a random position of the image padded by ``padding``
    pixels of value ``fill`` (the small-CIFAR crop): (B, C, H, W) -> (B, C, *size). Exact, no resampling."""
    size: int | tuple[int, int]
    padding: int = 4
    fill: float = 0.0

    def __call__(self, x, generator=None):
        _check(x)
        out_h, out_w = _pair(self.size)
        pad = self.padding
        xp = F.pad(x, (pad, pad, pad, pad), value=self.fill)  # (B, C, H + 2 pad, W + 2 pad)
        B, C, Hp, Wp = xp.shape
        if out_h > Hp or out_w > Wp:
            raise ValueError(f"RandomCrop size {(out_h, out_w)} is larger than the padded image {(Hp, Wp)}")
        top = torch.randint(0, Hp - out_h + 1, (B,), device=x.device, generator=generator)
        left = torch.randint(0, Wp - out_w + 1, (B,), device=x.device, generator=generator)
        rows = (top[:, None] + torch.arange(out_h, device=x.device))[:, :, None]     # (B, out_h, 1)
        cols = (left[:, None] + torch.arange(out_w, device=x.device))[:, None, :]    # (B, 1, out_w)
        batch = torch.arange(B, device=x.device)[:, None, None]
        return xp[batch, :, rows, cols].permute(0, 3, 1, 2).contiguous()            # (B, C, out_h, out_w)


@dataclass
class RandomHorizontalFlip:
    """Mirror each sample left-right with probability p. (B, C, H, W) -> same."""
    p: float = 0.5

    def __call__(self, x, generator=None):
        _check(x)
        return torch.where(_coin(self.p, x, generator), x.flip(-1), x)


@dataclass
class ColorJitter:
    """With probability p per sample, jitter brightness, contrast, saturation and hue.

    Factors are drawn per sample as torchvision's: brightness, contrast and
    saturation ~ U(max(0, 1 - v), 1 + v), hue shift ~ U(-hue, hue) turns of the
    HSV hue circle (a pair gives the range itself), clamped to [0, 1] after each
    op. The ORDER of the four ops is random per batch, not per sample (drawn on
    the CPU: from ``generator`` when it is a CPU generator, else from torch's
    global CPU generator, so a GPU batch never waits on a sync). One-channel
    images get brightness and contrast only. (B, C, H, W) -> same.
    """
    brightness: float | tuple[float, float] = 0.4
    contrast: float | tuple[float, float] = 0.4
    saturation: float | tuple[float, float] = 0.4
    hue: float | tuple[float, float] = 0.1
    p: float = 0.8

    def __call__(self, x, generator=None):
        _check(x)
        if self.p == 0:
            return x
        B = x.shape[0]

        def factor(v, center):                                # (B, 1, 1, 1), or None for "off"
            lo, hi = _pm(v, center)
            lo = max(lo, 0.0) if center else lo
            return None if lo == hi == center else _uniform(lo, hi, B, x, generator).view(-1, 1, 1, 1)

        rgb = x.shape[1] == 3
        steps = [(_adjust_brightness, factor(self.brightness, 1.0)),
                 (_adjust_contrast, factor(self.contrast, 1.0)),
                 (_adjust_saturation, factor(self.saturation, 1.0) if rgb else None),
                 (_shift_hue, factor(self.hue, 0.0) if rgb else None)]
        cpu_gen = generator if generator is not None and generator.device.type == "cpu" else None
        out = x
        for k in torch.randperm(4, generator=cpu_gen).tolist():
            op, f = steps[k]
            if f is not None:
                out = op(out, f)
        return torch.where(_coin(self.p, x, generator), out, x)


@dataclass
class RandomGrayscale:
    """With probability p per sample, replace RGB by its luma in all 3 channels. (B, C, H, W) -> same."""
    p: float = 0.2

    def __call__(self, x, generator=None):
        _check(x)
        return torch.where(_coin(self.p, x, generator), _gray(x).expand_as(x), x)


@dataclass
class GaussianBlur:
    """With probability p per sample, blur with a Gaussian of sigma ~ U(sigma), per sample.

    Separable kernels of odd ``kernel_size``, one per sample, applied by grouped
    conv with reflect padding, as torchvision's gaussian_blur. (B, C, H, W) -> same.
    """
    kernel_size: int
    sigma: tuple[float, float] = (0.1, 2.0)
    p: float = 0.5

    def __post_init__(self):
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"GaussianBlur kernel_size must be odd and positive, got {self.kernel_size}")

    def __call__(self, x, generator=None):
        _check(x)
        if self.p == 0:
            return x
        B, C, H, W = x.shape
        k, pad = self.kernel_size, self.kernel_size // 2
        if pad >= min(H, W):
            raise ValueError(f"GaussianBlur kernel_size {k} is too large for {H}x{W} images (reflect padding)")
        sigma = _uniform(*self.sigma, (B, 1), x, generator)
        t = torch.linspace(-pad, pad, k, device=x.device, dtype=x.dtype)
        kernel = torch.exp(-0.5 * (t / sigma) ** 2)                                 # (B, k)
        kernel = (kernel / kernel.sum(1, keepdim=True))[:, None].expand(B, C, k).reshape(B * C, k)
        y = F.pad(x, (pad, pad, pad, pad), mode="reflect").reshape(1, B * C, H + 2 * pad, W + 2 * pad)
        y = F.conv2d(y, kernel.view(B * C, 1, k, 1), groups=B * C)                  # (1, B * C, H, W + 2 pad)
        y = F.conv2d(y, kernel.view(B * C, 1, 1, k), groups=B * C)                  # (1, B * C, H, W)
        return torch.where(_coin(self.p, x, generator), y.view(B, C, H, W), x)


@dataclass
class RandomSolarize:
    """With probability p per sample, invert (x -> 1 - x) every pixel >= threshold. (B, C, H, W) -> same."""
    threshold: float = 0.5
    p: float = 0.0

    def __call__(self, x, generator=None):
        _check(x)
        return torch.where(_coin(self.p, x, generator) & (x >= self.threshold), 1 - x, x)


@dataclass
class RandomErasing:
    """With probability p per sample, set a box of area fraction ~ U(scale), aspect ~ logU(ratio)
    to ``value`` (cutout). Boxes are drawn as RandomResizedCrop's; none if 10 tries miss. (B, C, H, W) -> same."""
    p: float = 0.5
    scale: tuple[float, float] = (0.02, 0.33)
    ratio: tuple[float, float] = (0.3, 3.3)
    value: float = 0.0

    def __call__(self, x, generator=None):
        _check(x)
        B, _, H, W = x.shape
        fits, top, left, h, w = (v.view(B, 1, 1) for v in _sample_boxes(x, self.scale, self.ratio, generator))
        rows = torch.arange(H, device=x.device).view(1, H, 1)
        cols = torch.arange(W, device=x.device).view(1, 1, W)
        inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)  # (B, H, W)
        erase = _coin(self.p, x, generator) & (fits & inside).unsqueeze(1)              # (B, 1, H, W)
        return x.masked_fill(erase, self.value)


@dataclass
class Compose:
    """Apply ``transforms`` in order, passing the generator to each."""
    transforms: list

    def __call__(self, x, generator=None):
        for t in self.transforms:
            x = t(x, generator=generator)
        return x

    def __repr__(self):
        return "Compose([\n" + "".join(f"    {t!r},\n" for t in self.transforms) + "])"


def two_views(x, aug, aug2=None, generator=None):
    """Two independent augmentations (x1, x2) of the same batch x (B, C, H, W).

    ``aug2`` gives the second view its own pipeline (BYOL's asymmetric views).
    """
    return aug(x, generator=generator), (aug2 or aug)(x, generator=generator)


# ---------------------------------------------------------------- presets

def _blur_kernel(size):
    """10% of the image side, odd (SimCLR appendix A; BYOL's 23 px at 224)."""
    return int(0.1 * size) // 2 * 2 + 1


def dsprites_affine():
    """Neuromatch Academy's dSprites SimCLR augmentation (NMA Deep Learning W3D3, Tutorial 1):
    torchvision RandomAffine(degrees=90, translate=(0.2, 0.2), scale=(0.8, 1.2)) per
    sample, nearest interpolation, on 64x64 binary images (stays binary)."""
    return Compose([RandomAffine(degrees=90, translate=(0.2, 0.2), scale=(0.8, 1.2), interpolation="nearest")])


def simclr_augment(size, strength=0.5, blur=None):
    """SimCLR (Chen et al. 2020, appendix A): crop of area 0.08-1 resized to ``size``,
    flip, colour jitter (0.8 s, 0.8 s, 0.8 s, 0.2 s) with p 0.8, grayscale p 0.2,
    Gaussian blur p 0.5 (sigma 0.1-2, kernel 10% of the side).

    ``strength`` s = 0.5 gives jitter (0.4, 0.4, 0.4, 0.1), the paper's CIFAR-10 setting;
    s = 1 is its ImageNet setting. ``blur=None`` blurs only images larger than 32 px
    (the paper drops blur for CIFAR-10).
    """
    s, side = strength, _pair(size)[0]
    if blur is None:
        blur = side > 32
    out = [RandomResizedCrop(size, scale=(0.08, 1.0)), RandomHorizontalFlip(0.5),
           ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s, p=0.8), RandomGrayscale(0.2)]
    if blur:
        out.append(GaussianBlur(_blur_kernel(side), sigma=(0.1, 2.0), p=0.5))
    return Compose(out)


def byol_augment(size, view=1):
    """BYOL (Grill et al. 2020, Table 6), view 1 or 2 of its asymmetric pair: crop 0.08-1,
    flip, colour jitter (0.4, 0.4, 0.2, 0.1) p 0.8, grayscale p 0.2, blur p 1.0 / 0.1
    (sigma 0.1-2, kernel 10% of the side), solarize p 0.0 / 0.2.
    Use ``two_views(x, byol_augment(s, 1), byol_augment(s, 2))``."""
    if view not in (1, 2):
        raise ValueError(f"BYOL has views 1 and 2, got view={view!r}")
    return Compose([RandomResizedCrop(size, scale=(0.08, 1.0)), RandomHorizontalFlip(0.5),
                    ColorJitter(0.4, 0.4, 0.2, 0.1, p=0.8), RandomGrayscale(0.2),
                    GaussianBlur(_blur_kernel(_pair(size)[0]), sigma=(0.1, 2.0), p=1.0 if view == 1 else 0.1),
                    RandomSolarize(0.5, p=0.0 if view == 1 else 0.2)])


def mnist_cutout_rotate(degrees=15.0, erase_p=0.5, erase_scale=(0.02, 0.2)):
    """MNIST contrastive lab: a small rotation (bilinear) and a random erased patch
    (torchvision's RandomErasing, value 0 = background; area at most 20%, not its
    default 33%, so that a 28x28 digit keeps most of its strokes)."""
    return Compose([RandomAffine(degrees=degrees, translate=(0.0, 0.0), scale=(1.0, 1.0), interpolation="bilinear"),
                    RandomErasing(p=erase_p, scale=erase_scale)])


def cutout_and_rotate(x, size=9, fill=0.5, generator=None):
    """Lab 2's MNIST view: a ``size`` x ``size`` square set to ``fill`` (mid-gray of [0, 1] images), then a
    90-degree counter-clockwise turn (``torch.rot90(., 1, dims=(-2, -1))``). (B, C, H, W) -> (B, C, W, H).

    The square's top-left corner is drawn per image, uniformly among the positions where the whole square fits
    (rows and columns 0 .. H - size and 0 .. W - size), so every image and every call gets its own view.
    """
    _check(x)
    B, _, H, W = x.shape
    if size > min(H, W):
        raise ValueError(f"cutout_and_rotate: a {size}x{size} square does not fit in {H}x{W} images")
    top = torch.randint(0, H - size + 1, (B, 1, 1), device=x.device, generator=generator)
    left = torch.randint(0, W - size + 1, (B, 1, 1), device=x.device, generator=generator)
    rows = torch.arange(H, device=x.device).view(1, H, 1)
    cols = torch.arange(W, device=x.device).view(1, 1, W)
    inside = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)  # (B, H, W)
    return torch.rot90(x.masked_fill(inside.unsqueeze(1), fill), 1, dims=(-2, -1))


def crop_flip(size, padding=4):
    """Small-CIFAR augmentation (He et al. 2016, sec. 4.2): random crop of a zero-padded image, horizontal flip."""
    return Compose([RandomCrop(size, padding=padding), RandomHorizontalFlip(0.5)])
