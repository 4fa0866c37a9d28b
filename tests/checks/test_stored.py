"""A stored run's cheap views (StoredRecords) against the same views over its flows in memory."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tracer.checks import RunRecords, check_records, check_run
from tracer.checks.builtin import BUILTIN_RULES
from tracer.checks.stored import BATCH, LazyFlows, StoredRecords
from tracer.records import CallRecord, ModuleRecord, TensorRecord, frozen_mapping
from tracer.store import Store, open_store

FIELDS = ("role", "slot", "shape", "dtype", "device", "requires_grad", "type_name")
STATS = ("numel", "mean", "std", "min", "max", "l2", "nan_count", "inf_count", "near_one_frac")


def _tensor(role: str, slot: str, step: int, seq: int, **stats: float) -> TensorRecord:
    base = {"numel": 6.0, "mean": 0.1 * step + seq, "std": 1.0, "min": -1.0, "max": 2.0}
    base.update(stats)
    return TensorRecord(slot, (2, 3), "float32", "cpu", True, role, "Tensor", frozen_mapping(base))  # type: ignore[arg-type]


def _flow(step: int) -> list[CallRecord]:
    """A root with a container and leaves; odd records: NaN and Inf statistics, an absent one,
    an extra statistic, an opaque object, an op, a float16 input, a flat output, gradients."""
    odd: dict[str, float] = {}
    if step == 2:
        odd = {"mean": math.nan, "nan_count": 3.0}
    if step == 3:
        odd = {"max": math.inf, "inf_count": 1.0, "my_stat": -math.inf}
    opaque = TensorRecord("1", (), "", "", False, "input", "NamedThing")
    half = TensorRecord("0", (2, 3), "float16", "cpu", False, "input", "Tensor", frozen_mapping({}))
    return [
        CallRecord(
            step, 0, "", "Net", inputs=(_tensor("input", "0", step, 0), opaque),
            outputs=(_tensor("output", "0", step, 0),),
        ),
        CallRecord(
            step, 1, "body", "Sequential", depth=1,
            inputs=(_tensor("input", "0", step, 1),),
            outputs=(_tensor("output", "0", step, 1, **odd),),
        ),
        CallRecord(
            step, 2, "body.0", "Linear", depth=2, duration_s=1e-5,
            inputs=(half,),
            outputs=(_tensor("output", "0", step, 2, my_stat=step * 1.5),),
            grads=(
                _tensor("grad", "0", step, 2, l2=3.0 + step),
                _tensor("param_grad", "weight", step, 2),
            ),
        ),
        CallRecord(
            step, 3, "body", "Sequential", call_index=0, kind="op", op="add", depth=2,
            outputs=(_tensor("output", "0", step, 3, min=0.5, max=0.5),),
        ),
        CallRecord(
            step, 4, "body.1", "Sigmoid", depth=2,
            outputs=(_tensor("output", "0", step, 4, near_one_frac=0.5),),
        ),
    ]  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
def stored(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Store, int]:
    """The run on each backend: the narrow reads are SQL of their own."""
    where = tmp_path / "views.db"
    if request.param == "postgresql":
        where = request.getfixturevalue("postgres_url")
    store = open_store(where)
    run = store.create_run(name="views")
    writer = store.writer(run.id)
    writer.begin([ModuleRecord("", "Net", None, 0), ModuleRecord("body", "Sequential", "", 1)], ())
    for step in (0, 2, 3, 5, 9):
        writer.write_step(step, _flow(step))
    writer.end("completed")
    return store, run.id


def _both(store: Store, run_id: int, steps: list[int] | None) -> tuple[RunRecords, RunRecords]:
    run = store.get_run(run_id)
    lazy = StoredRecords.read(store, run, steps)
    eager = RunRecords(run, store.flows(run_id, steps), store.module_tree(run_id))
    return lazy, eager


@pytest.mark.parametrize("steps", [None, [2, 9], [3]])
def test_every_view_of_a_stored_run_equals_the_view_of_its_flows(
    stored: tuple[Store, int], steps: list[int] | None
) -> None:
    lazy, eager = _both(*stored, steps)
    assert lazy.steps == eager.steps == tuple(steps or (0, 2, 3, 5, 9))
    assert lazy.facts == eager.facts
    assert lazy.leaves == eager.leaves
    assert lazy.module_types == eager.module_types
    for call_fields in ((), ("depth",), ("module", "type", "call_index", "kind", "op")):
        assert lazy.call_values(call_fields) == eager.call_values(call_fields)
    assert lazy.call_values(("duration_s",)) == eager.call_values(("duration_s",))
    for step in lazy.steps:
        ours = [(c.step, c.seq, c.module, c.type, c.call_index, c.kind, c.op, c.depth)
                for c in lazy.skeleton[step]]  # fmt: skip
        theirs = [(c.step, c.seq, c.module, c.type, c.call_index, c.kind, c.op, c.depth)
                  for c in eager.flow(step)]  # fmt: skip
        assert ours == theirs
        assert lazy.flow(step) == eager.flow(step)
    for roles in (("input",), ("output",), ("grad", "param_grad"), ("input", "output")):
        for fields in (FIELDS, STATS, ("slot", "my_stat", "mean"), ("dtype",)):
            got, want = lazy.values(roles, fields), eager.values(roles, fields)
            assert len(got) == len(want) and got  # every role above is recorded at every step
            for a, b in zip(got, want, strict=True):
                # NaN != NaN: compare the text of each value
                assert list(map(repr, a)) == list(map(repr, b)), (roles, fields)
            bad = lazy.values(roles, fields, nonfinite=True)
            assert repr(bad) == repr(eager.values(roles, fields, nonfinite=True))
            assert {row[0] for row in bad} <= {2, 3}


def test_facts_say_where_a_nan_an_inf_a_flat_output_and_gradients_are(
    stored: tuple[Store, int],
) -> None:
    lazy, _ = _both(*stored, None)
    assert [s for s, f in lazy.facts.items() if f.nonfinite] == [2, 3]
    assert all(f.grads and f.flat for f in lazy.facts.values())  # the op's output is 0.5 flat
    assert lazy.facts[0].dtypes == {"float32", "float16", ""}


def test_flows_are_read_only_when_asked_for_and_in_batches(stored: tuple[Store, int]) -> None:
    store, run_id = stored
    lazy, _ = _both(store, run_id, None)
    flows = lazy.flows
    assert isinstance(flows, LazyFlows)
    assert lazy.values(("output",), ("mean",)) and lazy.skeleton and lazy.facts
    assert flows._read == {}  # the cheap views read no flow
    assert [step for step, _ in lazy.flows_at([9, 2])] == [9, 2]
    assert sorted(flows._read) == [2, 9]
    assert len(flows[0]) == 5  # a walk in step order reads the next ones along with it
    assert sorted(flows._read) == [0, 2, 3, 5, 9] and BATCH > 4
    with pytest.raises(KeyError):
        flows[1]


def test_a_stored_check_finds_what_a_check_of_the_flows_in_memory_finds(
    stored: tuple[Store, int],
) -> None:
    store, run_id = stored
    run = store.get_run(run_id)
    report = check_run(store, run, BUILTIN_RULES)
    _, eager = _both(store, run_id, None)
    assert report == check_records(eager, BUILTIN_RULES)
    # the NaN at step 2 and the Inf at step 3 of the container's output: one span
    errors = [(f.rule, f.module, f.step, f.until) for f in report.findings if f.severity == "error"]
    assert errors == [("nan", "body", 2, 3)]


def test_a_run_still_being_written_is_checked_up_to_the_steps_there_when_it_was_opened(
    stored: tuple[Store, int],
) -> None:
    store, run_id = stored
    lazy, _ = _both(store, run_id, None)
    store.writer(run_id).write_step(12, _flow(12))  # written after the records were opened
    assert lazy.steps == (0, 2, 3, 5, 9)
    assert {step for step, *_ in lazy.values(("output",), ("mean",))} == {0, 2, 3, 5, 9}
    assert set(lazy.skeleton) == set(lazy.facts) == {0, 2, 3, 5, 9}


def _diverged(role: str, seq: int, bad: bool) -> TensorRecord:
    stats = {"numel": 64.0, "mean": 0.5, "std": 1.0 + seq, "min": -2.0, "max": 2.0}
    if bad:
        stats.update(mean=math.nan, nan_count=64.0, inf_count=0.0)
    return TensorRecord("0", (8, 8), "float32", "cpu", role=role, stats=frozen_mapping(stats))  # type: ignore[arg-type]


def test_a_run_that_diverged_is_checked_without_reading_a_whole_flow(tmp_path: Path) -> None:
    """From step 5 on, layer 3 makes NaN and every later layer passes it on: the nan rule
    names layer 3 once, over every step since, from the narrow reads alone."""
    store = open_store(tmp_path / "diverged.db")
    run = store.create_run(name="diverged")
    writer = store.writer(run.id)
    writer.begin([ModuleRecord(str(i), "Linear", "", 1) for i in range(6)], ())
    for step in range(12):
        flow = []
        for seq in range(6):
            inputs = (_diverged("input", seq, step >= 5 and seq > 3),)
            outputs = (_diverged("output", seq, step >= 5 and seq >= 3),)
            flow.append(CallRecord(step, seq, str(seq), "Linear", inputs=inputs, outputs=outputs))
        writer.write_step(step, flow)
    writer.end("failed", "loss is NaN")
    records = StoredRecords.read(store, store.get_run(run.id))
    report = check_records(records, BUILTIN_RULES)
    assert [(f.rule, f.module, f.step, f.until) for f in report.findings] == [("nan", "3", 5, 11)]
    flows = records.flows
    assert isinstance(flows, LazyFlows) and flows._read == {}
    eager = RunRecords(records.run, store.flows(run.id), store.module_tree(run.id))
    assert check_records(eager, BUILTIN_RULES) == report
