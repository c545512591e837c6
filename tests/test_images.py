"""labkit.images.to_float, the one uint8 -> float conversion: 0..255 photos, binary dSprites, bool, floats."""
import pytest
import torch

from labkit import augment, evaluation, images, training
from labkit.datasets import dsprites


def test_it_is_the_only_converter():
    assert augment.to_float is evaluation.to_float is images.to_float
    assert training.image_scale is evaluation.image_scale is images.image_scale


def test_photos_in_0_255_map_to_0_1_with_a_channel_axis():
    u = torch.arange(256, dtype=torch.uint8).view(1, 16, 16)      # (B, H, W)
    x = images.to_float(u)
    assert x.shape == (1, 1, 16, 16) and x.dtype == torch.float32 and x.is_contiguous()
    assert torch.equal(x * 255, u.unsqueeze(1).float()) and x.max() == 1.0
    rgb = torch.randint(0, 256, (5, 7, 9, 3), dtype=torch.uint8)  # (B, H, W, C), CIFAR-10's .data
    assert torch.equal(images.to_float(rgb, channels_last=True), rgb.permute(0, 3, 1, 2).float() / 255)


def test_binary_dsprites_stay_0_and_1():
    """dSprites are stored as uint8 0/1: 1 means white. Divided by 255 they would be almost black."""
    data = dsprites.DSprites.generate(16, seed=0)
    assert set(data.images.unique().tolist()) == {0, 1}
    x = images.to_float(data.images)
    assert x.shape == (16, 1, 64, 64) and set(x.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(x[3], data[3][0])                           # the Dataset's items agree
    assert torch.equal(evaluation.extract_features(None, data.images, device="cpu"), x.flatten(1))
    assert images.image_scale(data.images) == 1.0
    assert images.to_float(data.images, max_value=255).max() == pytest.approx(1 / 255)  # only when asked


def test_bool_and_float_images_keep_their_values():
    mask = torch.rand(4, 8, 8) > 0.5
    assert torch.equal(images.to_float(mask), mask.unsqueeze(1).float())
    f = torch.rand(4, 3, 8, 8, dtype=torch.float64)
    out = images.to_float(f)
    assert out.dtype == torch.float32 and torch.equal(out, f.float())
    features = torch.randn(4, 84)                                 # not images: shape kept, values kept
    assert torch.equal(images.to_float(features), features)


def test_the_scale_is_decided_once_per_dataset():
    """A batch could be all black (max 0); the loops ask image_scale of the whole dataset, then pass it."""
    photos = torch.randint(0, 256, (10, 1, 4, 4), dtype=torch.uint8)
    photos[:5] = 0
    scale = images.image_scale(photos)
    assert scale == 255.0 and images.image_scale(photos[:5]) == 1.0
    assert torch.equal(images.to_float(photos[:5], scale), torch.zeros(5, 1, 4, 4))


def test_other_integer_images_are_refused_with_what_to_do():
    with pytest.raises(TypeError, match=r"labkit\.images\.to_float .*\.to\(torch\.uint8\)"):
        images.to_float(torch.zeros(2, 8, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="channels_last"):
        images.to_float(torch.zeros(2, 8, 8, dtype=torch.uint8), channels_last=True)


def test_augment_error_names_the_helper_that_fits_dsprites():
    """The augmentations take floats; their error names labkit.images.to_float, and that fix works for dSprites."""
    batch = dsprites.DSprites.generate(8, seed=1).images.unsqueeze(1)     # uint8 (8, 1, 64, 64) in {0, 1}
    aug = augment.dsprites_affine()
    with pytest.raises(ValueError, match=r"labkit\.images\.to_float\(images\).*dSprites"):
        aug(batch)
    views = aug(images.to_float(batch), generator=torch.Generator().manual_seed(0))
    assert views.shape == (8, 1, 64, 64) and set(views.unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize("kind", ["dsprites", "photos"])
def test_training_batches_come_through_the_same_helper(kind):
    """fit hands the step float batches in [0, 1]: 0/1 for dSprites, k / 255 for photos."""
    if kind == "dsprites":
        data = dsprites.DSprites.generate(64, seed=2).images.unsqueeze(1)
    else:
        data = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    weight = torch.zeros(1, requires_grad=True)
    seen = []

    def step(x):
        seen.append(x)
        return (weight * x).mean()

    training.fit([weight], step, [data], num_epochs=1, batch_size=32, seed=0, progress=False)
    x = torch.cat(seen)
    assert x.dtype == torch.float32 and x.min() == 0.0 and x.max() == 1.0
    assert torch.equal(x.sort(0).values, images.to_float(data).sort(0).values)


def test_the_result_never_shares_the_callers_memory():
    f = torch.rand(2, 1, 4, 4)
    out = images.to_float(f)
    out.add_(1)
    assert f.max() < 1
