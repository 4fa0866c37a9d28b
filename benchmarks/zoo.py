"""A one-shot zoo: what one traced forward and tracer.summary cost, against torchinfo.summary.

For each model of benchmarks/zoo_models.py (torchinfo's own test models, torchvision and tiny
Hugging Face architectures), in one process and alternating, it times the untraced forward, a
one-shot ``with tracer.trace(model): model(x)`` (its step written at the close),
``tracer.summary(model, x)`` as a user calls it (ops and statistics on, the table printed; the
output goes to /dev/null), the same with ``echo=False`` (the records without the table) and
``torchinfo.summary(model, input_data=x, verbose=0)`` and ``torchinfo.summary(model,
input_data=x)`` as called by default (it prints its table; to /dev/null), all in eval mode
without gradients, and prints the medians side by side with their ratios; then the medians
over the zoo and how many models tracer.summary beats torchinfo on. The same comparisons follow
repetition by repetition (each ratio of two blocks run one after the other, so that the
machine's drift between repetitions cancels): the median model's one-shot trace, and the
head-to-head counted three ways, faster or slower in three of four repetitions or within the
run's own spread.

    python benchmarks/zoo.py --quick            # fewer repetitions, a smoke run
    python benchmarks/zoo.py --filter resnet    # the models whose name contains "resnet"
    python benchmarks/zoo.py --reps 9
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from zoo_models import Entry, zoo

import tracer

MODES = ("plain", "trace", "summary", "records", "torchinfo", "torchinfo-printed")


def _runners(entry: Entry, torchinfo: Any) -> dict[str, Callable[[], object]]:
    model = entry.build().eval()
    args, kwargs = entry.args(), entry.kwargs()

    def plain() -> object:
        with torch.no_grad():
            return model(*args, **kwargs)

    def traced() -> object:
        with torch.no_grad(), tracer.trace(model):
            return model(*args, **kwargs)

    def summary() -> object:
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            return tracer.summary(model, *args, **kwargs)

    def records() -> object:
        return tracer.summary(model, *args, echo=False, **kwargs)

    def info() -> object:
        return torchinfo.summary(model, input_data=list(args), verbose=0, **kwargs)

    def info_printed() -> object:
        # as the users call it: torchinfo.summary(model, input_data=x) prints its table
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            return torchinfo.summary(model, input_data=list(args), **kwargs)

    runners = {"plain": plain, "trace": traced, "summary": summary, "records": records}
    if torchinfo is not None:
        runners["torchinfo"] = info
        runners["torchinfo-printed"] = info_printed
    return runners


def _block(fn: Callable[[], object], inner: int) -> float:
    start = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - start) / inner


def measure(entry: Entry, torchinfo: Any, reps: int, block_s: float) -> dict[str, Any]:
    """Median seconds per mode (None where a mode failed) and the failures' reasons."""
    runners = _runners(entry, torchinfo)
    inner: dict[str, int] = {}
    errors: dict[str, str] = {}
    for mode, fn in list(runners.items()):
        try:
            fn()  # the warm-up: a first call pays one-time costs (imports, caches, the probe)
            # The garbage of building the model and of the warm-up's imports (rich's, at the
            # first summary) is collected now: left pending, its full collection (50-75 ms)
            # lands on whichever call comes next.
            gc.collect()
            # Sized by the median of three more calls: sized by the first, a mode whose first
            # call is slow would be timed one cold call per block against the other modes'
            # warm blocks.
            once = statistics.median(_block(fn, 1) for _ in range(3))
            inner[mode] = max(1, min(200, round(block_s / max(once, 1e-6))))
        except Exception as exc:
            errors[mode] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:70]}"
            del runners[mode]
    times: dict[str, list[float]] = {mode: [] for mode in runners}
    for _ in range(reps):
        for mode, fn in runners.items():  # alternating: every mode sees the same machine
            times[mode].append(_block(fn, inner[mode]))
    medians = {mode: statistics.median(ts) if ts else None for mode, ts in times.items()}
    # Each repetition's ratios, its blocks run one after the other: the machine's speed drifts
    # between repetitions more than within one.
    paired = {
        pair: [a / b for a, b in zip(times[pair[0]], times[pair[1]], strict=True) if b > 0]
        for pair in PAIRS
        if pair[0] in times and pair[1] in times
    }
    return {
        "name": entry.name,
        "group": entry.group,
        "times": medians,
        "paired": paired,
        "errors": errors,
    }


#: The ratios also taken repetition by repetition (see :func:`paired_lines`).
PAIRS = (("trace", "plain"), ("summary", "torchinfo-printed"))


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else a / b


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1e3:.3f}" if value < 1e-3 else f"{value * 1e3:.2f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"x{value:.2f}"


HEADER = (
    f"{'model':<20} {'group':<12} {'plain ms':>9} {'trace ms':>9} {'summary ms':>10} "
    f"{'no-echo ms':>10} {'torchinfo ms':>12} {'trace/pl':>8} {'summ/pl':>8} {'tinfo/pl':>8} "
    f"{'summ/tinfo':>10} {'printed ms':>10} {'both printed':>12}"
)


def row(result: dict[str, Any]) -> str:
    t = result["times"]
    plain, traced = t.get("plain"), t.get("trace")
    summ, info = t.get("summary"), t.get("torchinfo")
    return (
        f"{result['name']:<20} {result['group']:<12} {_ms(plain):>9} {_ms(traced):>9} "
        f"{_ms(summ):>10} {_ms(t.get('records')):>10} {_ms(info):>12} "
        f"{_x(_ratio(traced, plain)):>8} "
        f"{_x(_ratio(summ, plain)):>8} {_x(_ratio(info, plain)):>8} "
        f"{_x(_ratio(summ, info)):>10} {_ms(t.get('torchinfo-printed')):>10} "
        f"{_x(_ratio(summ, t.get('torchinfo-printed'))):>12}"
    )


def totals(results: list[dict[str, Any]]) -> list[str]:
    """The medians over the zoo and the head-to-head count."""

    def med(num: str, den: str) -> tuple[float | None, int]:
        values = [_ratio(r["times"].get(num), r["times"].get(den)) for r in results]
        found = [v for v in values if v is not None]
        return (statistics.median(found) if found else None), len(found)

    lines = []
    for num, den, label in (
        ("trace", "plain", "one-shot trace / untraced forward"),
        ("summary", "plain", "tracer.summary / untraced forward"),
        ("records", "plain", "summary, echo=False / untraced forward"),
        ("torchinfo", "plain", "torchinfo.summary / untraced forward"),
        ("summary", "torchinfo", "tracer.summary / torchinfo.summary"),
    ):
        value, count = med(num, den)
        lines.append(f"median {label:<38} {_x(value):>8}  ({count} models)")
    value, count = med("summary", "torchinfo-printed")
    lines.append(f"median {'tracer.summary / torchinfo.summary, both printed':<38} {_x(value):>8}"
                 f"  ({count} models)")  # fmt: skip
    printed = [
        r for r in results if r["times"].get("summary") and r["times"].get("torchinfo-printed")
    ]
    wins = [r for r in printed if r["times"]["summary"] < r["times"]["torchinfo-printed"]]
    lines.append(
        f"tracer.summary faster than torchinfo.summary, both printing their table: "
        f"{len(wins)} of {len(printed)}"
    )
    both = [r for r in results if r["times"].get("records") and r["times"].get("torchinfo")]
    quiet = [r for r in both if r["times"]["records"] < r["times"]["torchinfo"]]
    lines.append(f"  neither printing (echo=False against verbose=0): {len(quiet)} of {len(both)}")
    losses = [r["name"] for r in printed if r not in wins]
    if losses:
        lines.append(f"slower (both printing) on: {', '.join(losses)}")
    return lines + paired_lines(results)


def paired_lines(results: list[dict[str, Any]]) -> list[str]:
    """The same comparisons from each repetition's own ratio (its two blocks run one after the
    other), per model the median and quartiles of those ratios: the median model's one-shot
    trace, and the head-to-head counted three ways, where the run's own spread decides."""
    lines = ["", "repetition by repetition (each ratio from two blocks run one after the other):"]
    traces = [
        statistics.median(r["paired"][PAIRS[0]]) for r in results if r["paired"].get(PAIRS[0])
    ]
    if traces:
        lines.append(
            f"median one-shot trace / untraced forward  {_x(statistics.median(traces)):>8}"
            f"  ({len(traces)} models)"
        )
    faster, slower, within = [], [], []
    for r in results:
        ratios = r["paired"].get(PAIRS[1])
        if not ratios:
            continue
        low, high = _quartiles(ratios)
        name = f"{r['name']} {_x(statistics.median(ratios))}"
        (faster if high < 1 else slower if low > 1 else within).append(name)
    count = len(faster) + len(slower) + len(within)
    if count:
        lines.append(
            f"tracer.summary / torchinfo.summary, both printing, of {count}: faster in 3 of 4 "
            f"repetitions or more on {len(faster)}, slower on {len(slower)}, within the spread "
            f"on {len(within)}"
        )
        if slower:
            lines.append(f"  slower: {', '.join(slower)}")
        if within:
            lines.append(f"  within the spread: {', '.join(within)}")
    return lines


def _quartiles(values: list[float]) -> tuple[float, float]:
    """The lower and upper quartile (both the value itself where there is one)."""
    if len(values) < 2:
        return values[0], values[0]
    low, _, high = statistics.quantiles(values, n=4, method="inclusive")
    return low, high


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 repetitions, short blocks")
    parser.add_argument("--filter", default=None, help="only models whose name contains NAME")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per mode (7)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: a busy second core stalls every two-thread kernel)",
    )
    opts = parser.parse_args(argv)
    reps = opts.reps if opts.reps is not None else (3 if opts.quick else 7)
    if reps < 1:
        print("zoo.py: --reps must be at least 1", file=sys.stderr)
        return 2
    if opts.threads < 1:
        print("zoo.py: --threads must be at least 1", file=sys.stderr)
        return 2
    torch.set_num_threads(opts.threads)
    entries = [e for e in zoo() if opts.filter is None or opts.filter in e.name]
    if not entries:
        print(f"zoo.py: no model name contains {opts.filter!r}", file=sys.stderr)
        return 2
    torchinfo: Any
    try:
        import torchinfo
    except ImportError:
        torchinfo = None
        print("torchinfo is not installed (pip install -e '.[bench]'): its column stays empty")
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    print(f"load {_loadavg()}  torch {torch.__version__}  threads {torch.get_num_threads()}")
    print(HEADER)
    results = []
    for entry in entries:
        try:
            result = measure(entry, torchinfo, reps, 0.004 if opts.quick else 0.02)
        except Exception as exc:  # the model itself could not be built or run
            print(f"{entry.name:<20} {entry.group:<12} not run: {type(exc).__name__}: {exc}"[:150])
            continue
        results.append(result)
        print(row(result), flush=True)
        for mode, reason in result["errors"].items():
            print(f"{'':<20} {mode} failed: {reason}")
    print()
    for line in totals(results):
        print(line)
    print(f"load {_loadavg()}")
    return 0


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
