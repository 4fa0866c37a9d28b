"""What a diff calls a change: roles one side never recorded, and parameter counts."""

from __future__ import annotations

import math

from tracer.records import CallRecord, ModuleRecord, TensorRecord
from tracer.store.diff import diff_flows
from tracer.tui import diffview


def tensor(slot: str, shape: tuple[int, ...], role: str = "output") -> TensorRecord:
    """A float32 cpu tensor record."""
    stats = {"numel": float(math.prod(shape)), "mean": 0.5, "std": 1.0}
    return TensorRecord(slot, shape, "float32", "cpu", role=role, stats=stats)  # type: ignore[arg-type]


def flow(*, grads: bool, hidden: int = 8, head_grad: bool = True) -> list[CallRecord]:
    """Root, encoder, head; the encoder's and the head's gradients when ``grads``."""
    x = tensor("0", (4, 3), "input")
    enc_grads = (
        (
            tensor("0", (4, hidden), "grad"),
            tensor("weight", (hidden, 3), "param_grad"),
            tensor("bias", (hidden,), "param_grad"),
        )
        if grads
        else ()
    )
    head_grads = (tensor("0", (4, 1), "grad"),) if grads and head_grad else ()
    return [
        CallRecord(0, 0, "", "Net", inputs=(x,), outputs=(tensor("0", (4, 1)),)),
        CallRecord(
            0, 1, "encoder", "Linear", inputs=(x,), outputs=(tensor("0", (4, hidden)),),
            grads=enc_grads, depth=1,
        ),
        CallRecord(
            0, 2, "head", "Linear", inputs=(tensor("0", (4, hidden), "input"),),
            outputs=(tensor("0", (4, 1)),), grads=head_grads, depth=1,
        ),
    ]  # fmt: skip


def modules(encoder_own: int = 32, head_own: int = 9, unused_own: int = 0) -> list[ModuleRecord]:
    """The root's total follows its children's own counts."""
    total = encoder_own + head_own + unused_own
    return [
        ModuleRecord("", "Net", None, 0, 0, total, 0, total),
        ModuleRecord("encoder", "Linear", "", 1, encoder_own, encoder_own, 0, 0),
        ModuleRecord("head", "Linear", "", 1, head_own, head_own, 0, 0),
        ModuleRecord("unused", "Linear", "", 1, unused_own, unused_own, 0, 0),
    ]


def test_diff_flows_roles_one_side_never_recorded_are_not_changes() -> None:
    result = diff_flows(flow(grads=True), flow(grads=False))
    assert [row.status for row in result.rows] == ["same"] * 3
    assert all(row.changes == () for row in result.rows)
    assert dict(result.unrecorded) == {"a": (), "b": ("grad", "param_grad")}
    assert not result.structural and result.identical
    reverse = diff_flows(flow(grads=False), flow(grads=True))
    assert dict(reverse.unrecorded) == {"a": ("grad", "param_grad"), "b": ()}
    assert not reverse.structural


def test_diff_flows_a_missing_slot_of_a_role_both_recorded_is_a_shape_change() -> None:
    result = diff_flows(flow(grads=True), flow(grads=True, head_grad=False))
    head = result.rows[2]
    assert head.status == "shape"
    assert [(c.role, c.slot, c.field) for c in head.changes] == [("grad", "0", "shape")]
    assert dict(result.unrecorded) == {"a": (), "b": ()}
    assert result.structural


def test_diff_flows_real_shape_changes_still_count_next_to_unrecorded_roles() -> None:
    result = diff_flows(flow(grads=True), flow(grads=False, hidden=16))
    assert [row.status for row in result.rows] == ["same", "shape", "shape"]
    encoder = result.rows[1]
    assert {(c.role, c.slot) for c in encoder.changes} == {("output", "0")}  # no grad slots
    assert result.structural


def test_diff_flows_own_parameter_count_is_a_change_and_a_parent_total_is_not() -> None:
    # same activations, different weights: the encoder's parameters grew (a larger vocabulary)
    result = diff_flows(
        flow(grads=False), flow(grads=False), modules_a=modules(), modules_b=modules(64)
    )
    assert [row.status for row in result.rows] == ["same", "params", "same"]
    change = result.rows[1].changes[0]
    assert (change.role, change.field, change.left, change.right) == ("module", "params", 32, 64)
    assert result.counts["params"] == 1 and result.counts["same"] == 2
    assert {p.module for p in result.params} == {"", "encoder"}  # the root's total moved too
    assert result.structural


def test_diff_flows_parameter_change_of_an_uncalled_module_is_structural() -> None:
    result = diff_flows(
        flow(grads=False), flow(grads=False), modules_a=modules(), modules_b=modules(unused_own=5)
    )
    assert [row.status for row in result.rows] == ["same"] * 3
    assert result.structural  # --exit-code: the model's weights differ


def test_diffview_marks_exactly_the_rows_the_diff_counts() -> None:
    result = diff_flows(
        flow(grads=True), flow(grads=False), modules_a=modules(), modules_b=modules(64)
    )
    lines = diffview.lines(result, modules(), modules(64))
    assert [line.is_change for line in lines] == [row.status != "same" for row in result.rows]
    assert [line.marker for line in lines] == ["", "≠params", ""]  # <root> counts as same
    assert sum(line.is_change for line in lines) == sum(
        result.counts[s] for s in ("shape", "dtype", "device", "params", "added", "removed")
    )
    assert "params" in lines[1].changed and "params" not in lines[0].changed
    assert "1 params" in diffview.counts_summary(result)
    assert "not recorded in B: grad, param_grad" in diffview.counts_summary(result)
    assert diffview.params_summary(result) == "params: encoder 32 → 64"
