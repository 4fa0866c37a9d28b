"""diff_flows: a pure function over records, tested without any database."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from store_records import sample_flow, sample_modules, tensor

from tracer.records import CallRecord
from tracer.store.diff import diff_flows, pick_steps


def renumber(calls: list[CallRecord]) -> list[CallRecord]:
    """Give calls consecutive ``seq`` numbers, as a real trace would."""
    return [replace(call, seq=i) for i, call in enumerate(calls)]


def test_diff_flows_identical_flows_are_all_same() -> None:
    result = diff_flows(sample_flow(), sample_flow())
    assert [row.status for row in result.rows] == ["same"] * 5
    assert result.identical and result.counts["same"] == 5 and result.counts["drift"] == 0


def test_diff_flows_inserted_layer_does_not_shift_the_rest() -> None:
    base = sample_flow()
    extra = CallRecord(0, 0, "dropout", "Dropout", outputs=(tensor(shape=(4, 5, 16)),))
    result = diff_flows(base, renumber([*base[:2], extra, *base[2:]]))
    assert [row.status for row in result.rows] == ["same", "same", "added", "same", "same", "same"]
    assert result.rows[2].left is None and result.rows[2].right == replace(extra, seq=2)
    assert result.counts["added"] == 1 and result.counts["removed"] == 0


def test_diff_flows_removed_layer_is_one_removed_row() -> None:
    base = sample_flow()
    result = diff_flows(base, renumber([c for c in base if c.module != "lstm"]))
    assert [row.status for row in result.rows] == ["same", "same", "removed", "same", "same"]
    assert result.rows[2].left == base[2] and result.rows[2].right is None


def test_diff_flows_classifies_shape_dtype_and_device_changes() -> None:
    base = sample_flow()
    changed = list(base)
    changed[1] = replace(base[1], outputs=(tensor(shape=(4, 5, 32)),))
    changed[2] = replace(
        base[2], outputs=(tensor("0", (4, 5, 8), dtype="float16"), *base[2].outputs[1:])
    )
    changed[4] = replace(base[4], outputs=(tensor(shape=(4, 1), device="cuda:0"),))
    rows = diff_flows(base, changed).rows
    assert [row.status for row in rows] == ["same", "shape", "dtype", "same", "device"]
    assert rows[1].changes[0].left == (4, 5, 16) and rows[1].changes[0].right == (4, 5, 32)
    assert rows[2].changed_fields == ("dtype",)
    assert str(rows[4].changes[0]) == "output 0 device: cpu -> cuda:0"


def test_diff_flows_shape_wins_over_dtype_and_lists_both() -> None:
    base = sample_flow()
    changed = list(base)
    changed[4] = replace(base[4], outputs=(tensor(shape=(4, 2), dtype="float64"),))
    row = diff_flows(base, changed).rows[4]
    assert row.status == "shape" and row.changed_fields == ("shape", "dtype")


def test_diff_flows_missing_slot_counts_as_shape_change() -> None:
    base = sample_flow()
    changed = list(base)
    changed[2] = replace(base[2], outputs=base[2].outputs[:1])
    row = diff_flows(base, changed).rows[2]
    assert row.status == "shape"
    assert [(c.slot, c.right) for c in row.changes] == [("1.0", None), ("1.1", None)]


def test_diff_flows_type_change_at_same_path_is_removed_plus_added() -> None:
    base = sample_flow()
    changed = list(base)
    changed[2] = replace(base[2], type="GRU")
    statuses = [row.status for row in diff_flows(base, changed).rows]
    assert statuses == ["same", "same", "removed", "added", "same", "same"]


def test_diff_flows_reports_statistics_drift_above_threshold() -> None:
    rows = diff_flows(sample_flow(scale=1.0), sample_flow(scale=1.05)).rows
    assert all(not row.drift for row in rows)  # 5% < 10%
    result = diff_flows(sample_flow(scale=1.0), sample_flow(scale=2.0))
    lstm = result.rows[2]
    assert lstm.status == "same" and {d.stat for d in lstm.drift} >= {"mean", "max", "l2"}
    mean = next(d for d in lstm.drift if d.stat == "mean" and d.slot == "0" and d.role == "output")
    assert (mean.left, mean.right, mean.relative) == (0.25, 0.5, pytest.approx(0.5))
    assert result.counts["drift"] == 5


def test_diff_flows_drift_threshold_is_adjustable_and_nan_always_drifts() -> None:
    assert (
        diff_flows(sample_flow(scale=1.0), sample_flow(scale=2.0), drift_threshold=0.9).counts[
            "drift"
        ]
        == 0
    )
    nan = [replace(sample_flow()[0], outputs=(tensor(mean=math.nan),))]
    drift = diff_flows(sample_flow()[:1], nan).rows[0].drift
    assert [(d.stat, d.relative) for d in drift] == [("mean", math.inf)]
    assert diff_flows(nan, nan).rows[0].drift == ()


def test_diff_flows_config_and_parameter_differences() -> None:
    modules_b = list(sample_modules())
    modules_b[2] = replace(modules_b[2], params_own=256, params_total=256)
    result = diff_flows(
        sample_flow(), sample_flow(),
        config_a={"hidden_dim": 128, "lr": 0.001, "dropout": 0.5},
        config_b={"hidden_dim": 256, "lr": 0.001, "layers": 2},
        modules_a=sample_modules(), modules_b=modules_b[:3],
    )  # fmt: skip
    assert [(c.key, c.left, c.right) for c in result.config] == [
        ("hidden_dim", 128, 256), ("dropout", 0.5, None), ("layers", None, 2),
    ]  # fmt: skip
    assert result.config[1].present_right is False and result.config[2].present_left is False
    assert [(p.module, p.left_total, p.right_total) for p in result.params] == [
        ("lstm", 128, 256), ("fc", 129, None),
    ]  # fmt: skip
    assert result.counts["config"] == 3 and result.counts["params"] == 2 and not result.identical


def test_diff_flows_empty_sides() -> None:
    result = diff_flows([], sample_flow())
    assert [row.status for row in result.rows] == ["added"] * 5
    assert diff_flows([], []).rows == ()


def test_pick_steps_defaults() -> None:
    assert pick_steps([0, 2, 4], [2, 4], None, None) == (2, 2)
    assert pick_steps([0, 2], [1, 3], None, None) == (0, 1)
    assert pick_steps([0, 2], [2], 2, None) == (2, 2)
    assert pick_steps([0, 2], [1], 2, None) == (2, 1)
    assert pick_steps([], [1], None, None) == (None, 1)
