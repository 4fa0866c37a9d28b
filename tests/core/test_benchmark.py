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
