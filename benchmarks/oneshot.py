"""A one-shot trace's fixed costs: construction, open, the first forward, close.

``tracer.summary(model, x)`` traces one forward: on a small model the trace's fixed costs (the
hooks attached and detached, the module records, the notes, the step written at the close)
are most of its time. For a few model sizes this prints, in one process, the best of
``--reps`` blocks of ``--number`` runs (microseconds per run):

* ``untraced``: the model's forward alone (no gradients);
* ``construct``: ``tracer.trace(model, ops=True, stats=True)`` built, not opened;
* ``open+close``: the same opened and closed with no forward;
* ``trace ops+stats``: ``with torch.no_grad(), tracer.trace(model, ops=True, stats=True):
  model(x)``; then the same with ``ops=False`` and with ``ops=False, stats=False``;
* ``torchinfo``: ``torchinfo.summary(model, input_data=[x])`` printing its table (to
  /dev/null), when torchinfo is installed;

then each part of the ops+stats trace timed on its own (median of the runs): construction,
``open()``, the forward, ``close()``, and the records read back (``t.calls``). The last column
is the open+close time per module.

    python benchmarks/oneshot.py                 # identity, seq, 200 Linear
    python benchmarks/oneshot.py --number 500    # a quicker run
    python benchmarks/oneshot.py --model seq
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import tracer


def models() -> dict[str, tuple[nn.Module, torch.Tensor]]:
    """The models timed: no module at all, a small MLP, many small modules."""
    return {
        "identity": (nn.Identity(), torch.randn(1, 4)),
        "seq": (
            nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)).eval(),
            torch.randn(2, 8),
        ),
        "linear200": (
            nn.Sequential(*[nn.Linear(8, 8) for _ in range(200)]).eval(),
            torch.randn(2, 8),
        ),
    }


def best_of(fn: Callable[[], object], number: int, reps: int) -> float:
    """Microseconds per call of ``fn``: the best of ``reps`` blocks of ``number`` calls."""
    for _ in range(min(number, 50)):
        fn()
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best * 1e6


def whole(model: nn.Module, x: torch.Tensor) -> dict[str, Callable[[], object]]:
    """The whole-run variants, each a callable doing one run."""

    def untraced() -> object:
        with torch.no_grad():
            return model(x)

    def construct() -> object:
        return tracer.trace(model, ops=True, stats=True)

    def open_close() -> object:
        t = tracer.trace(model, ops=True, stats=True)
        t.open()
        t.close()
        return t

    def traced(ops: bool, stats: bool) -> Callable[[], object]:
        def run() -> object:
            with torch.no_grad(), tracer.trace(model, ops=ops, stats=stats) as t:
                model(x)
            return t

        return run

    runs: dict[str, Callable[[], object]] = {
        "untraced": untraced,
        "construct": construct,
        "open+close": open_close,
        "trace ops+stats": traced(True, True),
        "ops=False": traced(False, True),
        "shapes only": traced(False, False),
    }
    try:
        import torchinfo
    except ImportError:
        return runs

    def info() -> object:
        with open(os.devnull, "w") as out, contextlib.redirect_stdout(out):
            return torchinfo.summary(model, input_data=[x])

    runs["torchinfo"] = info
    return runs


PARTS = ("construct", "open", "forward", "close", "read")


def parts(model: nn.Module, x: torch.Tensor, number: int) -> dict[str, float]:
    """Median microseconds of each part of a one-shot ops+stats trace."""
    times: dict[str, list[float]] = {part: [] for part in PARTS}
    clock = time.perf_counter
    for i in range(number + min(number, 50)):
        a = clock()
        t = tracer.trace(model, ops=True, stats=True)
        b = clock()
        with torch.no_grad():
            t.open()
            c = clock()
            model(x)
            d = clock()
            t.close()
            e = clock()
        t.calls  # noqa: B018 (the records built when first read)
        f = clock()
        if i >= min(number, 50):  # the first runs warm up
            for part, value in zip(PARTS, (b - a, c - b, d - c, e - d, f - e), strict=True):
                times[part].append(value)
    return {part: statistics.median(values) * 1e6 for part, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=2000, help="runs per block (default 2000)")
    parser.add_argument("--reps", type=int, default=5, help="blocks, the best kept (default 5)")
    parser.add_argument("--model", action="append", help="only this model (repeatable)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    chosen = {k: v for k, v in models().items() if not args.model or k in args.model}
    rows: dict[str, dict[str, float]] = {}
    for name, (model, x) in chosen.items():
        count = sum(1 for _ in model.modules())
        number = max(20, args.number // max(1, count // 4))  # big models: fewer runs
        runs = whole(model, x).items()
        rows[name] = {label: best_of(fn, number, args.reps) for label, fn in runs}
        rows[name]["per module"] = rows[name]["open+close"] / count
    labels = list(next(iter(rows.values())))
    names = list(rows)
    print(f"best of {args.reps} blocks, microseconds per run (torch {torch.__version__})")
    print(f"{'':18s}" + "".join(f"{n:>12s}" for n in names))
    for label in labels:
        print(f"{label:18s}" + "".join(f"{rows[n].get(label, float('nan')):12.1f}" for n in names))
    print()
    print("parts of one ops+stats trace, median microseconds")
    split: dict[str, dict[str, float]] = {}
    for name, (model, x) in chosen.items():
        count = sum(1 for _ in model.modules())
        split[name] = parts(model, x, max(20, args.number // max(1, count // 4)))
    print(f"{'':18s}" + "".join(f"{n:>12s}" for n in names))
    for part in PARTS:
        print(f"{part:18s}" + "".join(f"{split[n][part]:12.1f}" for n in names))


if __name__ == "__main__":
    main()
