"""Tests for labkit.augment: per-sample randomness, torchvision semantics, presets.

Each transform is compared with torchvision applied to one sample at a time
(with the same fixed parameters, or in distribution), which is the behaviour
the batched version must reproduce.
"""
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF

from labkit import augment as A

RANDOM_TRANSFORMS = {  # every random transform: p = 1, or p = 0.5 for the on/off ones
    "affine": lambda: A.RandomAffine(),
    "affine_bilinear": lambda: A.RandomAffine(interpolation="bilinear", fill=0.5),
    "resized_crop": lambda: A.RandomResizedCrop(24),
    "crop": lambda: A.RandomCrop(32, padding=4),
    "flip": lambda: A.RandomHorizontalFlip(0.5),
    "jitter": lambda: A.ColorJitter(p=1.0),
    "grayscale": lambda: A.RandomGrayscale(0.5),
    "blur": lambda: A.GaussianBlur(5, p=1.0),
    "solarize": lambda: A.RandomSolarize(0.5, p=0.5),
    "erasing": lambda: A.RandomErasing(p=1.0),
}


def image_batch(B=16, C=3, H=32, W=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, C, H, W, generator=g) * 0.9 + 0.05   # (B, C, H, W), no pixel exactly 0 or 1


def n_distinct(y):
    """Number of different images in the batch y (B, ...)."""
    flat = y.flatten(1)
    different = (flat[:, None] - flat[None]).abs().amax(-1) > 1e-6   # (B, B)
    return len({tuple(row.tolist()) for row in different})


@pytest.mark.parametrize("name", RANDOM_TRANSFORMS)
@pytest.mark.parametrize("C", [1, 3])
def test_shape_dtype_device_and_range(name, C):
    t = RANDOM_TRANSFORMS[name]()
    x = image_batch(C=C)
    y = t(x)
    size = 24 if name == "resized_crop" else 32
    assert y.shape == (16, C, size, size) and y.dtype == x.dtype and y.device == x.device
    assert y.min() >= 0 and y.max() <= 1
    assert repr(t).startswith(type(t).__name__ + "(")


@pytest.mark.parametrize("name", RANDOM_TRANSFORMS)
def test_parameters_differ_per_sample(name):
    """torchvision on a batch would give 16 identical outputs; here each sample has its own draw."""
    x = image_batch(B=1).expand(16, -1, -1, -1)
    y = RANDOM_TRANSFORMS[name]()(x, generator=torch.Generator().manual_seed(1))
    if name in ("flip", "grayscale", "solarize"):             # p = 0.5: two possible outputs, both seen
        assert n_distinct(y) == 2
    else:
        assert n_distinct(y) >= 12


@pytest.mark.parametrize("cls, kwargs", [
    (A.RandomHorizontalFlip, {}), (A.RandomGrayscale, {}), (A.RandomSolarize, {"threshold": 0.5}),
    (A.GaussianBlur, {"kernel_size": 5, "sigma": (1.0, 2.0)}), (A.ColorJitter, {}), (A.RandomErasing, {}),
])
def test_p0_is_identity_and_p1_always_applies(cls, kwargs):
    x = image_batch()
    assert torch.equal(cls(p=0.0, **kwargs)(x), x)
    y = cls(p=1.0, **kwargs)(x)
    assert ((y - x).flatten(1).abs().amax(1) > 1e-4).all()


def test_generator_makes_results_reproducible():
    x = image_batch(C=3, H=48, W=48)
    aug = A.simclr_augment(40, blur=True)
    y1 = aug(x, generator=torch.Generator().manual_seed(3))
    y2 = aug(x, generator=torch.Generator().manual_seed(3))
    y3 = aug(x, generator=torch.Generator().manual_seed(4))
    assert torch.equal(y1, y2) and not torch.equal(y1, y3)


# ---------------------------------------------------------------- affine

def test_affine_identity_nearest():
    x = image_batch()
    assert torch.equal(A.RandomAffine(degrees=0, translate=(0, 0), scale=(1, 1))(x), x)


def test_rotation_by_90_is_counter_clockwise_like_torchvision():
    x = torch.zeros(2, 1, 8, 8)
    x[:, :, 1, 2:6] = 1.0       # an asymmetric "L": a bar along the top ...
    x[:, :, 1:5, 5] = 0.7       # ... and one down the right side
    y = A.RandomAffine(degrees=(90, 90), translate=(0, 0), scale=(1, 1))(x)
    ccw = torch.rot90(x, k=1, dims=(-2, -1))   # counter-clockwise as displayed
    assert torch.equal(y, ccw)
    assert torch.equal(TF.rotate(x, 90), ccw)


def test_affine_matches_torchvision_for_fixed_parameters():
    g = torch.Generator().manual_seed(0)
    x = image_batch(B=8, H=24, W=32)                        # not square: checks the aspect handling
    angle = torch.empty(8).uniform_(-90, 90, generator=g)
    shift = torch.randint(-6, 7, (8, 2), generator=g).float()
    scale = torch.empty(8).uniform_(0.8, 1.2, generator=g)
    for mode, fill in [("nearest", 0.0), ("nearest", 0.3), ("bilinear", None)]:
        y = A.affine(x, angle, shift, scale, interpolation=mode, fill=fill or 0.0)
        # torchvision's affine counts angles clockwise, ours counter-clockwise (as its rotate)
        ref = torch.stack([TF.affine(x[b], -angle[b].item(), shift[b].tolist(), scale[b].item(), shear=[0.0],
                                     interpolation=T.InterpolationMode(mode), fill=fill) for b in range(8)])
        if mode == "nearest":   # rounding ties may fall the other way on a few pixels
            assert ((y - ref).abs() > 1e-5).float().mean() < 0.005
        else:
            torch.testing.assert_close(y, ref, atol=1e-4, rtol=0)


def test_affine_fill_of_a_constant_image_is_seamless():
    x = torch.full((3, 1, 16, 16), 0.3)
    y = A.affine(x, torch.tensor([30.0, -45.0, 10.0]), torch.tensor([[2.0, 3.0], [0, 0], [-5, 1]]),
                 torch.tensor([0.8, 1.0, 1.2]), interpolation="bilinear", fill=0.3)
    torch.testing.assert_close(y, x, atol=1e-6, rtol=0)


def test_random_affine_distribution_matches_torchvision():
    """Centre of mass of a dot image, batched vs torchvision per sample: same spread and shift."""
    n, H = 1000, 40
    x = torch.zeros(1, 1, H, H)
    x[..., 13:16, 24:27] = 1.0                               # a 3x3 dot off the centre

    def com(img):                                            # (N, 1, H, W) -> (N, 2) (row, col)
        idx = torch.arange(H, dtype=img.dtype)
        mass = img.sum((1, 2, 3))
        return torch.stack([(img.sum((1, 3)) * idx).sum(-1), (img.sum((1, 2)) * idx).sum(-1)], 1) / mass[:, None]

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                                 # 1000 tiny calls: thread start-up would dominate
    try:
        ref = torch.stack([T.RandomAffine(90, (0.2, 0.2), (0.8, 1.2))(x[0]) for _ in range(n)])
    finally:
        torch.set_num_threads(threads)
    batch = x.expand(n, -1, -1, -1)                          # (n, 1, H, H), one batched call
    ours = A.RandomAffine(90, (0.2, 0.2), (0.8, 1.2))(batch, generator=torch.Generator().manual_seed(0))
    c0, c_ref, c_ours = com(x)[0], com(ref), com(ours)
    shift_ref, shift_ours = (c_ref - c0).norm(dim=1), (c_ours - c0).norm(dim=1)
    assert abs(shift_ours.mean() / shift_ref.mean() - 1) < 0.08
    assert abs(c_ours.var(0).sum().sqrt() / c_ref.var(0).sum().sqrt() - 1) < 0.1
    centre = (H - 1) / 2
    r_ref, r_ours = (c_ref - centre).norm(dim=1), (c_ours - centre).norm(dim=1)
    assert abs(r_ours.mean() / r_ref.mean() - 1) < 0.08
    assert (ours.sum((1, 2, 3)) > 0).all() and abs(ours.sum() / ref.sum() - 1) < 0.05   # dot kept, same area


# ---------------------------------------------------------------- crops

def test_resized_crop_full_box_is_identity():
    x = image_batch()
    y = A.RandomResizedCrop(32, scale=(1, 1), ratio=(1, 1))(x)
    torch.testing.assert_close(y, x, atol=1e-5, rtol=0)


def test_resized_crop_matches_torchvision_for_fixed_boxes():
    x = image_batch(B=4, H=40, W=48)
    boxes = torch.tensor([[0, 0, 40, 48], [5, 7, 10, 20], [30, 40, 10, 8], [2, 3, 37, 30]]).float()
    y = A.resized_crop(x, boxes, (24, 20))
    ref = torch.stack([TF.resized_crop(x[b], *[int(v) for v in boxes[b]], [24, 20], antialias=False) for b in range(4)])
    torch.testing.assert_close(y[[0, 3]], ref[[0, 3]], atol=1e-5, rtol=0)   # boxes as large as the output
    # Enlarged boxes differ only on the outer rows and columns (true neighbours vs. repeated edge).
    torch.testing.assert_close(y[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-5, rtol=0)


def test_resized_crops_are_sub_regions_with_the_asked_area_and_ratio():
    B, H, W, S = 64, 64, 64, 16
    rows, cols = torch.meshgrid(torch.arange(H).float(), torch.arange(W).float(), indexing="ij")
    coords = torch.stack([rows, cols, torch.zeros_like(rows)]).expand(B, -1, -1, -1) / 100  # where each pixel came from
    y = A.RandomResizedCrop(S, scale=(0.2, 0.6), ratio=(0.5, 2.0))(coords, generator=torch.Generator().manual_seed(0))
    y = y * 100
    top, bottom = y[:, 0].amin((1, 2)), y[:, 0].amax((1, 2))
    left, right = y[:, 1].amin((1, 2)), y[:, 1].amax((1, 2))
    assert (top >= 0).all() and (left >= 0).all() and (bottom <= H - 1).all() and (right <= W - 1).all()
    h, w = (bottom - top) * S / (S - 1), (right - left) * S / (S - 1)   # box size from its sample centres
    assert ((h * w / (H * W)).clamp(0.17, 0.65) == h * w / (H * W)).all()
    assert ((w / h).clamp(0.45, 2.2) == w / h).all()
    assert torch.equal(y[:, 2], torch.zeros_like(y[:, 2]))


def test_random_crop_is_a_shifted_window_of_the_padded_image():
    x = image_batch(B=8, H=12, W=12)
    assert torch.equal(A.RandomCrop(12, padding=0)(x), x)
    y = A.RandomCrop(10, padding=2, fill=0.0)(x)
    xp = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for b in range(8):
        windows = [xp[b, :, i:i + 10, j:j + 10] for i in range(7) for j in range(7)]
        assert any(torch.equal(y[b], w) for w in windows)


# ---------------------------------------------------------------- colour, blur, solarize

@pytest.mark.parametrize("op, kwargs, ref", [
    ("brightness", {"brightness": (1.3, 1.3)}, lambda im: TF.adjust_brightness(im, 1.3)),
    ("contrast", {"contrast": (0.6, 0.6)}, lambda im: TF.adjust_contrast(im, 0.6)),
    ("saturation", {"saturation": (1.5, 1.5)}, lambda im: TF.adjust_saturation(im, 1.5)),
    ("hue", {"hue": (0.15, 0.15)}, lambda im: TF.adjust_hue(im, 0.15)),
    ("hue_negative", {"hue": (-0.3, -0.3)}, lambda im: TF.adjust_hue(im, -0.3)),
    ("hue_half_turn", {"hue": (0.5, 0.5)}, lambda im: TF.adjust_hue(im, 0.5)),
])
def test_color_jitter_ops_match_torchvision(op, kwargs, ref):
    x = image_batch(B=4)
    x[0, :, :4] = 0.5                                          # grey pixels: hue undefined, saturation 0
    x[1, :, 0, :5] = torch.tensor([[1, 1, 0, 1, 0.2], [1, 0, 1, 0, 0.2], [0, 1, 1, 0, 0.9]]).float()  # ties, pure
    off = {"brightness": 0, "contrast": 0, "saturation": 0, "hue": 0}
    y = A.ColorJitter(**{**off, **kwargs}, p=1.0)(x)
    torch.testing.assert_close(y, torch.stack([ref(im) for im in x]), atol=2e-5, rtol=0)


def test_color_jitter_on_one_channel_uses_brightness_and_contrast_only():
    x = image_batch(C=1)
    assert torch.equal(A.ColorJitter(brightness=0, contrast=0, saturation=0.4, hue=0.1, p=1.0)(x), x)
    assert not torch.equal(A.ColorJitter(p=1.0)(x), x)


def test_grayscale_gives_equal_channels():
    x = image_batch()
    y = A.RandomGrayscale(p=1.0)(x)
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 1], y[:, 2])
    torch.testing.assert_close(y, TF.rgb_to_grayscale(x, num_output_channels=3), atol=1e-6, rtol=0)


def test_blur_preserves_a_constant_image_and_matches_torchvision():
    x = torch.full((4, 3, 16, 16), 0.37)
    torch.testing.assert_close(A.GaussianBlur(7, p=1.0)(x), x, atol=1e-6, rtol=0)
    x = image_batch(B=2)
    y = A.GaussianBlur(5, sigma=(1.3, 1.3), p=1.0)(x)
    torch.testing.assert_close(y, TF.gaussian_blur(x, [5, 5], [1.3, 1.3]), atol=1e-5, rtol=0)


def test_blur_sigma_differs_per_sample():
    x = image_batch(B=1).expand(32, -1, -1, -1)
    y = A.GaussianBlur(7, sigma=(0.1, 3.0), p=1.0)(x)
    detail = (y - x).abs().mean((1, 2, 3))                   # grows with sigma
    assert detail.max() > 3 * detail.min()


def test_solarize_inverts_pixels_at_or_above_the_threshold():
    x = torch.tensor([0.0, 0.2, 0.5, 0.7, 1.0]).view(1, 1, 1, 5).repeat(2, 3, 5, 1)
    y = A.RandomSolarize(threshold=0.5, p=1.0)(x)
    assert torch.equal(y[0, 0, 0], torch.tensor([0.0, 0.2, 0.5, 1.0 - 0.7, 0.0]))
    assert torch.equal(y, TF.solarize(x, 0.5))


def test_erasing_sets_one_box_of_the_asked_area_to_the_value():
    x = image_batch(B=32)
    y = A.RandomErasing(p=1.0, scale=(0.1, 0.2), value=0.0)(x)
    erased = (y == 0).all(1)                                  # (B, H, W)
    frac = erased.float().mean((1, 2))
    assert (frac > 0.08).all() and (frac < 0.23).all()
    rows, cols = erased.any(2), erased.any(1)                 # a box: its bounding box is full
    assert torch.equal(erased.sum((1, 2)), rows.sum(1) * cols.sum(1))


# ---------------------------------------------------------------- helpers and presets

def test_to_float():
    u = torch.randint(0, 256, (5, 7, 9, 3), dtype=torch.uint8)
    x = A.to_float(u, channels_last=True)
    assert x.shape == (5, 3, 7, 9) and x.dtype == torch.float32 and x.is_contiguous()
    assert torch.equal(x * 255, u.permute(0, 3, 1, 2).float())
    d = A.to_float(torch.randint(0, 2, (4, 64, 64), dtype=torch.uint8), max_value=1)
    assert d.shape == (4, 1, 64, 64) and set(d.unique().tolist()) <= {0.0, 1.0}


def test_uint8_input_gets_a_clear_error():
    with pytest.raises(ValueError, match=r"labkit\.images\.to_float"):
        A.RandomHorizontalFlip()(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))


def test_two_views_are_independent():
    x = image_batch(C=3, H=32, W=32)
    x1, x2 = A.two_views(x, A.simclr_augment(32))
    assert x1.shape == x2.shape == x.shape and not torch.equal(x1, x2)
    v1, v2 = A.two_views(x, A.byol_augment(32, 1), A.byol_augment(32, 2))
    assert v1.shape == v2.shape == x.shape


def test_presets():
    binary = (torch.rand(8, 1, 64, 64) > 0.7).float()
    y = A.dsprites_affine()(binary)
    assert set(y.unique().tolist()) <= {0.0, 1.0}
    assert A.mnist_cutout_rotate()(image_batch(C=1, H=28, W=28)).shape == (16, 1, 28, 28)
    assert A.crop_flip(32)(image_batch()).shape == (16, 3, 32, 32)
    assert A.simclr_augment(96)(image_batch(B=4, H=96, W=96)).shape == (4, 3, 96, 96)
    assert not any(isinstance(t, A.GaussianBlur) for t in A.simclr_augment(32).transforms)
    blur1, blur2 = (next(t for t in A.byol_augment(224, v).transforms if isinstance(t, A.GaussianBlur)) for v in (1, 2))
    assert blur1.kernel_size == 23 and (blur1.p, blur2.p) == (1.0, 0.1)
    with pytest.raises(ValueError):
        A.byol_augment(32, view=3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_runs_on_the_gpu_without_host_sync():
    x = image_batch().cuda()
    presets = [A.simclr_augment(24, blur=True), A.byol_augment(32, 2), A.dsprites_affine(),
               A.mnist_cutout_rotate(), A.crop_flip(32), A.Compose([A.RandomAffine(fill=0.5)])]
    torch.cuda.synchronize()
    outputs = []
    torch.cuda.set_sync_debug_mode("error")                  # any host-device sync raises
    try:
        for seed in (0, 0):
            torch.manual_seed(0)   # the jitter order comes from torch's CPU generator when the generator is a GPU one
            g = torch.Generator("cuda").manual_seed(seed)
            outputs.append([aug(x, generator=g) for aug in presets])
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for y1, y2 in zip(*outputs):
        assert y1.device == x.device and torch.equal(y1, y2)
        assert y1.min() >= 0 and y1.max() <= 1
