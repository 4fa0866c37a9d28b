"""The store's contract, run against every backend (in-memory SQLite, SQLite file, PostgreSQL)."""

from __future__ import annotations

import math
import os
import socket

import pytest
from store_records import sample_flow, sample_modules, tensor

from tracer.records import CallRecord, MetricRecord, RunInfo
from tracer.sink import Sink
from tracer.store import RunNotFound, Store, StoreError


def record_run(store: Store, name: str = "run", steps: int = 3, **kwargs: object) -> RunInfo:
    """Create a run and write ``steps`` traced steps (every other step) and metrics."""
    run = store.create_run(name=name, **kwargs)  # type: ignore[arg-type]
    writer = store.writer(run.id)
    writer.begin(sample_modules(), ["hooks disable the fast path"])
    for i in range(steps):
        writer.write_step(i * 2, sample_flow(i * 2, scale=1.0 + i))
        writer.write_metrics(i * 2, {"loss": 1.0 / (i + 1), "accuracy": 0.5 + i / 10})
    writer.end("completed")
    return store.get_run(run.id)


def test_create_run_fills_provenance(store: Store) -> None:
    run = store.create_run(
        name="exp", pipeline="sentiment", config={"hidden_dim": 256, "lr": 1e-3}, seed=7,
        tags={"team": "nlp"}, device="cpu", torch_version="2.13.0", rank=1, world_size=2,
        group_id="job-1",
    )  # fmt: skip
    assert run.status == "running"
    assert (run.name, run.pipeline, run.seed, run.device) == ("exp", "sentiment", 7, "cpu")
    assert dict(run.config) == {"hidden_dim": 256, "lr": 1e-3}
    assert dict(run.tags) == {"team": "nlp"}
    assert (run.rank, run.world_size, run.group_id) == (1, 2, "job-1")
    assert run.pid == os.getpid() and run.host == socket.gethostname()
    assert run.python_version and run.tracer_version and run.torch_version == "2.13.0"
    assert run.command and run.started_at and run.finished_at is None


def test_writer_is_a_sink(store: Store) -> None:
    run = store.create_run(name="s")
    assert isinstance(store.writer(run.id), Sink)


def test_flow_round_trips_every_record(store: Store) -> None:
    run = record_run(store)
    assert store.flow(run.id, 2) == sample_flow(2, scale=2.0)


def test_flow_keeps_slots_roles_and_opaque_objects(store: Store) -> None:
    run = record_run(store)
    root, _, lstm, flatten, _ = store.flow(run.id, 0)
    assert [t.slot for t in lstm.outputs] == ["0", "1.0", "1.1"]
    assert [t.role for t in lstm.grads] == ["grad", "param_grad"]
    assert root.inputs[2].type_name == "NoneType" and not root.inputs[2].is_tensor
    assert dict(root.inputs[1].stats) == {"numel": 20.0, "true_frac": 0.5}
    assert (flatten.kind, flatten.op, flatten.outputs[0].stats["kurtosis"]) == (
        "op",
        "flatten",
        2.5,
    )


def test_flow_of_missing_step_is_empty(store: Store) -> None:
    run = record_run(store)
    assert store.flow(run.id, 1) == []


def test_steps_lists_traced_steps(store: Store) -> None:
    run = record_run(store, steps=4)
    assert store.steps(run.id) == [0, 2, 4, 6]
    assert run.steps == 4


def test_module_tree_round_trips(store: Store) -> None:
    run = record_run(store)
    assert store.module_tree(run.id) == sample_modules()


def test_series_follows_one_layer_across_steps(store: Store) -> None:
    run = record_run(store)
    assert store.series(run.id, "lstm", stat="max") == [(0, 3.0), (2, 6.0), (4, 9.0)]
    assert store.series(run.id, "lstm", slot="1.0", stat="numel") == [
        (0, 32.0),
        (2, 32.0),
        (4, 32.0),
    ]


def test_series_reads_roles_ops_and_extra_stats(store: Store) -> None:
    run = record_run(store)
    grads = store.series(run.id, "lstm", slot="weight_ih_l0", stat="l2", role="param_grad")
    assert [step for step, _ in grads] == [0, 2, 4]
    assert grads[1][1] == pytest.approx(9.5 * 0.02)
    ops = store.series(run.id, "", stat="kurtosis", kind="op", op="flatten")
    assert ops == [(0, 2.5), (2, 5.0), (4, 7.5)]
    assert store.series(run.id, "", stat="mean", kind="op", op="flatten")[0] == (0, 0.25)


def test_series_unknown_role_is_an_error(store: Store) -> None:
    run = record_run(store, steps=1)
    with pytest.raises(ValueError, match="unknown role"):
        store.series(run.id, "lstm", role="outputs")


def test_metrics_round_trip_and_last_metrics(store: Store) -> None:
    run = record_run(store)
    metrics = store.metrics(run.id)
    assert metrics[:2] == [MetricRecord(0, "loss", 1.0), MetricRecord(0, "accuracy", 0.5)]
    assert len(metrics) == 6
    assert dict(run.last_metrics) == {"loss": pytest.approx(1 / 3), "accuracy": 0.7}


def test_nan_and_inf_round_trip_exactly(store: Store) -> None:
    run = store.create_run(name="nan")
    writer = store.writer(run.id)
    odd = tensor(mean=math.nan, min=-math.inf, max=math.inf, std=math.nan, custom=-math.inf)
    writer.write_step(0, [CallRecord(0, 0, "", "Net", outputs=(odd,))])
    writer.write_metrics(0, {"loss": math.nan, "grad_norm": math.inf})
    stats = store.flow(run.id, 0)[0].outputs[0].stats
    assert math.isnan(stats["mean"]) and math.isnan(stats["std"])
    assert (stats["min"], stats["max"], stats["custom"]) == (-math.inf, math.inf, -math.inf)
    assert stats["l2"] == 9.5  # finite neighbours untouched
    loss, norm = store.metrics(run.id)
    assert math.isnan(loss.value) and norm.value == math.inf
    assert math.isnan(store.series(run.id, "", stat="mean")[0][1])
    assert math.isnan(store.get_run(run.id).last_metrics["loss"])


def test_finish_run_records_status_and_error(store: Store) -> None:
    run = store.create_run(name="f")
    store.finish_run(run.id, "failed", "ValueError: boom")
    done = store.get_run(run.id)
    assert (done.status, done.error) == ("failed", "ValueError: boom")
    assert done.finished_at is not None and done.duration_s is not None


def test_finish_run_rejects_unknown_status_and_run(store: Store) -> None:
    run = store.create_run(name="f")
    with pytest.raises(StoreError, match="unknown run status"):
        store.finish_run(run.id, "done")
    with pytest.raises(RunNotFound):
        store.finish_run(run.id + 100, "completed")


def test_get_run_by_id_name_and_latest(store: Store) -> None:
    first = record_run(store, name="same", steps=1)
    second = record_run(store, name="same", steps=1)
    other = store.create_run(name="other")
    assert store.get_run(first.id).id == first.id
    assert store.get_run(str(first.id)).id == first.id
    assert store.get_run("same").id == second.id
    assert store.get_run("latest").id == other.id
    with pytest.raises(RunNotFound, match="nope"):
        store.get_run("nope")


def test_list_runs_filters_newest_first(store: Store) -> None:
    a = store.create_run(name="a", pipeline="sentiment", group_id="g")
    b = store.create_run(name="b", pipeline="mlp", group_id="g", rank=1, world_size=2)
    c = store.create_run(name="c", pipeline="sentiment")
    store.finish_run(c.id, "completed")
    assert [r.id for r in store.list_runs()] == [c.id, b.id, a.id]
    assert [r.id for r in store.list_runs(pipeline="sentiment")] == [c.id, a.id]
    assert [r.id for r in store.list_runs(group_id="g")] == [b.id, a.id]
    assert [r.id for r in store.list_runs(status="completed")] == [c.id]
    assert [r.id for r in store.list_runs(status="running")] == [b.id, a.id]
    assert [r.id for r in store.list_runs(name="a")] == [a.id]
    assert [r.id for r in store.list_runs(limit=1)] == [c.id]


def test_delete_run_removes_everything(store: Store) -> None:
    run = record_run(store)
    kept = record_run(store, name="kept")
    store.delete_run(run.id)
    with pytest.raises(RunNotFound):
        store.get_run(run.id)
    assert store.flow(run.id, 0) == [] and store.metrics(run.id) == []
    assert store.module_tree(run.id) == []
    assert store.flow(kept.id, 0) == sample_flow(0)
    with pytest.raises(RunNotFound):
        store.delete_run(run.id)


def test_writer_for_unknown_run_is_refused(store: Store) -> None:
    with pytest.raises(RunNotFound):
        store.writer(12345)


def test_writer_step_and_its_metrics_are_one_transaction(store: Store) -> None:
    run = record_run(store, steps=1)
    writer = store.writer(run.id)
    # the step's rows collide with step 0's: its metrics must be rolled back with them
    with pytest.raises(StoreError):
        writer.write_step(0, sample_flow(0), {"loss": 9.0})
    assert [m.value for m in store.metrics(run.id) if m.name == "loss"] == [1.0]
    writer.write_step(4, sample_flow(4), {"loss": 0.25})
    assert store.steps(run.id) == [0, 4]
    assert MetricRecord(4, "loss", 0.25) in store.metrics(run.id)


def test_rewriting_a_step_is_an_error_not_a_silent_overwrite(store: Store) -> None:
    run = record_run(store, steps=1)
    with pytest.raises(StoreError, match="write to"):
        store.writer(run.id).write_step(0, sample_flow(0))
    assert store.flow(run.id, 0) == sample_flow(0)


def test_store_diff_compares_two_runs(store: Store) -> None:
    a = record_run(store, name="a", config={"hidden_dim": 128})
    b = store.create_run(name="b", config={"hidden_dim": 256})
    writer = store.writer(b.id)
    writer.begin(sample_modules(), [])
    flow = sample_flow(2)
    writer.write_step(
        2, [*flow[:4], CallRecord(2, 4, "fc", "Linear", outputs=(tensor(shape=(4, 2)),))]
    )
    result = store.diff("a", b.id)
    assert (result.step_a, result.step_b) == (2, 2)
    assert result.run_a is not None and result.run_a.id == a.id
    assert [row.status for row in result.rows] == ["same", "same", "same", "same", "shape"]
    assert [c.key for c in result.config] == ["hidden_dim"]
    with pytest.raises(StoreError, match="no traced step 7"):
        store.diff(a.id, b.id, step_a=7)


def test_writer_empty_step_is_not_a_traced_step(store: Store) -> None:
    run = store.create_run(name="empty")
    store.writer(run.id).write_step(0, [])
    assert store.steps(run.id) == [] and store.get_run(run.id).steps == 0
