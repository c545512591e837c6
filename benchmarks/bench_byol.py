"""BYOL steps of a ResNet-18 at 96 px: labkit's pipeline against the seed's, and the view-1 augmentation alone.

    python benchmarks/bench_byol.py [--num-images 256] [--batch-size 64] [--width 64] [--workers 2] [--device cuda]

labkit: the images live on the device as one uint8 tensor; a step slices a batch, converts it, and draws view 1
and view 2 of the SAME images with the batched per-image transforms of ``augment.byol_augment`` (Table 6).
Seed 003's way: two torchvision pipelines applied image by image in two DataLoaders (each shuffling on its own,
as the seed did), collated and copied to the device. Both sides then run the same BYOL step (``training.byol_step``,
Adam, EMA update) on fresh, identically seeded networks; both run in this process. The seed resized to 224 px;
here both sides produce 96 px views, so the ratio measures the pipeline, not the resolution (224 px costs about
(224 / 96)^2 = 5.4x more in the network on top of this).

The augmentation alone: labkit's view-1 pipeline on a batch of 256 against ``kornia.augmentation``'s equivalent
(the same per-image draws, batched) when kornia is installed (``pip install -e ".[bench]"``), and against
torchvision image by image.
"""
from __future__ import annotations

import argparse
import copy
import itertools
import time

import torch
import torchvision.transforms as T

from common import machine, sync, timed
from labkit import augment, models, runtime, training

SIZE = 96


def seed_pipeline(view: int):
    """Table 6 with torchvision, one image at a time (a (3, 96, 96) float tensor in [0, 1])."""
    return T.Compose([T.RandomResizedCrop(SIZE, scale=(0.08, 1.0), antialias=False), T.RandomHorizontalFlip(),
                      T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8), T.RandomGrayscale(0.2),
                      T.RandomApply([T.GaussianBlur(9, sigma=(0.1, 2.0))], p=1.0 if view == 1 else 0.1),
                      T.RandomSolarize(0.5, p=0.0 if view == 1 else 0.2)])


class Views(torch.utils.data.Dataset):
    def __init__(self, images, view):
        self.images, self.transform = images, seed_pipeline(view)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(self.images[i].float() / 255)


def kornia_view1():
    import kornia.augmentation as K

    return K.AugmentationSequential(
        K.RandomResizedCrop((SIZE, SIZE), scale=(0.08, 1.0)), K.RandomHorizontalFlip(),
        K.ColorJitter(0.4, 0.4, 0.2, 0.1, p=0.8), K.RandomGrayscale(p=0.2),
        K.RandomGaussianBlur((9, 9), (0.1, 2.0), p=1.0))


def byol_steps(batches, width, device) -> float:
    """Seconds for BYOL steps over ``batches`` of view pairs, on fresh seeded networks."""
    torch.manual_seed(0)
    encoder = models.ResNet18Encoder(small_images=False, width=width)
    online = torch.nn.Sequential(encoder, models.mlp(encoder.feature_dim, 1024, 256)).to(device)
    predictor = models.mlp(256, 1024, 256).to(device)
    target = copy.deepcopy(online).requires_grad_(False)
    opt = torch.optim.Adam([*online.parameters(), *predictor.parameters()], lr=3e-4)
    cuda = torch.device(device).type == "cuda"
    sync(device)
    start = time.perf_counter()
    for x1, x2 in batches:
        x1, x2 = x1.to(device, non_blocking=True), x2.to(device, non_blocking=True)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=cuda):
            loss = training.byol_step(online, predictor, target, x1, x2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        training.ema_update(target, online, 0.99)
    sync(device)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=64, help="ResNet-18's first-stage width (64 is the real one)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers per loader for the seed's side")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = runtime.get_device(args.device)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.num_images, 3, SIZE, SIZE), dtype=torch.uint8, generator=g)
    on_device = images.to(device)
    view1, view2 = augment.byol_augment(SIZE, 1), augment.byol_augment(SIZE, 2)

    def labkit_batches():
        for idx in torch.randperm(len(on_device), device=device).split(args.batch_size):
            x = augment.to_float(on_device[idx])
            yield augment.two_views(x, view1, view2)

    loaders = [torch.utils.data.DataLoader(Views(images, v), batch_size=args.batch_size, shuffle=True,
                                           num_workers=args.workers, persistent_workers=args.workers > 0,
                                           pin_memory=device.type == "cuda") for v in (1, 2)]

    def seed_batches():
        return zip(*loaders)

    byol_steps(itertools.islice(labkit_batches(), 1), args.width, device)  # warm-up (kernels, workers)
    byol_steps(itertools.islice(seed_batches(), 1), args.width, device)
    t_labkit = byol_steps(labkit_batches(), args.width, device)
    t_seed = byol_steps(seed_batches(), args.width, device)
    n = args.num_images
    print(f"BYOL steps, ResNet-18 width {args.width} at {SIZE} px, {n} images, batch {args.batch_size}; {machine()}")
    print(f"  labkit (device tensor, batched views) {n / t_labkit:8.1f} images/s   seed (2 DataLoaders x "
          f"{args.workers} workers, torchvision per image) {n / t_seed:8.1f} images/s   x{t_seed / t_labkit:.2f}")

    x = augment.to_float(on_device[:256] if len(on_device) >= 256 else on_device.repeat(256 // len(on_device) + 1, 1, 1, 1)[:256])
    t_lab = timed(lambda: view1(x), device)
    line = f"  view-1 augmentation of a batch of 256: labkit {t_lab * 1e3:7.1f} ms"
    try:
        kornia = kornia_view1().to(device)
        t_kornia = timed(lambda: kornia(x), device)
        line += f"   kornia {t_kornia * 1e3:7.1f} ms (x{t_kornia / t_lab:.2f} labkit's time)"
    except ImportError:
        line += "   kornia not installed (pip install kornia)"
    per_image = seed_pipeline(1)
    t_tv = timed(lambda: [per_image(img) for img in x.cpu()], "cpu", repeats=1)
    print(line + f"   torchvision per image {t_tv * 1e3:7.1f} ms (x{t_tv / t_lab:.2f})")


if __name__ == "__main__":
    main()
