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

``per module``: open+close divided by the model's module count; then each part of the
ops+stats trace timed on its own (``part: ...``, the median of the runs): construction,
``open()``, the forward, ``close()``, and the records read back (``t.calls``).

    python benchmarks/oneshot.py                 # identity, seq, 200 Linear
    python benchmarks/oneshot.py --number 500    # a quicker run
    python benchmarks/oneshot.py --model seq
    python benchmarks/oneshot.py --against ../old-checkout   # before and after, side by side

With ``--against DIR`` (a directory holding an older ``tracer`` package, e.g. a ``git
worktree``; compiled extensions included) the script runs itself in alternating processes,
``--rounds`` per side, with ``PYTHONPATH`` set to each checkout, and prints the best of each
figure for both with their ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

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


def measure(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Every figure for every chosen model: model -> label -> microseconds."""
    chosen = {k: v for k, v in models().items() if not args.model or k in args.model}
    rows: dict[str, dict[str, float]] = {}
    for name, (model, x) in chosen.items():
        count = sum(1 for _ in model.modules())
        number = max(20, args.number // max(1, count // 4))  # big models: fewer runs
        runs = whole(model, x).items()
        row = rows[name] = {label: best_of(fn, number, args.reps) for label, fn in runs}
        row["per module"] = row["open+close"] / count
        for part, value in parts(model, x, number).items():
            row[f"part: {part}"] = value
    return rows


def show(rows: dict[str, dict[str, float]]) -> None:
    names = list(rows)
    print(f"{'':18s}" + "".join(f"{n:>12s}" for n in names))
    for label in rows[names[0]]:
        print(f"{label:18s}" + "".join(f"{rows[n].get(label, float('nan')):12.1f}" for n in names))


def compare(args: argparse.Namespace, passed: list[str]) -> None:
    """This checkout against the one at ``args.against``, in alternating processes."""
    here = Path(__file__).resolve().parents[1]
    checkouts = {"before": Path(args.against).resolve(), "after": here}
    best: dict[str, dict[str, dict[str, float]]] = {}
    for _ in range(args.rounds):
        for side, root in checkouts.items():
            env = {**os.environ, "PYTHONPATH": str(root)}
            out = subprocess.run(
                [sys.executable, __file__, "--json", *passed],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            for name, row in json.loads(out).items():
                kept = best.setdefault(name, {}).setdefault(side, {})
                for label, value in row.items():
                    kept[label] = min(value, kept.get(label, float("inf")))
    print(f"before: {checkouts['before']}, after: {here}; best of {args.rounds} rounds")
    for name, sides in best.items():
        print(f"\n{name:18s}{'before':>10s}{'after':>10s}{'after/before':>14s}")
        for label in sides["after"]:
            old, new = sides["before"].get(label, float("nan")), sides["after"][label]
            print(f"{label:18s}{old:10.1f}{new:10.1f}{new / old:14.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=2000, help="runs per block (default 2000)")
    parser.add_argument("--reps", type=int, default=5, help="blocks, the best kept (default 5)")
    parser.add_argument("--model", action="append", help="only this model (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--against",
        metavar="DIR",
        help="also time the tracer package in DIR (an older checkout) and print both",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="with --against: processes per side (default 3)"
    )
    args = parser.parse_args()
    if args.against:
        passed = [f"--number={args.number}", f"--reps={args.reps}"]
        passed += [f"--model={m}" for m in args.model or ()]
        compare(args, passed)
        return
    torch.set_num_threads(1)
    rows = measure(args)
    if args.json:
        print(json.dumps(rows))
        return
    print(f"microseconds per run (torch {torch.__version__}, tracer from {tracer.__file__})")
    print(f"best of {args.reps} blocks; parts: medians")
    show(rows)


if __name__ == "__main__":
    main()
