"""Tracing overhead: median forward time of each model untraced and traced, as ratios.

Run ``python benchmarks/overhead.py`` (add ``--quick`` for a smoke run). Plain and traced blocks
are interleaved in one process and the medians compared, because absolute times drift a lot on
a shared machine. Forward modes run in eval mode under ``torch.no_grad()``; the ``grads`` mode
times forward + backward against an untraced forward + backward. ``every=10`` times the steps
that a sampled trace does not record. torchinfo and TorchLens, when importable, are timed on the
same models for comparison (optional, never required by the package).

The floor modes time what any Python-level per-call tool pays at least: ``floor: wrapper``
replaces every module's ``forward`` on the instance by an empty Python wrapper (as the tracer
installs its own), ``floor: torch hooks`` puts a do-nothing forward pre-hook and forward hook
on every module. Both run an encoder layer on its Python path, as the tracer does (its fused
kernel would never call the sublayers); ``floor: Python path`` is that alone, no wrapper. A
second table sets the tracer's shapes and stats modes beside them, with the microseconds per
module call above the wrapper floor. ``--floor`` times only these modes.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

import tracer
from tracer.records import CallRecord, ModuleRecord

_MISSING = object()


class NullSink:
    """Drops records: the benchmark measures the tracer, not a store.

    A step's records are built when first read; this sink never reads them. ``ReadingSink``
    (the ``+records`` mode) reads every record and statistic, as a store or a user would.
    """

    def begin(self, modules: Sequence[ModuleRecord], notes: Sequence[str]) -> None:
        pass

    def write_step(
        self, step: int, calls: Sequence[CallRecord], metrics: Mapping[str, float] | None = None
    ) -> None:
        pass

    def write_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        pass

    def end(self, status: str, error: str | None = None) -> None:
        pass


class ArticleLSTM(nn.Module):
    """The article's model: Embedding(v,30), LSTM(30,512), view, Linear, Sigmoid, [:, -1]."""

    def __init__(self, vocab: int = 20000) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, 30)
        self.lstm = nn.LSTM(30, 512, 1, batch_first=True)
        self.fc = nn.Linear(512, 1)
        self.sig = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embedding(x))
        out = self.sig(self.fc(out.contiguous().view(-1, 512)))
        return out.view(x.size(0), -1)[:, -1]


class ReadingSink(NullSink):
    """Builds and touches every record of each step, then drops it."""

    def write_step(
        self, step: int, calls: Sequence[CallRecord], metrics: Mapping[str, float] | None = None
    ) -> None:
        for call in calls:
            for record in call.tensors:
                record.stats.get("mean")


MODEL_NAMES = ("article LSTM 50x200", "MLP 500x(Linear,ReLU) b32", "TransformerEncoder 12L 8x128")


def models() -> dict[str, tuple[nn.Module, tuple[torch.Tensor, ...], int]]:
    """name -> (model, inputs, forwards per timed block)."""
    torch.manual_seed(0)
    blocks: list[nn.Module] = []
    for _ in range(500):
        blocks += [nn.Linear(64, 64), nn.ReLU()]
    layer = nn.TransformerEncoderLayer(256, 8, batch_first=True)
    lstm, mlp, encoder = MODEL_NAMES
    return {
        lstm: (ArticleLSTM(), (torch.randint(0, 20000, (50, 200)),), 3),
        mlp: (nn.Sequential(*blocks), (torch.randn(32, 64),), 10),
        encoder: (
            nn.TransformerEncoder(layer, 12, enable_nested_tensor=False),
            (torch.randn(8, 128, 256),),
            1,
        ),
    }


MODES: dict[str, dict[str, Any]] = {
    "shapes": {"stats": False},
    "stats": {"stats": True},
    "stats+records": {"stats": True, "sink": ReadingSink},
    "stats+ops": {"stats": True, "ops": True},
    "stats+grads": {"stats": True, "grads": True},
}


def _wrap_forwards(
    model: nn.Module, make: Callable[[Callable[..., Any]], Callable[..., Any]]
) -> Callable[[], None]:
    """Every module's ``forward`` replaced on the instance by ``make(forward)``; returns undo.

    Installed as the tracer installs its wrapper (an instance attribute, so PyTorch keeps its
    hook-free call path), encoder layers included: they get the same do-nothing pre-hook the
    tracer gives them, without which they run fused and their sublayers are never called.
    """
    installed: list[tuple[nn.Module, Any]] = []
    for module in model.modules():
        installed.append((module, module.__dict__.get("forward", _MISSING)))
        wrapper = make(module.forward)
        wrapper.__wrapped__ = module.forward  # type: ignore[attr-defined]
        module.__dict__["forward"] = wrapper
    unhook = _python_path(model)

    def undo() -> None:
        for module, saved in installed:
            if saved is _MISSING:
                del module.__dict__["forward"]
            else:
                module.__dict__["forward"] = saved
        unhook()

    return undo


def _python_path(model: nn.Module) -> Callable[[], None]:
    """A do-nothing pre-hook on each encoder layer, which then runs its Python path (its
    sublayers called one by one) instead of its fused kernel; returns undo. Alone, it is what
    seeing an encoder's sublayers costs before any wrapper."""
    handles = [
        module.register_forward_pre_hook(_no_op_pre)
        for module in model.modules()
        if isinstance(module, nn.TransformerEncoderLayer)
    ]

    def undo() -> None:
        for handle in handles:
            handle.remove()

    return undo


def _empty_wrapper(orig: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*a: Any, **k: Any) -> Any:
        return orig(*a, **k)

    return wrapper


def _empty_wrappers(model: nn.Module) -> Callable[[], None]:
    """The floor: an empty Python wrapper around every module's forward; returns undo."""
    return _wrap_forwards(model, _empty_wrapper)


def _empty_hooks(model: nn.Module) -> Callable[[], None]:
    """A do-nothing forward pre-hook and forward hook on every module; returns undo."""
    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(_no_op_pre))
        handles.append(module.register_forward_hook(_no_op_post))

    def undo() -> None:
        for handle in handles:
            handle.remove()

    return undo


def _no_op_pre(module: nn.Module, args: Any) -> None:
    return None


def _no_op_post(module: nn.Module, args: Any, output: Any) -> None:
    return None


FLOORS: dict[str, Callable[[nn.Module], Callable[[], None]]] = {
    "floor: Python path": _python_path,
    "floor: wrapper": _empty_wrappers,
    "floor: torch hooks": _empty_hooks,
}


def module_calls(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    """How many module calls one forward makes, with encoder layers on their Python path."""
    count = [0]

    def counting(orig: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*a: Any, **k: Any) -> Any:
            count[0] += 1
            return orig(*a, **k)

        return wrapper

    undo = _wrap_forwards(model, counting)
    try:
        _forward(model, inputs, backward=False)
    finally:
        undo()
    return count[0]


def _forward(model: nn.Module, inputs: tuple[torch.Tensor, ...], backward: bool) -> None:
    with nullcontext() if backward else torch.no_grad():
        out = model(*inputs)
        if backward:
            out.float().sum().backward()


def _block(model: nn.Module, inputs: tuple[Any, ...], n: int, mode: str) -> tuple[float, float]:
    """Seconds per step over ``n`` steps in one mode: (forward + ``t.step()``, ``t.step()``)."""
    backward = mode.endswith("grads")
    if mode in ("plain", "plain+grads"):
        start = time.perf_counter()
        for _ in range(n):
            _forward(model, inputs, backward)
        return (time.perf_counter() - start) / n, 0.0
    if mode in FLOORS:
        undo = FLOORS[mode](model)
        try:
            start = time.perf_counter()
            for _ in range(n):
                _forward(model, inputs, backward)
            return (time.perf_counter() - start) / n, 0.0
        finally:
            undo()
    untraced = mode.startswith("every=10")
    options = dict({"every": 10} if untraced else MODES[mode])
    sink = options.pop("sink", NullSink)()
    with tracer.trace(model, sink=sink, **options) as t:
        if untraced:
            t.step()  # leave the recorded step 0: steps 1..9 are not recorded
            n = min(n, 9)
        totals, steps = [], []
        for _ in range(n):
            start = time.perf_counter()
            _forward(model, inputs, backward)
            middle = time.perf_counter()
            t.step()
            end = time.perf_counter()
            totals.append(end - start)
            steps.append(end - middle)
    if untraced:
        # The median untraced step: the last t.step() of the block re-attaches the hooks for
        # the next recorded step, a cost that belongs to that recorded step.
        return statistics.median(totals), statistics.median(steps)
    return sum(totals) / n, sum(steps) / n


def _peers(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> dict[str, Callable[[], object]]:
    peers: dict[str, Callable[[], object]] = {}
    try:
        import torchinfo

        peers["torchinfo.summary"] = lambda: torchinfo.summary(
            model, input_data=list(inputs), verbose=0
        )
    except ImportError:
        pass
    try:
        import torchlens

        peers["torchlens"] = lambda: torchlens.log_forward_pass(model, list(inputs))
    except ImportError:
        pass
    return peers


#: model, mode, median seconds, ratio of medians, share in t.step(), lowest and highest
#: ratio of a single repetition.
Row = tuple[str, str, float, float, float, float, float]


def measure(
    reps: int, floor_only: bool = False, only: str | None = None
) -> tuple[list[Row], dict[str, int]]:
    """One :data:`Row` per model and mode (peers included), and each model's module calls;
    ``only``: the models whose name contains it."""
    rows: list[Row] = []
    calls: dict[str, int] = {}
    for name, (model, inputs, n) in models().items():
        if only is not None and only.lower() not in name.lower():
            continue
        model.eval()
        calls[name] = module_calls(model, inputs)
        modes = ["plain", "shapes", "stats"]
        if not floor_only:
            modes += ["stats+records", "stats+ops", "every=10 (untraced step)"]
            modes += ["plain+grads", "stats+grads"]
        modes += FLOORS  # after the tracer's modes: the table's first rows keep their order
        peers = {} if floor_only else _peers(model, inputs)
        times: dict[str, list[tuple[float, float]]] = {m: [] for m in modes + list(peers)}
        _block(model, inputs, 1, "plain")  # warm up allocator and kernels
        for _ in range(reps):
            for mode in modes:
                times[mode].append(_block(model, inputs, n, mode))
            for peer, run in peers.items():
                with torch.no_grad():
                    start = time.perf_counter()
                    run()
                    times[peer].append((time.perf_counter() - start, 0.0))
        med = {m: statistics.median(t for t, _ in v) for m, v in times.items()}
        for mode, value in med.items():
            plain = "plain+grads" if mode.endswith("grads") else "plain"
            base = med[plain]
            step = statistics.median(s for _, s in times[mode])
            # Each repetition's own ratio (its traced block against the plain block run just
            # before it): their spread shows how far the machine moved during the run.
            each = [t / p for (t, _), (p, _) in zip(times[mode], times[plain], strict=True)]
            rows.append((name, mode, value, value / base, step / base, min(each), max(each)))
    return rows, calls


def print_table(rows: list[Row]) -> None:
    """One table: model, mode, median ms, ratio, the per-repetition range, share in step()."""
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    head = f"{'model':<30} {'mode':<26} {'median ms':>10} {'ratio':>7} {'reps range':>13}"
    print(f"{head} {'in step()':>10}")
    for name, mode, seconds, ratio, step, low, high in rows:
        spread = f"{low:.2f}-{high:.2f}"
        line = f"{name:<30} {mode:<26} {seconds * 1e3:>10.2f} {ratio:>6.2f}x {spread:>13}"
        print(f"{line} {step:>9.2f}x")


def print_floor(rows: list[Row], calls: Mapping[str, int]) -> None:
    """Per model: the floors and the tracer against the untraced forward, and per call above
    the wrapper floor ((traced - floor) / calls, in microseconds)."""
    seconds = {(name, mode): value for name, mode, value, *_ in rows}
    modes = [*FLOORS, "shapes", "stats"]
    names = [m.removeprefix("floor: ") for m in modes]
    print()
    print("the per-call floor: ratio to the untraced forward; us per call above floor: wrapper")
    head = f"{'model':<30} {'calls':>6} {'plain ms':>9}"
    head += "".join(f" {m:>{max(len(m), 7) + 1}}" for m in names)
    print(f"{head} {'shapes us/call':>15} {'stats us/call':>14}")
    for name, count in calls.items():
        plain = seconds[(name, "plain")]
        floor = seconds[(name, "floor: wrapper")]
        line = f"{name:<30} {count:>6} {plain * 1e3:>9.2f}"
        line += "".join(
            f" {seconds[(name, m)] / plain:>{max(len(n), 7)}.2f}x"
            for m, n in zip(modes, names, strict=True)
        )
        above = [(seconds[(name, m)] - floor) / count * 1e6 for m in ("shapes", "stats")]
        print(f"{line} {above[0]:>15.2f} {above[1]:>14.2f}")


def main() -> None:
    """Parse arguments, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9, help="interleaved repetitions per mode")
    parser.add_argument("--quick", action="store_true", help="3 repetitions (a smoke run)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument(
        "--floor", action="store_true", help="only the floor's modes: plain, floors, tracer"
    )
    parser.add_argument("--model", help="only the models whose name contains this (e.g. MLP)")
    args = parser.parse_args()
    if args.model is not None and not any(args.model.lower() in n.lower() for n in MODEL_NAMES):
        parser.error(f"no model matches {args.model!r}: the models are {', '.join(MODEL_NAMES)}")
    if args.reps < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--reps and --threads must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    # The untrained LSTM's backward otherwise spends seconds per step in denormal arithmetic,
    # the same with and without tracing: flushed in every mode alike, the ratios are unchanged.
    torch.set_flush_denormal(True)
    rows, calls = measure(3 if args.quick else args.reps, args.floor, args.model)
    print_table(rows)
    print_floor(rows, calls)


if __name__ == "__main__":
    main()
