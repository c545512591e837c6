"""Shared bits of the benchmarks: timing, peak memory, and the machine they ran on."""
from __future__ import annotations

import ctypes
import platform
import time

import torch


def machine() -> str:
    """A one-line description of where the numbers come from."""
    if torch.cuda.is_available():
        return f"GPU: {torch.cuda.get_device_name()} (torch {torch.__version__})"
    return f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads (torch {torch.__version__})"


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def simclr_epoch(batches, make_model, device, bf16: bool = False) -> float:
    """Seconds to train a fresh ``make_model()`` (seeded) with NT-Xent over ``batches``, pairs of views (Adam)."""
    from labkit import losses

    torch.manual_seed(0)
    model = make_model().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sync(device)
    start = time.perf_counter()
    for x1, x2 in batches:
        x1, x2 = x1.to(device, non_blocking=True), x2.to(device, non_blocking=True)
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            loss = losses.contrastive_loss(model(x1), model(x2))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return time.perf_counter() - start


def timed(fn, device, repeats: int = 3) -> float:
    """Best wall time of ``repeats`` calls of ``fn`` (after one warm-up call), in seconds."""
    fn()
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def peak_bytes(fn, device) -> int:
    """Peak memory of one call of ``fn``.

    On CUDA: the caching allocator's peak above what was allocated before.
    On CPU (Linux): free heap pages are handed back (malloc_trim), the resident-set
    high-water mark is reset (/proc/self/clear_refs), and the peak is its growth during the call.
    """
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident size
    before = _status_kib("VmRSS")
    fn()
    return (_status_kib("VmHWM") - before) * 1024


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")
