"""MNIST, Fashion-MNIST, CIFAR-10 and STL-10 through torchvision, rooted at the data site.

The site (``config.get_site()``, chosen by ``$LABKIT_SITE`` and ``data_paths.toml``)
says where the files live and whether labkit may download them:

- a site with ``download = true`` downloads a missing dataset into its root;
- a read-only site (a shared cluster folder) never downloads: a missing dataset
  is a ``FileNotFoundError`` naming the folder and the files expected;
- a synthetic site (``offline``) gets labkit's stand-ins written on first use
  (see :mod:`labkit.datasets.standins`); they load through the real torchvision
  classes, minus the md5 checks that only the real files can pass.

``load_dataset`` returns the torchvision dataset (PIL images, for transforms);
``load_tensors`` returns the whole split as one uint8 tensor, the form the
training code keeps on the GPU.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.datasets as tvd

from labkit import config
from labkit.datasets import standins

CLASS_NAMES = {
    "mnist": [str(d) for d in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    "cifar10": list(standins.CIFAR_CLASSES),
    "stl10": list(standins.STL_CLASSES),
}
TITLES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "stl10": "STL-10"}
SPLITS = {"mnist": ("train", "test"), "fashion_mnist": ("train", "test"), "cifar10": ("train", "test"),
          "stl10": ("train", "test", "unlabeled", "train+unlabeled")}
IMAGE_SHAPES = {"mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28), "cifar10": (3, 32, 32), "stl10": (3, 96, 96)}
_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# Files torchvision insists on (it checks all of them whatever the split), relative to the root.
REQUIRED_FILES = {
    "mnist": [f"MNIST/raw/{f}" for f in _MNIST_FILES],
    "fashion_mnist": [f"FashionMNIST/raw/{f}" for f in _MNIST_FILES],
    "cifar10": [f"cifar-10-batches-py/{f}" for f in
                ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                 "batches.meta")],
    "stl10": [f"stl10_binary/{f}" for f in
              ("train_X.bin", "train_y.bin", "unlabeled_X.bin", "test_X.bin", "test_y.bin")],
}


class SyntheticCIFAR10(tvd.CIFAR10):
    """torchvision's CIFAR10 for labkit's stand-ins: the md5 sums of the real files are cleared.

    ``check_integrity(path, None)`` only checks that the file exists; every other
    line of torchvision's loader runs unchanged.
    """

    train_list = [[name, None] for name, _ in tvd.CIFAR10.train_list]
    test_list = [[name, None] for name, _ in tvd.CIFAR10.test_list]
    meta = {**tvd.CIFAR10.meta, "md5": None}


class SyntheticSTL10(tvd.STL10):
    """torchvision's STL10 for labkit's stand-ins: the md5 sums of the real files are cleared."""

    train_list = [[name, None] for name, _ in tvd.STL10.train_list]
    test_list = [[name, None] for name, _ in tvd.STL10.test_list]


def _resolve(name, split, site):
    """Validate ``name`` and ``split``; return the Site (``site`` may be a Site, a site name or None)."""
    if name not in SPLITS:
        raise ValueError(f"Unknown dataset {name!r}; use one of {sorted(SPLITS)}.")
    if split is not None and split not in SPLITS[name]:
        raise ValueError(f"{TITLES[name]} has no split {split!r}; use one of {SPLITS[name]}.")
    if site is None or isinstance(site, str):
        site = config.get_site(site)
    return site


def is_synthetic(name, site=None) -> bool:
    """True when ``name`` at this site is labkit's stand-in (synthetic site, or stand-in files found there)."""
    site = _resolve(name, None, site)
    return site.synthetic or (Path(site.root) / standins.FOLDERS[name] / standins.MARKER).is_file()


def _missing(name, root):
    return [f for f in REQUIRED_FILES[name] if not (root / f).is_file()]


def _folder(name, root):
    return Path(root) / Path(REQUIRED_FILES[name][0]).parent


def _not_found(name, site, missing):
    expected = [Path(f).name for f in REQUIRED_FILES[name]]
    absent = "all of them" if len(missing) == len(expected) else ", ".join(Path(f).name for f in missing)
    return FileNotFoundError(
        f"{TITLES[name]} not found at the read-only data site '{site.name}': expected the files "
        f"{', '.join(expected)} in {_folder(name, site.root)}; missing: {absent}. To fix: ask the course admin "
        f"to put {TITLES[name]} there, or set LABKIT_SITE=local to download it into your own folder, or "
        f"LABKIT_SITE=offline for small synthetic stand-ins (no internet needed). [{site.describe()}]")


def load_dataset(name, split="train", site=None, transform=None):
    """The torchvision dataset ``name`` ("mnist", "fashion_mnist", "cifar10", "stl10") for ``split``.

    ``site``: a :class:`config.Site`, a site name, or None for the current site.
    ``transform`` is passed to torchvision (applied to each PIL image).
    Splits: "train", "test"; STL-10 also "unlabeled" and "train+unlabeled".
    """
    site = _resolve(name, split, site)
    root = Path(site.root)
    if site.synthetic and _missing(name, root):
        try:
            standins.write_standins(root, names=[name])
        except OSError as err:
            raise OSError(f"Could not write the {TITLES[name]} stand-in into {root} ({err}). Point the "
                          f"'{site.name}' site at a writable folder (root = ... in ~/.config/labkit/data_paths.toml) "
                          "or write them elsewhere: python -m labkit.datasets.standins --root DIR") from None
    synthetic = is_synthetic(name, site)
    missing = _missing(name, root)
    if missing and synthetic:
        raise FileNotFoundError(
            f"Stand-in {TITLES[name]} in {_folder(name, root)} is incomplete (missing: {', '.join(missing)}). "
            f"Delete {root / standins.FOLDERS[name]} and labkit will write it again on the next load.")
    if missing and not site.download and name in ("mnist", "fashion_mnist"):
        legacy = root / standins.FOLDERS[name] / "processed"  # torchvision < 0.9 layout, still readable
        missing = [] if (legacy / "training.pt").is_file() and (legacy / "test.pt").is_file() else missing
    if missing and not site.download:
        raise _not_found(name, site, missing)
    if missing:
        root.mkdir(parents=True, exist_ok=True)
    kwargs = dict(root=str(root), transform=transform, download=bool(site.download and not synthetic))
    if name == "stl10":
        cls, kwargs["split"] = (SyntheticSTL10 if synthetic else tvd.STL10), split
    else:
        cls = {"mnist": tvd.MNIST, "fashion_mnist": tvd.FashionMNIST,
               "cifar10": SyntheticCIFAR10 if synthetic else tvd.CIFAR10}[name]
        kwargs["train"] = split == "train"
    try:
        return cls(**kwargs)
    except (RuntimeError, OSError) as err:  # failed download, or files present but corrupted
        folder = _folder(name, root)
        if missing:
            hint = (f"No internet? Use LABKIT_SITE=offline for synthetic stand-ins, or copy "
                    f"{', '.join(Path(f).name for f in REQUIRED_FILES[name])} into {folder}.")
        else:
            hint = f"The files in {folder} look corrupted (md5 or format); replace them, or delete them to download."
        raise RuntimeError(f"Could not load {TITLES[name]} at {site.describe()}: {err}\n{hint}") from None


def load_tensors(name, split="train", site=None, device=None, limit=None, size=None):
    """The whole split as tensors: ``(images, labels)``.

    images: (N, C, H, W) uint8 (C=1, 28x28 for MNIST-like; C=3, 32x32 CIFAR-10; 96x96 STL-10).
    labels: (N,) int64, -1 for STL-10's unlabeled images. ``limit`` keeps the
    first ``limit`` items; both tensors are moved to ``device``. ``size`` resizes
    every image once (antialiased, still uint8) to ``size`` x ``size``: the CPU
    scales train on 32 px STL-10 through the same code as 96 px on a GPU.
    """
    ds = load_dataset(name, split, site)
    keep = slice(None, limit)
    if name in ("mnist", "fashion_mnist"):
        images, labels = ds.data[keep].unsqueeze(1), ds.targets[keep]          # (N, 28, 28) -> (N, 1, 28, 28)
    elif name == "cifar10":
        images = torch.from_numpy(ds.data[keep]).permute(0, 3, 1, 2)         # (N, 32, 32, 3) -> (N, 3, 32, 32)
        labels = torch.as_tensor(ds.targets[keep])
    else:
        images = torch.from_numpy(np.ascontiguousarray(ds.data[keep]))       # (N, 3, 96, 96), H/W already fixed
        labels = torch.from_numpy(np.asarray(ds.labels[keep], dtype=np.int64))
    images = images.contiguous().to(device)
    if size is not None and tuple(images.shape[-2:]) != (size, size):
        resized = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True)
        images = resized.round_().clamp_(0, 255).to(torch.uint8)
    return images, labels.to(dtype=torch.int64, device=device)


def describe(name, split="train", site=None) -> str:
    """One line: title, split, count, image shape, site and root; says SYNTHETIC stand-in when it is one.

    It loads the split to count it (seconds for the real STL-10 unlabeled split).
    """
    site = _resolve(name, split, site)
    n = len(load_dataset(name, split, site))
    shape = "x".join(map(str, IMAGE_SHAPES[name]))
    kind = ", SYNTHETIC stand-in" if is_synthetic(name, site) else ""
    return f"{TITLES[name]} {split}: {n} images {shape}{kind}, site '{site.name}' ({site.root})"


def required_files(name):
    """Paths (relative to a site root) that must exist for torchvision to load ``name``."""
    if name not in REQUIRED_FILES:
        raise ValueError(f"Unknown dataset {name!r}; use one of {sorted(REQUIRED_FILES)}.")
    return list(REQUIRED_FILES[name])


