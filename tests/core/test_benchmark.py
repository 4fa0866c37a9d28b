"""The benchmarks run and print their tables (one repetition: smoke runs); the zoo's counts."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "overhead.py"
MODES = ["plain", "shapes", "stats", "stats+records", "stats+ops", "every=10 (untraced step)"]
MODES += ["plain+grads", "stats+grads"]
ROW = re.compile(
    r"^(?P<model>.{30}) (?P<mode>.{26}) +(?P<ms>[\d.]+) +(?P<ratio>[\d.]+)x"
    r" +(?P<low>[\d.]+)-(?P<high>[\d.]+) +(?P<step>[\d.]+)x$"
)


@pytest.mark.slow
def test_overhead_benchmark_prints_every_model_and_mode() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--reps", "1", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = [m.groupdict() for line in done.stdout.splitlines() if (m := ROW.match(line))]
    models = {row["model"].strip() for row in rows}
    assert models == {
        "article LSTM 50x200",
        "MLP 500x(Linear,ReLU) b32",
        "TransformerEncoder 12L 8x128",
    }
    for model in models:
        modes = [r["mode"].strip() for r in rows if r["model"].strip() == model]
        assert modes[: len(MODES)] == MODES  # peers (torchinfo) may follow when installed
    for row in rows:
        assert float(row["ms"]) > 0 and float(row["ratio"]) > 0
        if row["mode"].strip() in ("plain", "plain+grads"):
            assert float(row["ratio"]) == 1.0


BANDWIDTH = Path(__file__).resolve().parents[2] / "benchmarks" / "stats_bandwidth.py"
BANDWIDTH_ROW = re.compile(
    r"^(?P<model>\S+) +(?P<shapes>[\d.]+) +(?P<stats>[\d.]+) +(?P<added>-?[\d.]+) +"
    r"(?P<tensors>\d+) +(?P<mb>[\d.]+) +(?P<rate>[\d.]+|-)$"
)


@pytest.mark.slow
@pytest.mark.needs_extension("probe", "speedups")
def test_stats_bandwidth_benchmark_prints_its_rates_and_rows() -> None:
    args = ["--models", "single_input_cnn", "no_such_model", "--reps", "1", "--mb", "16"]
    done = subprocess.run(
        [sys.executable, str(BANDWIDTH), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.match(r"the kernel on one thread: [\d.]+ GB/s from memory \(16 MB\)", lines[0])
    rows = [m.groupdict() for line in lines if (m := BANDWIDTH_ROW.match(line))]
    assert [row["model"] for row in rows] == ["single_input_cnn"]
    # The input (16, 1, 28, 28) and every activation: read once each
    assert int(rows[0]["tensors"]) >= 8 and float(rows[0]["mb"]) > 0.05
    assert lines[-1].startswith("no_such_model") and "not in the zoo" in lines[-1]


@pytest.mark.needs_extension("probe", "speedups")  # the size is allocated for the kernel
@pytest.mark.parametrize("bad", [["--mb", "0"], ["--reps", "0"], ["--mb", "10000000000"]])
def test_stats_bandwidth_benchmark_refuses_bad_sizes(bad: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, str(BANDWIDTH), "--models", "single_input_cnn", *bad],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 2
    # (torch may warn on stderr first, at import, where numpy is missing)
    assert done.stderr.splitlines()[-1].startswith("stats_bandwidth.py: ")
    assert "Traceback" not in done.stderr


def _zoo_module() -> Any:
    """benchmarks/zoo.py as a module (its folder holds zoo_models, which it imports)."""
    folder = str(Path(__file__).resolve().parents[2] / "benchmarks")
    sys.path.insert(0, folder)
    try:
        spec = importlib.util.spec_from_file_location("zoo_script", Path(folder) / "zoo.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
    return module


def _zoo_result(name: str, trace: list[float], head_to_head: list[float]) -> dict[str, Any]:
    return {
        "name": name,
        "group": "g",
        "times": {},
        "paired": {("trace", "plain"): trace, ("summary", "torchinfo-printed"): head_to_head},
    }


def test_zoo_counts_the_head_to_head_three_ways_from_each_repetitions_ratio() -> None:
    zoo = _zoo_module()
    results = [
        _zoo_result("quick", [1.2, 1.3, 1.4], [0.8, 0.9, 0.85, 0.7, 0.95]),
        _zoo_result("slow", [1.5, 1.6, 1.7], [1.2, 1.1, 1.3, 1.05, 0.9]),
        _zoo_result("even", [2.0, 2.0, 2.2], [0.9, 1.1, 1.0, 0.95, 1.05]),
    ]
    lines = zoo.paired_lines(results)
    assert "median one-shot trace / untraced forward     x1.60  (3 models)" in lines
    assert any("of 3: faster in 3 of 4 repetitions or more on 1, slower on 1" in x for x in lines)
    assert "  slower: slow x1.10" in lines and "  within the spread: even x1.00" in lines
    assert zoo._quartiles([0.5]) == (0.5, 0.5)
