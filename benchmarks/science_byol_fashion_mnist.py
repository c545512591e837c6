"""Lab 3's science at reduced scale: BYOL with the lab's recipe on the REAL Fashion-MNIST, on a CPU.

    LABKIT_DATA_PATHS=paths.toml python benchmarks/science_byol_fashion_mnist.py [--epochs 5] [--width 8] ...

Not a benchmark (``make bench`` does not run it) and not a test: STL-10 cannot be had where the course is built,
so this checks the method on real images instead. It needs the original Fashion-MNIST files (Debian's
``dataset-fashion-mnist``, gunzipped into ``<root>/FashionMNIST/raw/``) in a data site that ``LABKIT_DATA_PATHS``
names; nothing in the repository needs them.

The images are padded to 32 px and repeated in three channels. It trains, with labkit's reference functions
(the lab's solutions): BYOL (``training.train_byol``, ``augment.byol_augment``'s Table 6 views, cosine tau) and
the lab's two collapse ablations (no predictor; tau = 0; next to a BYOL run as short as theirs), then scores
each encoder frozen with a logistic regression (``evaluation.linear_probe``) on all and on a tenth of the
labelled images, next to a random encoder (BatchNorm calibrated) and the same network trained end to end on the
tenth (crop and flip); for each BYOL run also the projections (what the loss and the collapse monitor see). It
prints the table and the collapse monitor along each run, and writes both (``--out``:
results.json and monitor.png).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from labkit import augment, evaluation, models, training
from labkit.datasets import vision


def fashion_mnist(split: str, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, 32, 32) uint8 images (padded by 2, grey in 3 channels) and their labels."""
    images, labels = vision.load_tensors("fashion_mnist", split, limit=limit)
    return F.pad(images, (2, 2, 2, 2)).expand(-1, 3, -1, -1).contiguous(), labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--unlabeled", type=int, default=8000, help="pre-training images (the first of the train split)")
    ap.add_argument("--labels", type=int, default=10000, help="labelled images for the probes (first of train)")
    ap.add_argument("--test", type=int, default=5000)
    ap.add_argument("--width", type=int, default=8, help="ResNet-18's first-stage channels (64 is the real one)")
    ap.add_argument("--small-stem", action="store_true", help="CIFAR stem (3x3 conv, no max-pool) for 32 px")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--ablation-epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--base-tau", type=float, default=0.97)
    ap.add_argument("--proj-hidden", type=int, default=256)
    ap.add_argument("--proj-dim", type=int, default=64)
    ap.add_argument("--sup-epochs", type=int, default=60, help="end-to-end epochs of the supervised tenth")
    ap.add_argument("--skip", nargs="*", default=(), choices=("byol", "ablations", "supervised"),
                    help="leave out the long BYOL run, the ablations (and the BYOL run as short), the supervised tenth")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--out", type=Path, default=Path("science_output/byol_fashion_mnist"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    train_images, train_labels = fashion_mnist("train", max(args.unlabeled, args.labels))
    test_images, test_labels = fashion_mnist("test", args.test)
    unlabeled = train_images[:args.unlabeled]
    labelled, labels = train_images[:args.labels], train_labels[:args.labels]
    tenth = torch.randperm(args.labels, generator=torch.Generator().manual_seed(0))[:args.labels // 10]
    views = (augment.byol_augment(32, view=1), augment.byol_augment(32, view=2))

    def encoder(seed=0):
        torch.manual_seed(seed)
        return models.ResNet18Encoder(small_images=args.small_stem, width=args.width)

    def probe(enc) -> dict[str, float]:
        tr, te = (evaluation.extract_features(enc, x) for x in (labelled, test_images))
        return {"all": evaluation.linear_probe(tr, labels, te, test_labels),
                "tenth": evaluation.linear_probe(tr[tenth], labels[tenth], te, test_labels)}

    def byol(epochs, images, predictor=True, **settings):
        enc = encoder()
        projector = models.mlp(enc.feature_dim, args.proj_hidden, args.proj_dim)
        head = models.mlp(args.proj_dim, args.proj_hidden, args.proj_dim) if predictor else nn.Identity()
        start = time.perf_counter()
        enc, loss, monitor = training.train_byol(enc, images, views, projector=projector, predictor=head,
                                                 num_epochs=epochs, batch_size=args.batch_size, lr=args.lr,
                                                 **{"base_tau": args.base_tau, **settings}, seed=0)
        return enc, projector.eval(), loss, monitor, time.perf_counter() - start

    rows, curves = {}, {}
    rows["random encoder (BatchNorm calibrated)"] = probe(training.calibrate_batchnorm(encoder(), unlabeled[:2000]))
    runs = {} if "byol" in args.skip else {"BYOL": dict(epochs=args.epochs, images=unlabeled)}
    if "ablations" not in args.skip:
        few = unlabeled[:min(len(unlabeled), 8000)]
        runs["BYOL, as short as the ablations"] = dict(epochs=args.ablation_epochs, images=few)  # the fair comparison
        runs["no predictor"] = dict(epochs=args.ablation_epochs, images=few, predictor=False)
        runs["tau = 0"] = dict(epochs=args.ablation_epochs, images=few, base_tau=0.0, tau_schedule="constant")
    for name, settings in runs.items():
        enc, projector, loss, monitor, seconds = byol(**settings)
        rows[f"{name}, frozen"] = {**probe(enc), "minutes": seconds / 60}
        # the projections the loss sees (where a collapse shows first), probed the same way
        rows[f"{name}, its projections"] = probe(nn.Sequential(enc, projector))
        curves[name] = {"loss": loss.tolist(), "monitor": monitor.tolist()}
        print(f"{name}: {len(loss)} steps in {seconds / 60:.1f} min; monitor {monitor[:3].mean():.2f} -> "
              f"{monitor[len(monitor) // 2]:.2f} -> {monitor[-5:].mean():.2f}; loss {loss[-5:].mean():.3f}", flush=True)
    if "supervised" not in args.skip:
        idx = torch.arange(args.labels)
        test_idx = torch.arange(args.labels, args.labels + len(test_images))
        pool = (torch.cat([labelled, test_images]), torch.cat([labels, test_labels]))
        *_, acc = training.train_classifier(encoder(), pool, idx[tenth], test_idx, args.sup_epochs,
                                            freeze_features=False, batch_size=128, augment=augment.crop_flip(32, 4),
                                            seed=0, progress=False)
        rows["same network trained on the tenth (crop, flip)"] = {"tenth": acc}

    print(f"\nFashion-MNIST (real), {args.unlabeled} unlabelled, {args.labels} / {args.labels // 10} labels, "
          f"{len(test_images)} test; width {args.width}, {'CIFAR' if args.small_stem else 'standard'} stem, "
          f"{torch.get_num_threads()} threads")
    print(f"{'encoder':48s}{'all labels':>11s}{'a tenth':>9s}")
    for name, r in rows.items():
        cells = [f"{r[k]:10.1f}%" if k in r else f"{'':11s}" for k in ("all", "tenth")]
        print(f"{name:48s}{''.join(cells)}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                       "rows": rows, "curves": curves}, indent=1))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    for name, c in curves.items():
        ax.plot(np.arange(len(c["monitor"])) / max(1, len(c["monitor"])), c["monitor"], label=name)
    ax.set(xlabel="fraction of the run", ylabel="collapse monitor", ylim=(0, None),
           title="BYOL on the real Fashion-MNIST (CPU, reduced scale)")
    ax.legend(fontsize=8)
    fig.savefig(args.out / "monitor.png", dpi=120, bbox_inches="tight")
    print(f"wrote {args.out}/results.json and monitor.png")


if __name__ == "__main__":
    main()
