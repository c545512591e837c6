"""One SimCLR epoch of lab 2's STL-10 part (96 px, two views): labkit's pipeline against the seed's.

    python benchmarks/bench_stl10_simclr.py [--num-images 1000] [--batch-size 256] [--workers 2] [--device cuda]

labkit (the notebook): the unlabeled split is one uint8 tensor on the device, a batch is an index slice, and
``augment.simclr_augment(96)`` draws both views per image in batched ops there; bf16 autocast on CUDA.
Seed 000 (the university lab): a Dataset of PIL images whose ``__getitem__`` applies torchvision's
RandomResizedCrop / flip / colour jitter / grayscale / blur to one image at a time, collated by a DataLoader
with worker processes, then copied to the device; fp32. Same encoder (the lab's three-conv CNN, 64 channels),
head, loss, optimizer and batch size on both sides; both run in this process, one after the other. The images
are labkit's offline STL-10 stand-in (the content does not change the time).
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn as nn
import torchvision.transforms as T
from PIL import Image

from common import machine, simclr_epoch, sync
from labkit import augment, config, runtime
from labkit.datasets import vision
from labkit.images import to_float


def small_cnn(width: int = 64) -> nn.Sequential:
    """The lab's encoder: 3 x (conv 3x3, BatchNorm, ReLU, max-pool 2), flattened (9,216-d at 96 px)."""
    layers = []
    for c_in in (3, width, width):
        layers += [nn.Conv2d(c_in, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*layers, nn.Flatten())


class SeedTwoViews(torch.utils.data.Dataset):
    """Seed 000's SelfSupervisedDataset with SimCLR's transforms (the same distribution as labkit's preset)."""

    def __init__(self, images: torch.Tensor, size: int):
        self.images = images.permute(0, 2, 3, 1).numpy()  # (N, 96, 96, 3) uint8, as torchvision's STL10 keeps them
        self.transform = T.Compose([
            T.RandomResizedCrop(size, scale=(0.08, 1.0)), T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(0.2),
            T.RandomApply([T.GaussianBlur(9, sigma=(0.1, 2.0))], p=0.5), T.ToTensor()])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        image = Image.fromarray(self.images[i])
        return self.transform(image), self.transform(image)


def lab_model() -> nn.Sequential:
    """The lab's encoder and its projection head to 64-d."""
    return nn.Sequential(small_cnn(), nn.Linear(64 * 12 * 12, 64), nn.ReLU(), nn.Linear(64, 64))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=1000, help="images of the (stand-in) unlabeled split")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for the seed's pipeline")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = runtime.get_device(args.device)
    images, _ = vision.load_tensors("stl10", "unlabeled", site=config.get_site("offline"), limit=args.num_images)
    size = images.shape[-1]
    on_device = images.to(device)
    aug = augment.simclr_augment(size)

    def labkit_batches():
        order = torch.randperm(len(on_device), device=device)
        for idx in order[: len(order) - len(order) % args.batch_size].split(args.batch_size):
            x = to_float(on_device[idx])
            yield aug(x), aug(x)

    loader = torch.utils.data.DataLoader(SeedTwoViews(images, size), batch_size=args.batch_size, shuffle=True,
                                         drop_last=True, num_workers=args.workers,
                                         pin_memory=device.type == "cuda", persistent_workers=args.workers > 0)
    for _ in zip(range(1), labkit_batches()):  # warm-up: kernels, worker start-up
        pass
    for _ in zip(range(1), loader):
        pass
    sync(device)
    t0 = time.perf_counter(); [None for _ in labkit_batches()]; sync(device); data_labkit = time.perf_counter() - t0
    t0 = time.perf_counter(); [None for _ in loader]; data_seed = time.perf_counter() - t0
    bf16 = device.type == "cuda"
    epoch_labkit = simclr_epoch(labkit_batches(), lab_model, device, bf16=bf16)
    epoch_seed = simclr_epoch(loader, lab_model, device)
    n = len(images) - len(images) % args.batch_size
    print(f"SimCLR epoch, lab 2 part 2: {n} STL-10-sized images ({size} px, stand-in), two views, batch "
          f"{args.batch_size}; {machine()}")
    print(f"  augmentation only: labkit {data_labkit:7.2f} s   seed's DataLoader ({args.workers} workers) "
          f"{data_seed:7.2f} s   x{data_seed / data_labkit:.1f}")
    print(f"  whole epoch:       labkit {epoch_labkit:7.2f} s   seed's DataLoader ({args.workers} workers) "
          f"{epoch_seed:7.2f} s   x{epoch_seed / epoch_labkit:.1f}   "
          f"({n / epoch_labkit:.0f} vs {n / epoch_seed:.0f} images/s{', labkit in bf16' if bf16 else ''})")


if __name__ == "__main__":
    main()
