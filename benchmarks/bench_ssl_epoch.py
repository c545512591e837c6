"""One SimCLR epoch on generated dSprites: labkit's pipeline against a per-sample DataLoader one.

    python benchmarks/bench_ssl_epoch.py [--num-images 20000] [--batch-size 1000] [--workers 2] [--device cuda]

labkit: the training split lives on the device as one uint8 tensor; a batch is an index
slice and both views come from one batched RandomAffine with per-sample parameters.
Baseline (the Neuromatch way): a Dataset returning two torchvision RandomAffine views
of each image, one sample at a time, collated by a DataLoader, then moved to the device.
Same encoder, loss, optimizer and batch size on both sides; both run in this process.
"""
from __future__ import annotations

import argparse
import time

import torch
import torchvision.transforms.v2 as T

from common import machine, simclr_epoch, sync
from labkit import augment, models, runtime
from labkit.datasets import dsprites

AFFINE = dict(degrees=90, translate=(0.2, 0.2), scale=(0.8, 1.2))


class TwoViewDataset(torch.utils.data.Dataset):
    """Per-sample augmentation: each item is two independently transformed views."""

    def __init__(self, images):
        self.images = images  # (N, 64, 64) uint8 on the CPU
        self.transform = T.RandomAffine(**AFFINE)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        x = self.images[i].unsqueeze(0).float()  # (1, 64, 64)
        return self.transform(x), self.transform(x)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=20000, help="generated images; 80%% are the training split")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for the baseline")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = runtime.get_device(args.device)
    data = dsprites.DSprites.generate(args.num_images, seed=0)
    train_sampler, _ = dsprites.train_test_split(data, 0.8, seed=0)
    train = data.images[torch.as_tensor(train_sampler.indices)]  # (16000, 64, 64) uint8

    aug = augment.dsprites_affine()
    on_device = train.to(device)

    def labkit_batches():
        order = torch.randperm(len(on_device), device=device)
        for idx in order.split(args.batch_size):
            x = on_device[idx].unsqueeze(1).float()  # (B, 1, 64, 64), dSprites pixels are 0/1
            yield aug(x), aug(x)

    loader = torch.utils.data.DataLoader(TwoViewDataset(train), batch_size=args.batch_size, shuffle=True,
                                         num_workers=args.workers, pin_memory=device.type == "cuda",
                                         persistent_workers=args.workers > 0)

    # Data pipeline alone (no model), then a whole training epoch; one warm-up pass of each first.
    for _ in zip(range(2), labkit_batches()):
        pass
    for _ in zip(range(2), loader):
        pass
    sync(device)
    t0 = time.perf_counter(); [None for _ in labkit_batches()]; sync(device); data_labkit = time.perf_counter() - t0
    t0 = time.perf_counter(); [None for _ in loader]; data_loader = time.perf_counter() - t0
    ep_labkit = simclr_epoch(labkit_batches(), models.DSpritesEncoder, device)
    ep_loader = simclr_epoch(loader, models.DSpritesEncoder, device)

    print(f"SimCLR epoch on {len(train)} generated dSprites images, batch {args.batch_size}; {machine()}")
    print(f"  augmentation only: labkit {data_labkit:7.2f} s   DataLoader+torchvision ({args.workers} workers) "
          f"{data_loader:7.2f} s   x{data_loader / data_labkit:.1f}")
    print(f"  whole epoch:       labkit {ep_labkit:7.2f} s   DataLoader+torchvision ({args.workers} workers) "
          f"{ep_loader:7.2f} s   x{ep_loader / ep_labkit:.1f}")


if __name__ == "__main__":
    main()
