"""The overhead benchmark runs and prints its whole table (one repetition: a smoke run)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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
