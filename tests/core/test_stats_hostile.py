"""Statistics under hostile input: bad extra statistics, tensors without readable values, bad
``tracer.trace()`` arguments. Nothing recorded is lost, and the run's notes say what and why."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import tracer
import tracer.core.stats
from tracer.records import BUILTIN_STATS, CallRecord
from tracer.store import open_store

ROOT = Path(__file__).parents[2]

#: Extra statistics that give something other than one real number, and the note's words.
BAD_STATS: dict[str, tuple[Callable[[torch.Tensor], Any], str]] = {
    "text": (lambda t: "abc", "returned a string 'abc'"),
    "listed": (lambda t: [1.0, 2.0], "returned list [1.0, 2.0], not a real number"),
    "nothing": (lambda t: None, "returned None"),
    "cplx": (lambda t: complex(1, 2), "returned complex (1+2j), not a real number"),
    "many": (lambda t: t.reshape(-1)[:3] + 0, "returned a tensor of shape (3,)"),
    "boom": (lambda t: 1 / 0, "raised ZeroDivisionError: division by zero"),
}


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))


def float_records(calls: list[CallRecord]) -> list[Any]:
    return [r for c in calls for r in c.inputs + c.outputs if r.dtype.startswith("float")]


def note_count(notes: tuple[str, ...] | list[str], text: str) -> int:
    return sum(text in note for note in notes)


@pytest.mark.parametrize("name", sorted(BAD_STATS))
def test_extra_stat_bad_value_costs_only_itself(name: str, tmp_path: Path) -> None:
    fn, words = BAD_STATS[name]
    model = mlp()
    good = {"peak": lambda t: t.abs().max()}
    with tracer.trace(model, store=tmp_path / "t.db", extra_stats={name: fn, **good}) as t:
        for _ in range(3):
            model(torch.randn(4, 6))
            t.step()
    store = open_store(tmp_path / "t.db")
    run = store.get_run("latest")
    assert run.status == "completed"
    for step in (0, 1, 2):
        records = float_records(store.flow(run.id, step))
        assert len(records) == 8  # four calls, one input and one output each
        for record in records:
            stats = record.stats
            assert set(BUILTIN_STATS) <= set(stats)
            assert name not in stats
            assert stats["peak"] == pytest.approx(max(stats["max"], -stats["min"]), rel=1e-6)
    assert note_count(run.notes, f"extra statistic '{name}' {words}") == 1
    assert t.internal_errors == 0


@pytest.mark.parametrize(
    ("fn", "want"),
    [
        (lambda t: torch.tensor([2.5]), 2.5),
        (lambda t: torch.tensor(3), 3.0),
        (lambda t: True, 1.0),
        (lambda t: 7, 7.0),
        (lambda t: (t > 1e9).any(), 0.0),
    ],
)
def test_extra_stat_real_numbers_are_accepted(
    fn: Callable[[torch.Tensor], Any], want: float
) -> None:
    model = mlp()
    with tracer.trace(model, extra_stats={"value": fn}) as t:
        model(torch.randn(4, 6))
    records = float_records(t.calls)
    assert records and all(r.stats["value"] == want for r in records)
    assert not [n for n in t.notes if "extra statistic" in n]


def test_extra_stat_nan_is_a_real_number(tmp_path: Path) -> None:
    model = mlp()
    with tracer.trace(model, store=tmp_path / "t.db", extra_stats={"gap": lambda t: float("nan")}):
        model(torch.randn(4, 6))
    store = open_store(tmp_path / "t.db")
    run = store.get_run("latest")
    records = float_records(store.flow(run.id, 0))
    assert records and all(r.stats["gap"] != r.stats["gap"] for r in records)  # NaN kept
    assert not [n for n in run.notes if "extra statistic" in n]


def test_extra_stat_registered_and_failing_keeps_builtins() -> None:
    tracer.register_stat("broken", lambda t: "x")
    try:
        model = mlp()
        with tracer.trace(model) as t:
            model(torch.randn(2, 6))
            t.step()
            model(torch.randn(2, 6))
    finally:
        tracer.core.stats.unregister_stat("broken")
    records = float_records(t.calls)
    assert len(records) == 16 and all(r.stats["numel"] > 0 and "mean" in r.stats for r in records)
    assert note_count(t.notes, "extra statistic 'broken' returned a string 'x'") == 1


def test_extra_stat_failing_on_some_tensors_keeps_the_others() -> None:
    model = mlp()
    picky = {"wide": lambda t: t.shape[-1] // (t.shape[-1] - 2)}  # fails on the 2-wide output
    with tracer.trace(model, extra_stats=picky) as t:
        model(torch.randn(4, 6))
    by_width = {r.shape[-1]: r.stats for r in float_records(t.calls)}
    assert by_width[6]["wide"] == 1.0 and by_width[8]["wide"] == 1.0
    assert "wide" not in by_width[2] and "mean" in by_width[2]
    assert note_count(t.notes, "extra statistic 'wide' raised ZeroDivisionError") == 1


def test_extra_stat_changing_its_input_is_caught_on_a_copy() -> None:
    def doubling(t: torch.Tensor) -> float:
        t.mul_(2)
        return 0.0

    model = mlp()
    x = torch.randn(4, 6)
    want = model(x)
    with tracer.trace(model, extra_stats={"doubling": doubling}) as t:
        got = model(x)
        t.step()
        again = model(x)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(again, want)
    assert all("doubling" not in r.stats for r in float_records(t.calls))
    assert note_count(t.notes, "extra statistic 'doubling' changes its input in place") == 1


def test_extra_stat_for_integer_tensors_is_noted_once() -> None:
    emb = nn.Embedding(10, 4)
    with tracer.trace(emb, extra_stats={"peak": lambda t: t.abs().max()}) as t:
        emb(torch.tensor([[1, 2, 3]]))
        t.step()
        emb(torch.tensor([[4, 5]]))
    ids = [r for c in t.calls for r in c.inputs]
    assert all("peak" not in r.stats and r.stats["max"] > 0 for r in ids)
    assert all("peak" in r.stats for c in t.calls for r in c.outputs)
    assert note_count(t.notes, "computed for floating-point tensors only: int64") == 1


def test_extra_stat_slow_is_noted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import tracer.core.stats

    monkeypatch.setattr(tracer.core.stats, "SLOW_SECONDS", 0.0)
    model = mlp()
    with tracer.trace(model, extra_stats={"peak": lambda t: t.abs().max()}) as t:
        for _ in range(3):
            model(torch.randn(4, 6))
            t.step()
    assert note_count(t.notes, "extra statistic 'peak' took") == 1
    assert all("peak" in r.stats for r in float_records(t.calls))


def test_extra_stat_named_like_a_builtin_is_refused() -> None:
    with pytest.raises(ValueError, match="extra_stats: statistic 'mean' is built in"):
        tracer.trace(mlp(), extra_stats={"mean": lambda t: 0.0})
    with pytest.raises(ValueError, match="is built in"):
        tracer.register_stat("true_frac", lambda t: 0.0)


BAD_PLUGIN = """
from __future__ import annotations

from dataclasses import dataclass, field

from tracer import hookimpl
from tracer.plugins.pipeline import Pipeline, TensorStat


@dataclass
class Config:
    steps: int = field(default=3, metadata={"help": "training steps"})


def data(config):
    import torch

    return torch.randn(8, 3)


def model(config):
    from torch import nn

    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))


def train(model, data, config, ctx):
    for _ in range(config.steps):
        loss = model(data).pow(2).mean()
        loss.backward()
        ctx.step({"loss": loss.item()})


@hookimpl
def register_pipelines(register):
    register(Pipeline("badstat", "a tiny MLP with a bad statistic", Config, data, model, train))


@hookimpl
def register_tensor_stats(register):
    register(TensorStat("label", lambda t: "not a number", "a statistic that returns text"))
"""


def test_extra_stat_bad_plugin_stat_in_a_tracer_run_process(tmp_path: Path) -> None:
    plugin = tmp_path / "bad_stat_plugin.py"
    plugin.write_text(textwrap.dedent(BAD_PLUGIN))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACER_")}
    env["TRACER_CACHE"] = str(tmp_path / "cache")
    env["PYTHONPATH"] = str(ROOT)
    command = ["run", "badstat", "--plugin", str(plugin), "--db", "t.db", "--every", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "tracer", *command],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    store = open_store(tmp_path / "t.db")
    run = store.get_run("latest")
    assert run.status == "completed" and store.steps(run.id) == [0, 1, 2]
    records = [r for c in store.flow(run.id, 2) for r in c.outputs]
    assert len(records) == 4
    assert all(set(BUILTIN_STATS) <= set(r.stats) and "label" not in r.stats for r in records)
    assert note_count(run.notes, "extra statistic 'label' returned a string 'not a number'") == 1


# -- tracer.trace() arguments ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"every": 0}, ValueError, "every must be a positive integer, got 0"),
        ({"every": -2}, ValueError, "every must be a positive integer, got -2"),
        ({"every": 1.5}, ValueError, "every must be a positive integer, got 1.5"),
        ({"every": "2"}, ValueError, "every must be a positive integer, got '2'"),
        ({"every": True}, ValueError, "every must be a positive integer, got True"),
        ({"extra_stats": {"peak": 3}}, TypeError, "extra_stats: statistic 'peak' must be callable"),
        ({"extra_stats": {"a b": abs}}, ValueError, "extra_stats: statistic name must be an"),
        ({"extra_stats": [abs]}, TypeError, "extra_stats must map statistic names to functions"),
        ({"include": 5}, TypeError, "include must be a glob string or a list of them, got int"),
        ({"exclude": b"x"}, TypeError, "exclude must be a glob string or a list of them"),
        ({"include": ["0", 1]}, TypeError, "include patterns must be strings, got int"),
        ({"exclude": [None]}, TypeError, "exclude patterns must be strings, got NoneType"),
        ({"ops": "yes"}, TypeError, "ops must be True or False, got 'yes'"),
        ({"stats": 1}, TypeError, "stats must be True or False, got 1"),
        ({"name": 3}, TypeError, "name must be a string, got 3"),
        ({"tags": {"a": 1}}, TypeError, "tags must map strings to strings"),
        ({"seed": "7"}, TypeError, "seed must be an integer, got '7'"),
    ],
)
def test_trace_bad_argument_is_refused_before_a_run(
    kwargs: dict[str, Any], error: type[Exception], words: str, tmp_path: Path
) -> None:
    db = tmp_path / "t.db"
    open_store(db).close()
    with pytest.raises(error) as caught:
        tracer.trace(mlp(), store=db, **kwargs)
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)
    assert open_store(db).list_runs() == []


# -- tensors whose statistics are skipped: the notes say why, once per reason -------------------


class NoDispatch(torch.Tensor):
    """A wrapper subclass without memory whose every op fails."""

    @staticmethod
    def __new__(cls, inner: torch.Tensor) -> NoDispatch:
        return torch.Tensor._make_wrapper_subclass(cls, inner.shape, dtype=inner.dtype)  # type: ignore[attr-defined,no-any-return]

    @classmethod
    def __torch_dispatch__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        raise NotImplementedError(f"NoDispatch does not support {func}")


def fake(x: torch.Tensor) -> torch.Tensor:
    from torch._subclasses.fake_tensor import FakeTensorMode

    return FakeTensorMode().from_tensor(x)


SKIPPED: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], str]] = {
    "sparse": (lambda x: x.to_sparse(), "layout torch.sparse_coo tensors (e.g. a float32"),
    "meta": (lambda x: x.to("meta"), "meta tensors (e.g. a float32 Tensor) get only numel"),
    "quantized": (
        lambda x: torch.quantize_per_tensor(x, 0.1, 0, torch.quint8),
        "quantized tensors (e.g. a quint8 Tensor) get only numel",
    ),
    "complex": (lambda x: x.to(torch.complex64), "complex tensors (e.g. a complex64 Tensor)"),
    "fake": (fake, "fake tensors (e.g. a float32 FakeTensor) get only numel"),
    "subclass": (
        NoDispatch,
        "statistics of a float32 NoDispatch on cpu failed (NotImplementedError: NoDispatch "
        "does not support aten.",
    ),
}


class Make(nn.Module):
    def __init__(self, make: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.make = make

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.make(x)


@pytest.mark.parametrize("kind", sorted(SKIPPED))
def test_stats_skipped_tensor_is_noted_once(kind: str, stats_path: str) -> None:
    make, words = SKIPPED[kind]
    model = Make(make)
    with tracer.trace(model) as t:
        for _ in range(2):
            model(torch.randn(2, 3))
            t.step()
    outputs = [r for c in t.calls for r in c.outputs]
    assert [dict(r.stats) for r in outputs] == [{"numel": 6}, {"numel": 6}]
    assert all(set(BUILTIN_STATS) <= set(c.inputs[0].stats) for c in t.calls)
    assert note_count(t.notes, words) == 1
    assert t.internal_errors == 0


def test_stats_skipped_under_vmap_is_noted_in_the_stored_run(tmp_path: Path) -> None:
    model = nn.Linear(3, 3)
    with tracer.trace(model, store=tmp_path / "t.db") as t:
        for _ in range(2):
            torch.vmap(model)(torch.randn(2, 3))
            t.step()
    run = open_store(tmp_path / "t.db").get_run("latest")
    assert run.status == "completed" and t.internal_errors == 0
    assert note_count(run.notes, "statistics of a float32 Tensor on cpu failed") == 1
    assert list(run.notes) == t.notes


def test_stats_unsigned_wide_integers_get_their_statistics() -> None:
    model = Make(lambda x: (x.abs() * 100).to(torch.uint16))
    with tracer.trace(model) as t:
        model(torch.tensor([0.5, 1.0, 0.0]))
    assert dict(t.calls[0].outputs[0].stats) == {
        "numel": 3,
        "mean": 50.0,
        "min": 0.0,
        "max": 100.0,
        "zero_frac": pytest.approx(1 / 3),
    }
