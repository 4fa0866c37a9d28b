"""What the statistics of a one-shot trace cost against one read of the activations from memory.

For each zoo model (benchmarks/zoo_models.py), in one process and alternating, it times the
forward under ``tracer.trace(model, stats=False)`` and under ``tracer.trace(model)``; the
difference is what the statistics add. It counts the distinct tensors the trace reads for them
and their bytes, and prints the rate that difference amounts to, beside the two rates of the
statistics kernel itself on one thread: reading a tensor far bigger than the caches (256 MB,
straight after another 256 MB was written: from memory) and reading a 512 KiB one again and
again (from the cache). A trace whose rate lies between the two spends its statistics time
reading each activation once, part of it from memory.

    python benchmarks/stats_bandwidth.py                      # a few torchvision models
    python benchmarks/stats_bandwidth.py --models resnet50 gru --reps 31
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from zoo_models import zoo

import tracer
from tracer.core import collector
from tracer.core.probe import compiled_float_stats

DEFAULT = ("mobilenet_v3_small", "mnasnet0_5", "regnet_y_400mf", "efficientnet_b0", "resnet50")


def kernel_rates(mb: int = 256) -> tuple[float, float] | None:
    """Bytes per second at which the statistics kernel reads float32 values from memory (a
    tensor of ``mb`` MB straight after as many other bytes were written) and from the cache (a
    512 KiB tensor read again and again), medians of 5; None without the kernel."""
    kernel = compiled_float_stats()
    if kernel is None:
        return None
    numel = mb * (1 << 20) // 4
    data, other, small = torch.randn(numel), torch.empty(numel), torch.randn(1 << 17)
    cold, warm = [], []
    for _ in range(5):
        other.fill_(1.0)  # the caches now hold the other tensor
        start = time.perf_counter()
        kernel(data)
        cold.append(data.numel() * 4 / (time.perf_counter() - start))
        kernel(small)
        start = time.perf_counter()
        for _ in range(20):
            kernel(small)
        warm.append(20 * small.numel() * 4 / (time.perf_counter() - start))
    return statistics.median(cold), statistics.median(warm)


def _read_bytes(
    model: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[int, int]:
    """The distinct tensors one traced forward reads for their statistics, and their bytes."""
    seen: set[int] = set()
    total = [0]
    made = collector.StatsCollector.__init__

    def counting_init(self: collector.StatsCollector, *a: Any, **k: Any) -> None:
        made(self, *a, **k)
        request = self.request

        def counted(t: torch.Tensor) -> int:
            index = request(t)
            if index not in seen:
                seen.add(index)
                total[0] += t.numel() * t.element_size()
            return index

        self.request = counted  # type: ignore[method-assign]

    collector.StatsCollector.__init__ = counting_init  # type: ignore[method-assign]
    try:
        with torch.no_grad(), tracer.trace(model):
            model(*args, **kwargs)
    finally:
        collector.StatsCollector.__init__ = made  # type: ignore[method-assign]
    return len(seen), total[0]


def measure(name: str, reps: int) -> str:
    entries = [e for e in zoo() if e.name == name]
    if not entries:
        return f"{name:<20} not in the zoo"
    entry = entries[0]
    model = entry.build().eval()
    args, kwargs = entry.args(), entry.kwargs()

    def forward(stats: bool) -> float:
        with torch.no_grad(), tracer.trace(model, stats=stats):
            start = time.perf_counter()
            model(*args, **kwargs)
            return time.perf_counter() - start

    times: dict[bool, list[float]] = {False: [], True: []}
    for stats in (False, True):
        forward(stats)  # the warm-up
    for _ in range(reps):
        for stats in (False, True):  # alternating: both see the same machine
            times[stats].append(forward(stats))
    shapes, full = statistics.median(times[False]), statistics.median(times[True])
    added = full - shapes
    count, size = _read_bytes(model, args, kwargs)
    rate = f"{size / added / 1e9:8.2f}" if added > 0 else "       -"
    return (
        f"{name:<20} {shapes * 1e3:10.2f} {full * 1e3:10.2f} {added * 1e3:9.2f} "
        f"{count:8d} {size / 1e6:9.1f} {rate}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT), help="zoo model names")
    parser.add_argument("--reps", type=int, default=21, help="alternations per model (21)")
    parser.add_argument(
        "--mb", type=int, default=256, help="MB of the tensor read from memory (256)"
    )
    opts = parser.parse_args(argv)
    if opts.reps < 1 or opts.mb < 1:
        print("stats_bandwidth.py: --reps and --mb must be at least 1", file=sys.stderr)
        return 2
    torch.set_num_threads(1)  # as zoo.py: one thread, the kernel's too
    try:
        rates = kernel_rates(opts.mb)
    except (MemoryError, RuntimeError) as exc:  # --mb beyond what this machine can hold
        print(f"stats_bandwidth.py: cannot allocate 2 x {opts.mb} MB: {exc}", file=sys.stderr)
        return 2
    if rates is None:
        print("the statistics kernel is not built: nothing to compare with", file=sys.stderr)
        return 1
    print(
        f"the kernel on one thread: {rates[0] / 1e9:.2f} GB/s from memory ({opts.mb} MB), "
        f"{rates[1] / 1e9:.2f} GB/s from the cache (512 KiB)"
    )
    print(
        f"{'model':<20} {'shapes ms':>10} {'stats ms':>10} {'added ms':>9} {'tensors':>8} "
        f"{'MB read':>9} {'GB/s':>8}"
    )
    for name in opts.models:
        print(measure(name, opts.reps), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
