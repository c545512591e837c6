"""labkit.datasets.dsprites: the renderer against the measured facts and the real images, the dataset, the splits."""
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from labkit.datasets import dsprites as ds

# Real dSprites images (not shipped with labkit): the course's shared folder next to the repo, or this variable.
REAL = Path(os.environ.get("LABKIT_REAL_DSPRITES",
                           Path(__file__).resolve().parents[2] / "shared" / "data" / "dsprites"))
needs_real = pytest.mark.skipif(not (REAL / "dsprites_subset.npz").is_file(),
                                reason=f"real dSprites not found at {REAL} (set LABKIT_REAL_DSPRITES to its folder)")


@pytest.fixture(scope="module")
def data():
    return ds.DSprites.generate(3000, seed=0)


def _grid_at(shape, scale=1.0, orientation=0.0):
    """(1024, 5) latents: one sprite at every one of the 32 x 32 grid positions."""
    pos = np.linspace(0, 1, 32)
    px, py = np.meshgrid(pos, pos)
    n = px.size
    return np.stack([np.full(n, shape), np.full(n, scale), np.full(n, orientation), px.ravel(), py.ravel()], 1)


def _bbox(images):
    """Per image (left, right, top, bottom) pixel indices of the lit pixels."""
    ar = np.arange(64)
    cols, rows = images.any(1), images.any(2)
    return (np.where(cols, ar, 99).min(1), np.where(cols, ar, -1).max(1),
            np.where(rows, ar, 99).min(1), np.where(rows, ar, -1).max(1))


def _iou(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return (a & b).sum((1, 2)) / np.maximum((a | b).sum((1, 2)), 1)


# ------------------------------------------------------------------ renderer

def test_render_numpy_and_torch_agree():
    values = ds.classes_to_values(ds.index_to_classes(torch.arange(0, ds.NUM_IMAGES, 997)))
    out_np = ds.render_latents(values.numpy())
    out_list = ds.render_latents(values[:5].tolist())
    out_t = ds.render_latents(values)
    assert isinstance(out_np, np.ndarray) and out_np.dtype == np.uint8 and out_np.shape == (len(values), 64, 64)
    assert set(np.unique(out_np)) == {0, 1}
    assert torch.is_tensor(out_t) and out_t.dtype == torch.uint8 and out_t.device == values.device
    assert np.array_equal(out_t.numpy(), out_np) and np.array_equal(out_list, out_np[:5])
    assert (out_np.sum((1, 2)) > 0).all(), "every sprite lights some pixels"


def test_render_rejects_bad_latents():
    with pytest.raises(ValueError, match="shape latent"):
        ds.render_latents(np.array([[0, 1.0, 0, 0.5, 0.5]]))  # a shape class, not a shape value
    with pytest.raises(ValueError, match=r"\(N, 5\)"):
        ds.render_latents(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="posX"):
        ds.render_latents(np.array([[1, 1.0, 0, 1.5, 0.5]]))


@pytest.mark.parametrize("shape, width, height", [(1, 19.2, 19.2), (2, 25.5, 14.4), (3, 19.2, 18.3)])
def test_bbox_sizes_and_centre_match_the_measured_facts(shape, width, height):
    """Averaged over the 32 x 32 sub-pixel phases of the position grid (scale 1, orientation 0)."""
    values = _grid_at(shape)
    left, right, top, bottom = _bbox(ds.render_latents(values))
    assert abs((right - left + 1).mean() - width) < 0.15
    assert abs((bottom - top + 1).mean() - height) < 0.15
    centre_x, centre_y = 15.5 + 32 * values[:, 3], 15.5 + 32 * values[:, 4]
    assert abs(((left + right) / 2 - centre_x).mean()) < 0.05
    assert np.abs((left + right) / 2 - centre_x).max() <= 0.5
    # the heart's thin tip is often missed by pixel centres: its pixel box sits ~0.17 px high
    assert abs(((top + bottom) / 2 - centre_y).mean()) < (0.25 if shape == 3 else 0.05)
    assert np.abs((top + bottom) / 2 - centre_y).max() <= 1.0


def test_shapes_at_orientation_zero():
    square, ellipse, heart = ds.render_latents(np.array([[s, 1.0, 0.0, 0.5, 0.5] for s in (1, 2, 3)]))
    assert square.sum() in (380, 400)  # 19 or 20 px a side: the centre is at 31.5 + 0.5
    rows, cols = np.nonzero(ellipse)
    assert np.ptp(cols) > np.ptp(rows) + 8, "the ellipse's major axis is horizontal"
    rows, cols = np.nonzero(heart)
    upper, lower = heart[: int(rows.mean())], heart[int(rows.mean()):]
    assert upper.sum(1).max() > lower.sum(1).max(), "the heart's lobes (widest rows) are at the top"
    assert heart[rows.max()].sum() <= 2, "the heart ends in a tip at the bottom"


def test_rotation_is_counter_clockwise_as_displayed():
    ellipse = ds.render_latents(np.array([[2, 1.0, math.pi / 4, 0.5, 0.5]]))[0]
    rows, cols = np.nonzero(ellipse)
    assert np.cov(cols, -rows)[0, 1] > 0, "major axis from bottom-left to top-right"
    # centred on the canvas (31.5, 31.5), a quarter turn is np.rot90 (counter-clockwise as displayed)
    upright, turned = ds.render_latents(np.array([[3, 1.0, a, 0.5, 0.5] for a in (0, math.pi / 2)]))
    assert _iou(turned[None], np.rot90(upright)[None])[0] > 0.97
    assert _iou(turned[None], np.rot90(upright, -1)[None])[0] < 0.8
    rows, cols = np.nonzero(turned)
    assert cols.mean() < 31.5 - 1, "the lobes (the heavy end) turned from the top to the left"


def test_rotation_by_a_full_turn_is_identity():
    values = _grid_at(3, 0.8, 0.0)[::37]
    turned = values.copy()
    turned[:, 2] = 2 * math.pi
    assert _iou(ds.render_latents(values), ds.render_latents(turned)).min() > 0.95


@needs_real
@pytest.mark.parametrize("name, goal", [("dsprites_subset.npz", 0.995), ("dsprites_downsampled.npz", 0.995)])
def test_rendered_images_match_real_dsprites(name, goal):
    """Mean IoU per shape between our rendering and the real image for the same latents (the design aims at 0.97)."""
    with np.load(REAL / name) as npz:
        values, real = npz["latents_values"], npz["imgs"]
    if name != "dsprites_subset.npz":
        keep = np.random.default_rng(0).choice(len(values), 10_000, replace=False)
        values, real = values[keep], real[keep]
    iou = _iou(ds.render_latents(values), real)
    means = {ds.SHAPE_NAMES[k]: float(iou[values[:, 0] == k + 1].mean()) for k in range(3)}
    print(f"\nmean IoU vs real {name} ({len(values)} images): " + ", ".join(f"{k} {v:.4f}" for k, v in means.items()))
    assert all(v >= goal for v in means.values()), means


# ------------------------------------------------------------------ latent grid and dataset

def test_latent_grid_and_class_conversions():
    grid = ds.latent_grid()
    assert tuple(grid) == ds.LATENT_NAMES and tuple(len(v) for v in grid.values()) == ds.LATENT_SIZES
    assert grid["orientation"][-1] == pytest.approx(2 * math.pi) and grid["posX"][1] == pytest.approx(1 / 31)
    classes = ds.index_to_classes(torch.tensor([0, 1, 32, ds.NUM_IMAGES - 1]))
    assert classes.tolist() == [[0, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 1, 0], [2, 5, 39, 31, 31]]
    assert torch.equal(ds.values_to_classes(ds.classes_to_values(classes)), classes)


def test_generate_is_seeded_and_samples_the_grid_without_replacement(data):
    again = ds.DSprites.generate(3000, seed=0)
    other = ds.DSprites.generate(3000, seed=1)
    assert torch.equal(again.images, data.images) and torch.equal(again.latents_classes, data.latents_classes)
    assert not torch.equal(other.latents_classes, data.latents_classes)
    assert data.images.shape == (3000, 64, 64) and data.images.dtype == torch.uint8
    assert data.latents_values.dtype == torch.float32 and data.latents_classes.dtype == torch.int64
    assert len(torch.unique(data.latents_classes, dim=0)) == 3000
    assert torch.allclose(data.latents_values, ds.classes_to_values(data.latents_classes).float())
    assert set(data.latents_classes[:, 0].tolist()) == {0, 1, 2}
    assert "generated" in data.source and "seed 0" in data.source


def test_dataset_items_loader_to_and_latent(data):
    image, label = data[5]
    assert image.shape == (1, 64, 64) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    assert label == data.latents_classes[5, 0]
    x, y = next(iter(torch.utils.data.DataLoader(data, batch_size=16)))
    assert x.shape == (16, 1, 64, 64) and y.shape == (16,) and y.dtype == torch.int64
    assert data.to("cpu") is data
    assert torch.equal(data.latent("posX"), data.latents_values[:, 3])
    with pytest.raises(KeyError, match="posX"):
        data.latent("x")


@needs_real
def test_from_npz_reads_the_real_subsets():
    subset = ds.DSprites.from_npz(REAL / "dsprites_subset.npz")
    with np.load(REAL / "dsprites_subset.npz") as npz:
        assert np.array_equal(subset.latents_classes.numpy(), npz["latents_classes"])
        assert np.array_equal(subset.images.numpy(), npz["imgs"])
        assert np.array_equal(ds.index_to_classes(npz["original_dataset_indices"]).numpy(), npz["latents_classes"])
    assert len(subset) == 20_000 and str(REAL) in subset.source
    # the downsampled file numbers classes in its own coarser grid: ours are the full grid's
    small = ds.DSprites.from_npz(REAL / "dsprites_downsampled.npz", num_images=500, seed=0)
    assert len(small) == 500 and "500 of 46080" in small.source
    assert torch.equal(small.latents_classes, ds.values_to_classes(small.latents_values))
    assert (small.latents_classes[:, 3] % 2 == 0).all() and (small.latents_classes[:, 2] % 4 == 0).all()


def test_from_npz_official_layout_drops_colour(tmp_path):
    classes = ds.index_to_classes(torch.tensor([0, 40_000, 700_000]))
    values = ds.classes_to_values(classes).numpy()
    path = tmp_path / ds.OFFICIAL_FILE
    np.savez(path, imgs=ds.render_latents(values), latents_values=np.c_[np.ones(3), values],
             latents_classes=np.c_[np.zeros(3, int), classes.numpy()])
    loaded = ds.DSprites.from_npz(path)
    assert torch.equal(loaded.latents_classes, classes) and loaded.latents_values.shape == (3, 5)
    with pytest.raises(FileNotFoundError, match="generate"):
        ds.DSprites.from_npz(tmp_path / "missing.npz")


def test_load_dsprites_generates_or_finds_a_site_file(tmp_path, monkeypatch):
    toml = tmp_path / "data_paths.toml"
    toml.write_text('default_site = "here"\n[sites.here]\nroot = "datasets"\n')
    monkeypatch.setenv("LABKIT_DATA_PATHS", str(toml))
    monkeypatch.setenv("LABKIT_SITE", "here")  # beats a per-user override file
    generated = ds.load_dsprites(num_images=50, seed=3)
    assert len(generated) == 50 and generated.source == "generated (labkit renderer, seed 3)"
    (tmp_path / "datasets" / "dsprites").mkdir(parents=True)
    values = ds.classes_to_values(ds.index_to_classes(torch.arange(0, 80_000, 1000))).numpy()
    np.savez(tmp_path / "datasets" / "dsprites" / "mine.npz", imgs=ds.render_latents(values), latents_values=values)
    found = ds.load_dsprites(num_images=30, seed=0)
    assert len(found) == 30 and "mine.npz" in found.source
    assert len(ds.load_dsprites(num_images=1000, path=tmp_path / "datasets" / "dsprites")) == 80


# ------------------------------------------------------------------ splits

def test_train_test_split_is_disjoint_seeded_and_complete(data):
    train, test = ds.train_test_split(data, train_fraction=0.8, seed=0)
    assert isinstance(train, torch.utils.data.SubsetRandomSampler)
    assert len(train.indices) == 2400 and len(test.indices) == 600
    assert not set(train.indices) & set(test.indices) and set(train.indices) | set(test.indices) == set(range(3000))
    assert ds.train_test_split(data, 0.8, seed=0)[0].indices == train.indices
    assert ds.train_test_split(data, 0.8, seed=1)[0].indices != train.indices
    with pytest.raises(ValueError, match="train_fraction"):
        ds.train_test_split(data, 1.0)


def test_biased_split_correlates_shape_with_posx(data):
    train, test = ds.biased_split(data, seed=0)
    control, control_test = ds.biased_split(data, seed=0, control=True)
    pool, held_out = ds.train_test_split(data, 0.95, seed=0)
    assert test.indices == control_test.indices == held_out.indices and len(test.indices) == 150
    shape, pos_x = data.latents_classes[:, 0], data.latent("posX")
    idx = torch.tensor(train.indices)
    for kind, (lo, hi) in enumerate(ds.BIAS_POSX_RANGES):
        x = pos_x[idx][shape[idx] == kind]
        assert len(x) > 0 and ((x >= lo) & (x < hi)).all(), ds.SHAPE_NAMES[kind]
    assert 3.0 < len(pool.indices) / len(train.indices) < 3.7  # 96 / 29 = 3.3 in expectation
    assert len(control.indices) == len(train.indices) and set(control.indices) <= set(pool.indices)
    control_idx = torch.tensor(control.indices)
    assert ((shape[control_idx] == 0) & (pos_x[control_idx] > 0.7)).any(), "the control is not biased"
    assert not set(train.indices) & set(test.indices)
