"""torchvision datasets through the data site, on labkit's synthetic stand-ins.

Every dataset and split is loaded through the real torchvision classes
(only the md5 check is skipped for stand-ins); the stand-ins are checked for
format, determinism and learnable class signal.
"""
import hashlib
import threading

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd
from sklearn.linear_model import RidgeClassifier
from sklearn.neighbors import NearestCentroid

from labkit import config
from labkit.config import Site
from labkit.datasets import standins, vision

# Smaller than the "small" preset where the test does not need the numbers.
SIZES = {"fashion_mnist": {"train": 300, "test": 100}, "stl10": {"train": 60, "test": 40, "unlabeled": 30}}
EXPECTED = {  # (name, split) -> number of images
    ("mnist", "train"): 2000, ("mnist", "test"): 500, ("fashion_mnist", "train"): 300, ("fashion_mnist", "test"): 100,
    ("cifar10", "train"): 2000, ("cifar10", "test"): 500, ("stl10", "train"): 60, ("stl10", "test"): 40,
    ("stl10", "unlabeled"): 30, ("stl10", "train+unlabeled"): 90,
}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """An offline site whose stand-ins are written once for the module."""
    root = tmp_path_factory.mktemp("offline")
    standins.write_standins(root, SIZES)
    return Site("offline", root, download=False, synthetic=True)


def _digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name,split", list(EXPECTED))
def test_every_split_loads_through_torchvision(site, name, split):
    ds = vision.load_dataset(name, split, site=site)
    assert isinstance(ds, (tvd.MNIST, tvd.CIFAR10, tvd.STL10))
    assert len(ds) == EXPECTED[name, split]
    image, label = ds[len(ds) - 1]
    c, h, w = vision.IMAGE_SHAPES[name]
    assert image.size == (w, h) and image.mode == ("L" if c == 1 else "RGB")
    assert (label == -1) if split.endswith("unlabeled") else (0 <= label < 10)  # unlabeled images come last

    images, labels = vision.load_tensors(name, split, site=site)
    assert images.shape == (len(ds), c, h, w) and images.dtype == torch.uint8 and images.is_contiguous()
    assert labels.shape == (len(ds),) and labels.dtype == torch.int64
    if split == "unlabeled":
        assert (labels == -1).all()
    else:
        labelled = labels[labels >= 0]
        assert labelled.max() <= 9 and len(labelled.unique()) == 10
    # load_tensors is the same data as the dataset's own PIL path (channel order, STL-10's transposed storage).
    assert torch.equal(images[-1], torch.as_tensor(np.array(image)).reshape(h, w, c).permute(2, 0, 1))


def test_load_tensors_limit_device_and_describe(site):
    images, labels = vision.load_tensors("cifar10", "test", site=site, device="cpu", limit=7)
    assert images.shape == (7, 3, 32, 32) and labels.shape == (7,)
    full_images, _ = vision.load_tensors("cifar10", "test", site=site)
    assert torch.equal(images, full_images[:7])
    line = vision.describe("mnist", "train", site=site)
    assert line.startswith("MNIST train: 2000 images 1x28x28") and "SYNTHETIC stand-in" in line
    assert str(site.root) in line and "'offline'" in line
    assert "stand-ins" in (site.root / "README.txt").read_text() and "SYNTHETIC" in (site.root / "README.txt").read_text()
    assert vision.load_dataset("stl10", "test", site=site).classes == vision.CLASS_NAMES["stl10"]
    assert vision.load_dataset("cifar10", "test", site=site).classes == vision.CLASS_NAMES["cifar10"]
    assert all(len(vision.CLASS_NAMES[n]) == 10 for n in vision.SPLITS)


def test_site_from_environment_writes_standins_on_first_use(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "USER_FILE", tmp_path / "no-user-file.toml")
    toml = tmp_path / "data_paths.toml"
    toml.write_text('default_site = "local"\n[sites.offline]\nroot = "./standins"\nsynthetic = true\n')
    monkeypatch.setenv("LABKIT_DATA_PATHS", str(toml))
    monkeypatch.setenv("LABKIT_SITE", "offline")
    images, labels = vision.load_tensors("fashion_mnist", "test")
    assert images.shape == (500, 1, 28, 28)  # the "small" preset
    assert (tmp_path / "standins" / "FashionMNIST" / standins.MARKER).is_file()
    assert not (tmp_path / "standins" / "MNIST").exists()  # only what was asked for


def test_read_only_site_names_folder_and_files(tmp_path, site):
    cluster = Site("cluster", tmp_path / "shared", download=False)
    with pytest.raises(FileNotFoundError) as err:
        vision.load_dataset("cifar10", "train", site=cluster)
    message = str(err.value)
    assert str(tmp_path / "shared" / "cifar-10-batches-py") in message and "data_batch_1" in message
    assert "cluster" in message and "LABKIT_SITE=local" in message and "admin" in message
    assert err.value.__context__ is None and err.traceback[-1].path.name == "vision.py"  # labkit's, not torchvision's

    # A partial copy: the message names exactly the file that is missing.
    raw = tmp_path / "shared" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in vision.required_files("mnist")[:3]:
        (tmp_path / "shared" / f).write_bytes((site.root / f).read_bytes())
    with pytest.raises(FileNotFoundError, match=r"missing: t10k-labels-idx1-ubyte\. ") as err:
        vision.load_dataset("mnist", "test", site=cluster)
    assert str(raw) in str(err.value)


def test_md5_is_checked_for_real_data_and_skipped_only_for_standins(tmp_path, site):
    # The real class rejects stand-in files (md5) ...
    with pytest.raises(RuntimeError, match="corrupted"):
        tvd.CIFAR10(str(site.root), train=False)
    # ... and through labkit, at a non-synthetic site, that becomes one clear error, not a deep traceback.
    copy = tmp_path / "cifar-10-batches-py"
    copy.mkdir()
    for f in vision.required_files("cifar10"):
        (tmp_path / f).write_bytes((site.root / f).read_bytes())
    with pytest.raises(RuntimeError, match="look corrupted") as err:
        vision.load_dataset("cifar10", "test", site=Site("cluster", tmp_path))
    assert err.value.__suppress_context__
    # The stand-in subclasses change the checksum tables and nothing else.
    for cls, base in ((vision.SyntheticCIFAR10, tvd.CIFAR10), (vision.SyntheticSTL10, tvd.STL10)):
        assert not [k for k, v in vars(cls).items() if callable(v)]
        assert [f for f, _ in cls.train_list + cls.test_list] == [f for f, _ in base.train_list + base.test_list]


def test_standins_are_deterministic_and_seeded(tmp_path):
    sizes = "tiny"
    a, b, c = (standins.write_standins(tmp_path / d, sizes, seed=s) for d, s in (("a", 0), ("b", 0), ("c", 1)))
    assert [p.name for p in a] == ["MNIST", "FashionMNIST", "cifar-10-batches-py", "stl10_binary"]
    for pa, pb, pc in zip(a, b, c):
        assert _digest(pa) == _digest(pb)
        assert _digest(pa)["LABKIT_SYNTHETIC.txt"] == _digest(pc)["LABKIT_SYNTHETIC.txt"]
        assert _digest(pa) != _digest(pc)
    assert standins.write_standins(tmp_path / "a", sizes) == []  # idempotent: already there


def test_concurrent_writers_agree(tmp_path):
    errors = []

    def write():
        try:
            standins.write_standins(tmp_path, "tiny", names=["mnist", "cifar10"])
        except Exception as err:  # noqa: BLE001 - reported by the assert below
            errors.append(err)

    threads = [threading.Thread(target=write) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MNIST", "README.txt", "cifar-10-batches-py"]
    site = Site("offline", tmp_path, synthetic=True)
    assert len(vision.load_dataset("cifar10", "train", site=site)) == standins.SIZES["tiny"]["cifar10"]["train"]


def _flat(images):
    return images.flatten(1).float().numpy() / 255


@pytest.mark.filterwarnings("ignore:self.within_class_std_dev_")  # constant border pixels
@pytest.mark.parametrize("name,ncm_bar,ridge_bar", [("mnist", 0.65, 0.75), ("cifar10", 0.3, 0.45)])
def test_standins_carry_learnable_class_signal(site, name, ncm_bar, ridge_bar):
    """Measured with the default seed: MNIST NCM 0.80 / ridge 0.86; CIFAR-10 NCM 0.44 / ridge 0.59 (chance 0.1)."""
    x, y = vision.load_tensors(name, "train", site=site)
    xt, yt = vision.load_tensors(name, "test", site=site)
    assert NearestCentroid().fit(_flat(x), y.numpy()).score(_flat(xt), yt.numpy()) > ncm_bar
    assert RidgeClassifier(alpha=10.0).fit(_flat(x), y.numpy()).score(_flat(xt), yt.numpy()) > ridge_bar
    if name == "cifar10":  # ... carried by shape: the mean colour alone is a weak cue
        mean_colour, mean_colour_t = x.float().mean((2, 3)).numpy(), xt.float().mean((2, 3)).numpy()
        assert NearestCentroid().fit(mean_colour, y.numpy()).score(mean_colour_t, yt.numpy()) < 0.35


def test_cli_prints_what_it_wrote(tmp_path, capsys):
    standins.main(["--root", str(tmp_path), "--size", "tiny", "--only", "mnist"])
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'MNIST'}" in out and "SYNTHETIC" in out
    standins.main(["--root", str(tmp_path), "--size", "tiny", "--only", "mnist"])
    assert "already present" in capsys.readouterr().out


def test_bad_names_are_clear(site):
    with pytest.raises(ValueError, match="unknown|Unknown"):
        vision.load_dataset("imagenet", site=site)
    with pytest.raises(ValueError, match="unlabeled"):
        vision.load_dataset("cifar10", "unlabeled", site=site)
