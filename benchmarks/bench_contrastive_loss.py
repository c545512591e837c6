"""labkit's NT-Xent against the naive (2N, 2N, D) broadcast formulation: time and peak memory.

    python benchmarks/bench_contrastive_loss.py [--n 1000] [--d 84] [--device cuda]

Both sides compute the same loss (checked) with forward and backward, in one process.
The naive side is how course code often writes it: cosine similarity of every pair
through a broadcast, which materializes a (2N, 2N, D) tensor, then raw exp().
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from common import machine, peak_bytes, timed
from labkit import losses, runtime


def naive_contrastive_loss(z1, z2, temperature=0.5):
    z = torch.cat([z1, z2])  # (2N, D)
    n = len(z1)
    sim = F.cosine_similarity(z.unsqueeze(1), z.unsqueeze(0), dim=2)  # (2N, 2N, D) broadcast inside
    exp = torch.exp(sim / temperature)
    mask = ~torch.eye(2 * n, dtype=torch.bool, device=z.device)
    positives = torch.cat([torch.diag(exp, n), torch.diag(exp, -n)])
    return -torch.log(positives / (exp * mask).sum(dim=1)).mean()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--d", type=int, default=84)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = runtime.get_device(args.device)
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(args.n, args.d, generator=g).to(device).requires_grad_()
    z2 = torch.randn(args.n, args.d, generator=g).to(device).requires_grad_()

    def run(loss_fn):
        def step():
            z1.grad = z2.grad = None
            loss_fn(z1, z2).backward()
        return step

    ref, naive = losses.contrastive_loss(z1, z2).item(), naive_contrastive_loss(z1, z2).item()
    assert abs(ref - naive) < 1e-4 * abs(ref), (ref, naive)
    mem_ref = peak_bytes(run(losses.contrastive_loss), device)
    mem_naive = peak_bytes(run(naive_contrastive_loss), device)
    t_ref, t_naive = timed(run(losses.contrastive_loss), device), timed(run(naive_contrastive_loss), device)

    print(f"NT-Xent forward+backward, N={args.n}, D={args.d}; {machine()}")
    print(f"  losses agree: {ref:.6f} vs {naive:.6f}")
    print(f"  labkit.losses.contrastive_loss: {1e3 * t_ref:8.1f} ms, peak {mem_ref / 2**20:8.1f} MiB")
    print(f"  naive (2N, 2N, D) broadcast:    {1e3 * t_naive:8.1f} ms, peak {mem_naive / 2**20:8.1f} MiB")
    print(f"  ratio naive / labkit: time x{t_naive / t_ref:.1f}, peak memory x{mem_naive / max(mem_ref, 1):.1f}")


if __name__ == "__main__":
    main()
