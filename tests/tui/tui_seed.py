"""Hand-made runs with the article's shapes, written through the real store API."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tracer.records import CallRecord, ModuleRecord, ParamRecord, TensorRecord
from tracer.store import Store, provenance

BATCH, SEQ, EMBED, VOCAB = 50, 200, 30, 1000
FROZEN_TIME = 1_790_000_000.0  # a fixed clock, so that snapshots do not change


def tensor(slot: str, shape: tuple[int, ...], role: str = "output", **stats: float) -> TensorRecord:
    """A float32 cpu tensor record with the given statistics."""
    numel = 1
    for dim in shape:
        numel *= dim
    base = {"numel": float(numel), "mean": 0.0, "std": 1.0, "min": -1.0, "max": 1.0}
    base.update({"abs_mean": 0.5, "l2": 10.0, "zero_frac": 0.0, "nan_count": 0, "inf_count": 0})
    base.update(stats)
    return TensorRecord(slot, shape, "float32", "cpu", role=role, stats=base)  # type: ignore[arg-type]


def tokens() -> TensorRecord:
    """The (batch, seq) int64 token ids."""
    stats = {"numel": float(BATCH * SEQ), "mean": 420.0, "min": 0.0, "max": 999.0, "zero_frac": 0.1}
    return TensorRecord("0", (BATCH, SEQ), "int64", "cpu", role="input", stats=stats)


def sentiment_modules(hidden: int) -> list[ModuleRecord]:
    """Embedding -> LSTM -> Linear -> Sigmoid, with the article's parameter counts."""
    lstm = 4 * hidden * (EMBED + hidden) + 8 * hidden
    embed, fc = VOCAB * EMBED, hidden + 1
    lstm_params = (
        ParamRecord("weight_ih_l0", (4 * hidden, EMBED), "float32", 4 * hidden * EMBED, True),
        ParamRecord("weight_hh_l0", (4 * hidden, hidden), "float32", 4 * hidden * hidden, True),
        ParamRecord("bias_ih_l0", (4 * hidden,), "float32", 4 * hidden, True),
        ParamRecord("bias_hh_l0", (4 * hidden,), "float32", 4 * hidden, True),
    )
    total = embed + lstm + fc
    return [
        ModuleRecord("", "SentimentLSTM", None, 0, 0, total, 0, total),
        ModuleRecord("embedding", "Embedding", "", 1, embed, embed, embed, embed, f"{VOCAB}, 30"),
        ModuleRecord(
            "lstm",
            "LSTM",
            "",
            1,
            lstm,
            lstm,
            lstm,
            lstm,
            f"30, {hidden}, batch_first=True",
            lstm_params,
        ),
        ModuleRecord(
            "fc", "Linear", "", 1, fc, fc, fc, fc, f"in_features={hidden}, out_features=1"
        ),
        ModuleRecord("sig", "Sigmoid", "", 1),
    ]


def sentiment_calls(step: int, hidden: int, drift: float = 0.0) -> list[CallRecord]:
    """One step of the article's flow; statistics move with ``step`` so plots have a shape."""
    flat = BATCH * SEQ
    s = step * 0.01 + drift
    lstm_out = tensor("0", (BATCH, SEQ, hidden), mean=0.01 + s, std=0.05 + s)
    h, c = tensor("1.0", (1, BATCH, hidden)), tensor("1.1", (1, BATCH, hidden), std=0.2)
    calls = [
        ("", "SentimentLSTM", "module", None, [tokens()], [tensor("0", (BATCH,), mean=0.5)]),
        ("embedding", "Embedding", "module", None, [tokens()], [tensor("0", (BATCH, SEQ, EMBED))]),
        (
            "lstm",
            "LSTM",
            "module",
            None,
            [tensor("0", (BATCH, SEQ, EMBED), role="input")],
            [lstm_out, h, c],
        ),
        (
            "",
            "SentimentLSTM",
            "op",
            "view",
            [tensor("0", (BATCH, SEQ, hidden), role="input")],
            [tensor("0", (flat, hidden))],
        ),
        (
            "fc",
            "Linear",
            "module",
            None,
            [tensor("0", (flat, hidden), role="input")],
            [tensor("0", (flat, 1), mean=-0.02)],
        ),
        (
            "sig",
            "Sigmoid",
            "module",
            None,
            [tensor("0", (flat, 1), role="input")],
            [tensor("0", (flat, 1), mean=0.49, std=0.01, min=0.4, max=0.6)],
        ),
        (
            "",
            "SentimentLSTM",
            "op",
            "view",
            [tensor("0", (flat, 1), role="input")],
            [tensor("0", (BATCH, SEQ), mean=0.49)],
        ),
        (
            "",
            "SentimentLSTM",
            "op",
            "getitem",
            [tensor("0", (BATCH, SEQ), role="input")],
            [tensor("0", (BATCH,), mean=0.49)],
        ),
    ]
    grads = {"lstm": (tensor("0", (BATCH, SEQ, hidden), role="grad", l2=2e-3 / (step + 1)),)}
    out = []
    op_index: dict[tuple[str, str], int] = {}
    for seq, (module, type_, kind, op, ins, outs) in enumerate(calls):
        index = 0
        if kind == "op":
            index = op_index.get((module, op), 0)
            op_index[(module, op)] = index + 1
        depth = 0 if module == "" else 1
        out.append(
            CallRecord(
                step,
                seq,
                module,
                type_,
                index,
                kind,
                op,
                tuple(ins),
                tuple(outs),
                grads.get(module, ()) if kind == "module" else (),
                0.001,
                depth,
            )
        )
    return out


@contextmanager
def frozen_provenance(monkeypatch: Any, start: float = FROZEN_TIME) -> Iterator[list[float]]:
    """While seeding, stamp runs from a clock that moves only when told to, with a fixed pid,
    Python version and no git commit, so that what the screens show never changes."""
    now = [start]
    with monkeypatch.context() as patch:
        patch.setattr(time, "time", lambda: now[0])
        patch.setattr(os, "getpid", lambda: 4242)
        patch.setattr(platform, "python_version", lambda: "3.11.7")
        patch.setattr(provenance, "git_commit", lambda cwd=None: None)
        patch.setattr(provenance, "host_name", lambda: "trainer-01")
        yield now


def seed_run(
    store: Store,
    name: str,
    *,
    hidden: int = 512,
    steps: int = 3,
    every: int = 10,
    status: str | None = "completed",
    pipeline: str = "sentiment",
    config: dict[str, Any] | None = None,
    clock: list[float] | None = None,
) -> int:
    """Record a sentiment-shaped run through the store's writer; returns its id."""
    cfg = {"batch_size": BATCH, "seq_length": SEQ, "embedding_dim": EMBED, "hidden_dim": hidden}
    cfg.update(config or {})
    run = store.create_run(
        name=name,
        pipeline=pipeline,
        config=cfg,
        seed=1,
        device="cpu",
        torch_version="2.13.0",
        command=f"tracer run {pipeline} --set hidden_dim={hidden}",
    )
    writer = store.writer(run.id)
    writer.begin(sentiment_modules(hidden), ["hand-made for the inspector's tests"])
    for i in range(steps):
        step = i * every
        writer.write_step(step, sentiment_calls(step, hidden))
        writer.write_metrics(step, {"loss": 0.7 - 0.05 * i, "accuracy": 0.5 + 0.05 * i})
        if clock is not None:
            clock[0] += 12.5  # each traced step "takes" a while, for realistic durations
    if status is not None:
        writer.end(status, "CUDA out of memory" if status == "failed" else None)
    return run.id


#: The traced step at which the flagged run's ``log`` layer first gets a negative input.
NAN_STEP = 2
#: The flagged run's traced steps.
NAN_RUN_STEPS = 4


def record_log_run(path: Any, name: str, *, nan_from: int | None) -> int:
    """Trace a tiny ``Linear -> torch.log -> Linear`` network for four steps into ``path`` with
    the real tracer; from step ``nan_from`` on the input turns negative, so ``log`` makes NaN
    (None: a healthy run). Returns the run's id."""
    import torch
    from torch import nn

    import tracer

    class Log(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.log(x)

    class LogNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.log = Log()
            self.head = nn.Linear(4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.log(self.lin(x)))

    torch.manual_seed(0)
    net = LogNet()
    with torch.no_grad():  # lin passes its input through, so its sign reaches log unchanged
        net.lin.weight.copy_(torch.eye(4))
        net.lin.bias.zero_()
    with tracer.trace(net, store=path, name=name, pipeline="log-demo") as t, torch.no_grad():
        for step in range(NAN_RUN_STEPS):
            sign = -1.0 if nan_from is not None and step >= nan_from else 1.0
            net(torch.full((8, 4), sign * (step + 1.0)))
            t.step()
    assert t.run is not None
    return t.run.id
