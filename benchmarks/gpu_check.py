"""GPU checks of the tracing core: identical results, device records, host syncs per step, overhead.

Run on a machine with CUDA: ``python benchmarks/gpu_check.py``. Needs only torch and the core
(no store, no UI). Prints one section per check; exits non-zero when a check fails.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch import nn

import tracer
from tests.core.models import ArticleLSTM, SmallCNN, transformer

DEV = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # cpu: a dry run
EXPECTED_DEVICE = str(torch.empty(0, device=DEV).device)
FAILURES: list[str] = []


def check(ok: bool, what: str) -> None:
    """Print a check's outcome and remember failures."""
    print(f"  [{'ok' if ok else 'FAIL'}] {what}")
    if not ok:
        FAILURES.append(what)


def cases() -> dict[str, tuple[Callable[[], nn.Module], Callable[[], tuple[torch.Tensor, ...]]]]:
    """Model factories and input factories, all on the GPU."""
    return {
        "article LSTM": (
            lambda: ArticleLSTM(vocab=5000),
            lambda: (torch.randint(1, 5000, (50, 200), device=DEV),),
        ),
        "CNN+BatchNorm": (SmallCNN, lambda: (torch.randn(16, 3, 32, 32, device=DEV),)),
        "Transformer": (
            lambda: transformer(64, 4, 2),
            lambda: (torch.randn(8, 32, 64, device=DEV),),
        ),
    }


def first_tensor(out: object) -> torch.Tensor:
    """The first tensor of a model output (tuples of tensors and hidden states)."""
    while isinstance(out, (tuple, list)):
        out = out[0]
    assert isinstance(out, torch.Tensor)
    return out


def one_step(factory, inputs, trace_kwargs: dict | None):
    """One forward+backward from a fixed seed; returns output, grads and the trace's flow."""
    torch.manual_seed(0)
    model = factory().to(DEV).train()
    x = inputs()
    flow = None
    if trace_kwargs is None:
        out = first_tensor(model(*x))
        out.float().sum().backward()
    else:
        with tracer.trace(model, **trace_kwargs) as t:
            out = first_tensor(model(*x))
            out.float().sum().backward()
            t.step()
        flow = t.flow(0)
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    return out.detach().clone(), grads, flow


def check_identical_and_devices() -> None:
    """Outputs and gradients bit-identical with and without tracing; devices recorded."""
    print("identical results and device records (stats + ops + grads)")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    for name, (factory, inputs) in cases().items():
        out0, g0, _ = one_step(factory, inputs, None)  # one_step seeds itself
        out1, g1, _ = one_step(factory, inputs, None)
        out2, g2, flow = one_step(factory, inputs, {"ops": True, "grads": True})
        deterministic = torch.equal(out0, out1) and all(map(torch.equal, g0, g1))
        check(deterministic, f"{name}: untraced runs agree with each other (baseline)")
        check(torch.equal(out0, out2), f"{name}: outputs bit-identical traced vs untraced")
        check(
            len(g0) == len(g2) and all(map(torch.equal, g0, g2)),
            f"{name}: parameter gradients bit-identical",
        )
        devices = {r.device for c in flow for r in c.tensors if r.is_tensor}
        check(devices == {EXPECTED_DEVICE}, f"{name}: tensor records on {sorted(devices)}")
        grads = [r for c in flow for r in c.grads]
        check(bool(grads), f"{name}: {len(grads)} gradient records")
    torch.use_deterministic_algorithms(False)


def count_syncs(fn: Callable[[], None]) -> int:
    """Synchronising CUDA calls made by ``fn`` (torch's sync debug mode, as warnings)."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def check_syncs() -> None:
    """Host synchronisations per traced step: the design allows at most one with statistics."""
    print("host synchronisations per traced step (forward + backward + t.step())")
    for name, (factory, inputs) in cases().items():
        model = factory().to(DEV).train()
        x = inputs()
        base = count_syncs(lambda m=model, x=x: first_tensor(m(*x)).float().sum().backward())
        for label, kwargs in {
            "shapes only": {"stats": False},
            "stats": {},
            "stats+ops+grads": {"ops": True, "grads": True},
        }.items():
            with tracer.trace(model, **kwargs) as t:
                first_tensor(model(*x)).float().sum().backward()  # warm-up step
                t.step()

                def step(m: nn.Module = model, x: tuple = x, t: tracer.Trace = t) -> None:
                    first_tensor(m(*x)).float().sum().backward()
                    t.step()

                syncs = count_syncs(step)
            limit = base + (0 if label == "shapes only" else 1)  # the goal: one read-back a step
            check(syncs <= limit, f"{name} {label}: {syncs} syncs (untraced step: {base})")


def _sync() -> None:
    if DEV.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], reps: int) -> float:
    """Median seconds of ``fn`` with a device synchronisation around each call."""
    times = []
    for _ in range(reps):
        _sync()
        start = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _resnet50() -> nn.Module | None:
    """torchvision's ResNet-50 (random weights), or None where torchvision does not import."""
    try:
        from benchmarks.zoo_models import import_torchvision

        return import_torchvision().models.resnet50(weights=None)  # type: ignore[no-any-return]
    except Exception as exc:  # an optional model: say why and go on
        print(f"  (ResNet-50 left out: torchvision did not import: {type(exc).__name__}: {exc})")
        return None


#: The goals for the forward with full statistics, as ratios to the untraced forward.
GOALS = {
    "article LSTM 50x200": 1.05,
    "encoder 12x256 b8x128": 1.3,
    "ResNet-50 b32": 1.1,
    "ResNet-50 b2": 1.1,
}


def overhead() -> None:
    """Forward-time ratios traced / untraced, interleaved blocks, no_grad, eval mode."""
    print("forward overhead on the GPU (median of interleaved blocks)")
    lstm = ArticleLSTM(vocab=5000).to(DEV).eval()
    mlp = nn.Sequential(*[m for _ in range(500) for m in (nn.Linear(64, 64), nn.ReLU())]).to(DEV)
    enc = transformer(256, 8, 12).to(DEV).eval()
    models = {
        "article LSTM 50x200": (lstm, (torch.randint(1, 5000, (50, 200), device=DEV),)),
        "MLP 500 blocks b32": (mlp.eval(), (torch.randn(32, 64, device=DEV),)),
        "encoder 12x256 b8x128": (enc, (torch.randn(8, 128, 256, device=DEV),)),
    }
    resnet = _resnet50()
    if resnet is not None:
        batch = 32 if DEV.type == "cuda" else 2  # a dry run on the CPU stays short
        images = torch.randn(batch, 3, 224, 224, device=DEV)
        models[f"ResNet-50 b{batch}"] = (resnet.to(DEV).eval(), (images,))
    modes = {"shapes": {"stats": False}, "stats": {}, "stats+ops": {"ops": True}}
    print(f"  {'model':24} {'plain ms':>9} " + " ".join(f"{m:>10}" for m in modes) + "  goal")
    with torch.no_grad():
        for name, (model, x) in models.items():
            plain, ratios = [], {m: [] for m in modes}
            for _ in range(5):
                plain.append(timed(lambda m=model, x=x: m(*x), 10))
                for mode, kwargs in modes.items():
                    with tracer.trace(model, **kwargs) as t:

                        def fwd(m: nn.Module = model, x: tuple = x, t: tracer.Trace = t) -> None:
                            m(*x)
                            t.step()

                        ratios[mode].append(timed(fwd, 10))
            base = statistics.median(plain)
            cells = " ".join(f"{statistics.median(v) / base:>9.2f}x" for v in ratios.values())
            goal = GOALS.get(name)
            said = ""
            if goal is not None:
                ratio = statistics.median(ratios["stats"]) / base
                said = f"  stats <= {goal}x: {'met' if ratio <= goal else 'NOT met'}"
            print(f"  {name:24} {base * 1e3:>9.2f} {cells}{said}")


def main() -> int:
    """Run every check; non-zero exit when one failed."""
    gpu = torch.cuda.is_available()
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name() if gpu else 'cpu'}")
    check_identical_and_devices()
    if gpu:
        check_syncs()
    overhead()
    print(f"{len(FAILURES)} failed" if FAILURES else "all checks passed")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
