"""Runs for the report tests: real ones traced from small torch models, and hand-made ones
(hostile strings in every field, a long run) written through the store's API."""

from __future__ import annotations

import math
from pathlib import Path

from tracer.records import CallRecord, ModuleRecord, TensorRecord
from tracer.store import Store

#: Markup that would run or load something if it reached the page unescaped.
SCRIPT = "<script>alert(1)</script>"
IMG = '<img src="http://example.invalid/x.png" onerror="alert(2)">'
LINK = "</td></tr></table><a href='https://example.invalid/'>click</a>"
BATCH, SEQ, VOCAB, EMBED = 4, 6, 50, 8


def record_tiny(
    db: Path, name: str, *, hidden: int = 16, steps: int = 4, nan: bool = False
) -> None:
    """Trace a tiny embedding -> LSTM -> Linear -> Sigmoid model for ``steps`` training steps
    (with ops and gradients); ``nan``: the activation makes NaN (``sqrt`` of negatives)."""
    import torch
    from torch import nn

    import tracer

    class MakesNaN(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sqrt(x - 10.0)  # every value is below 10: all NaN

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = nn.Embedding(VOCAB, EMBED)
            self.lstm = nn.LSTM(EMBED, hidden, batch_first=True)
            self.fc = nn.Linear(hidden, 1)
            self.act = MakesNaN() if nan else nn.Sigmoid()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.lstm(self.embedding(x))
            out = self.fc(out.reshape(-1, out.shape[-1])).view(x.shape[0], -1)
            return self.act(out)[:, -1]

    torch.manual_seed(0)
    model = Tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randint(0, VOCAB, (BATCH, SEQ))
    y = torch.rand(BATCH)
    config = {"hidden_dim": hidden, "batch_size": BATCH, "seq_length": SEQ}
    with tracer.trace(
        model, store=str(db), name=name, config=config, pipeline="tiny", ops=True, grads=True
    ) as t:
        for _ in range(steps):
            loss = nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            t.log(loss=loss.item())
            t.step()


def _tensor(
    slot: str, shape: tuple[int, ...], role: str = "output", **stats: float
) -> TensorRecord:
    base = {"numel": float(math.prod(shape)), "mean": 0.1, "std": 1.0, "min": -1.0, "max": 1.0}
    base.update(stats)
    return TensorRecord(slot, shape, "float32", "cpu", role=role, stats=base)  # type: ignore[arg-type]


def seed_hostile(store: Store) -> int:
    """A failed run with markup in its name, config, tags, module paths, notes, error and
    metric names; returns its id."""
    run = store.create_run(
        name=SCRIPT,
        pipeline=IMG,
        config={"hidden_dim": 8, SCRIPT: IMG, "note": LINK},
        tags={"owner": LINK},
        command=f"tracer run {SCRIPT}",
    )
    writer = store.writer(run.id)
    path = f"enc{IMG}"
    writer.begin(
        [
            ModuleRecord("", "Net", None, 0, 0, 72, 0, 72),
            ModuleRecord(path, "Linear", "", 1, 72, 72, 72, 72),
        ],
        [f"note {SCRIPT}"],
    )
    for step in range(3):
        x = _tensor("0", (4, 8), role="input")
        calls = [
            CallRecord(step, 0, "", "Net", inputs=(x,), outputs=(_tensor("0", (4, 8)),)),
            CallRecord(
                step,
                1,
                path,
                f"Linear{SCRIPT}",
                inputs=(x,),
                outputs=(_tensor("0", (4, 8), mean=0.1 * step), _tensor(LINK, (4,))),
                depth=1,
            ),
        ]
        writer.write_step(step, calls)
        writer.write_metrics(step, {f"loss{SCRIPT}": 1.0 - 0.1 * step})
    store.finish_run(run.id, "failed", error=f"ValueError: {SCRIPT}\n{LINK}")
    return run.id


def seed_long(store: Store, *, steps: int, layers: int, name: str = "long") -> int:
    """A completed run of ``steps`` traced steps through ``layers`` Linear layers."""
    run = store.create_run(name=name, pipeline="synthetic", config={"layers": layers})
    writer = store.writer(run.id)
    modules = [ModuleRecord("", "Deep", None, 0, 0, 0, 0, 0)]
    modules += [ModuleRecord(f"layers.{i}", "Linear", "", 1, 72, 72, 72, 72) for i in range(layers)]
    writer.begin(modules, [])
    for step in range(steps):
        x = _tensor("0", (32, 64), role="input")
        y = _tensor("0", (32, 64))
        calls = [CallRecord(step, 0, "", "Deep", inputs=(x,), outputs=(y,))]
        for i in range(layers):
            out = _tensor("0", (32, 64), mean=math.sin(step / 50 + i), std=1 + step / steps)
            calls.append(
                CallRecord(
                    step, i + 1, f"layers.{i}", "Linear", inputs=(x,), outputs=(out,), depth=1
                )
            )
        writer.write_step(step, calls)
        writer.write_metrics(step, {"loss": 1 / (1 + step)})
    writer.end("completed", None)
    return run.id
