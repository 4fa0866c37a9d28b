"""The inspector's Textual-free parts: formatting, flags, run list, diff lines, data layer."""

from __future__ import annotations

from dataclasses import replace

from tui_seed import seed_run, sentiment_calls, sentiment_modules, tensor

from tracer.records import CallRecord, RunInfo, TensorRecord
from tracer.store.diff import diff_flows
from tracer.tui import diffview, flow, runlist
from tracer.tui import formatting as fmt
from tracer.tui.data import StoreReader


def test_formatting_sparkline_spans_low_to_high_and_resamples() -> None:
    assert fmt.sparkline([0, 1, 2, 3, 4, 5, 6, 7], 8) == "▁▂▃▄▅▆▇█"
    assert len(fmt.sparkline(list(range(1000)), 20)) == 20
    assert fmt.sparkline([1.0, float("nan"), 2.0], 3) == "▁ █"
    assert fmt.sparkline([0.0, 1.0], 6) == "▁▁▁███"  # few values stretch to the width
    assert fmt.sparkline([0.0, 0.0], 2) == "▁▁"
    assert fmt.sparkline([], 5) == ""


def test_formatting_dtype_short() -> None:
    assert [fmt.dtype_short(d) for d in ("float32", "bfloat16", "int64", "bool")] == [
        "f32",
        "bf16",
        "i64",
        "bool",
    ]


def _call(seq: int, type_: str, out: TensorRecord, kind: str = "module") -> CallRecord:
    return CallRecord(0, seq, f"m{seq}", type_, kind=kind, outputs=(out,))  # type: ignore[arg-type]


def test_flow_flags_nonfinite_zeros_saturation_and_moves() -> None:
    plain = _call(0, "Linear", tensor("0", (2, 2)))
    nan = _call(1, "Linear", tensor("0", (2, 2), nan_count=3))
    zeros = _call(2, "ReLU", tensor("0", (2, 2), zero_frac=1.0))
    saturated = _call(3, "Sigmoid", tensor("0", (2, 2), min=0.0, max=1.0, std=0.49))
    calm = _call(4, "Sigmoid", tensor("0", (2, 2), min=0.4, max=0.6, std=0.01))
    tanh = _call(5, "Tanh", tensor("0", (2, 2), abs_mean=0.97))
    half = _call(6, "Linear", replace(tensor("0", (2, 2)), dtype="float16"))
    moved = _call(7, "Linear", replace(tensor("0", (2, 2)), device="cuda:0"))
    assert flow.flags(plain, None) == ""
    assert flow.flags(nan, plain) == flow.FLAG_NONFINITE
    assert flow.flags(zeros, plain) == flow.FLAG_ZEROS
    assert flow.flags(saturated, plain) == flow.FLAG_SATURATED
    assert flow.flags(calm, plain) == ""
    assert flow.flags(tanh, plain) == flow.FLAG_SATURATED
    assert flow.flags(half, plain) == flow.FLAG_MOVED
    assert flow.flags(moved, plain) == flow.FLAG_MOVED


def test_flow_rows_hide_ops_and_name_dimensions() -> None:
    calls = sentiment_calls(0, 512)
    names = {50: "batch_size", 200: "seq_length", 512: "hidden_dim"}
    rows = flow.rows(calls, names=names, ops=False)
    assert [r.label for r in rows] == ["<root>", "embedding", "lstm", "fc", "sig"]
    lstm = rows[2]
    assert lstm.output == "(batch_size, seq_length, hidden_dim)"
    assert lstm.extra_outputs.splitlines() == [
        "1.0 (1, batch_size, hidden_dim)",
        "1.1 (1, batch_size, hidden_dim)",
    ]


def _run(run_id: int, **config: object) -> RunInfo:
    return RunInfo(run_id, f"r{run_id}", "sentiment", "completed", config=config)


def test_runlist_varying_keys_are_those_that_differ() -> None:
    runs = [_run(1, lr=0.1, hidden_dim=512), _run(2, lr=0.1, hidden_dim=256), _run(3, lr=0.1)]
    assert runlist.varying_keys(runs) == ["hidden_dim"]
    assert runlist.varying_keys(runs[:1]) == []


def test_runlist_filter_and_sort() -> None:
    runs = [_run(1, hidden_dim=512), _run(2, hidden_dim=256), _run(3, hidden_dim=64)]
    assert [r.id for r in runlist.select(runs, "hidden_dim=256", None, False)] == [2]
    by_hidden = runlist.columns(["hidden_dim"])[-1]
    assert [r.id for r in runlist.select(runs, "", by_hidden, False)] == [3, 2, 1]


def test_diffview_lines_mark_shape_and_parameter_changes() -> None:
    diff = diff_flows(
        sentiment_calls(0, 512),
        sentiment_calls(0, 256),
        config_a={"hidden_dim": 512},
        config_b={"hidden_dim": 256},
        modules_a=sentiment_modules(512),
        modules_b=sentiment_modules(256),
    )
    lines = diffview.lines(diff, sentiment_modules(512), sentiment_modules(256))
    lstm = lines[2]
    assert lstm.marker == "≠shape" and {"flow", "params"} <= lstm.changed
    assert lines[1].marker == "" and not lines[1].is_change
    assert diffview.config_summary(diff) == "config: hidden_dim 512 → 256"
    assert "lstm 1,114,112 → 294,912" in diffview.params_summary(diff)


def test_diffview_added_layer_is_a_gap_on_the_other_side() -> None:
    left = sentiment_calls(0, 512)
    extra = replace(left[4], module="dropout", type="Dropout", seq=99)
    right = [*left[:4], extra, *left[4:]]
    diff = diff_flows(left, right)
    lines = diffview.lines(diff, [], [])
    added = [line for line in lines if line.status == "added"]
    assert len(added) == 1 and added[0].left is None and added[0].right.layer == "dropout"


def test_inspector_caches_finished_flows_but_not_running_ones(seeded) -> None:
    data = StoreReader.open(str(seeded.path))
    done = data.run(seeded.baseline)
    assert data.flow(done, 0) is data.flow(done, 0)
    live = data.run(seeded.live)
    assert live.status == "running"
    assert data.flow(live, 0) is not data.flow(live, 0)
    data.close()


def test_inspector_diff_defaults_to_the_first_common_step(seeded) -> None:
    data = StoreReader.open(str(seeded.path))
    other = seed_run(seeded.store, "late", hidden=256, steps=2, every=20)  # steps 0 and 20
    compared = data.diff(seeded.baseline, other, None, 20)
    assert (compared.diff.step_a, compared.diff.step_b) == (20, 20)
    assert compared.steps_b == [0, 20]
    data.close()


def test_formatting_chart_is_height_lines_with_bars_growing_upwards() -> None:
    lines = fmt.chart([0.0, 0.5, 1.0], 3, 2)
    assert len(lines) == 2 and all(len(line) == 3 for line in lines)
    assert lines[0][0] == " " and lines[0][2] == "█"  # top line: only the highest is full
    assert lines[1] == "▁██"  # bottom line: the lowest keeps a sliver
