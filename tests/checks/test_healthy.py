"""Healthy models come out with no error and no warning: false alarms make a checker useless."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from tests.checks.conftest import batch, flagged, train
from tracer.checks import check_run
from tracer.checks.builtin import BUILTIN_RULES
from tracer.cli import cli
from tracer.store import open_store


def test_healthy_mlp_has_no_error_or_warning(db: Path) -> None:
    model = nn.Sequential(
        nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1)
    )
    target = lambda step: batch(step)[:, :1] * 2  # noqa: E731
    report = train(
        model,
        db,
        lambda m, step: F.mse_loss(m(batch(step)), target(step)),
        steps=8,
        grads=True,
        ops=True,
    ).check()
    assert flagged(report) == []
    assert report.steps == tuple(range(8))


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 2 * 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        return self.fc(x.flatten(1))


def images(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(step)
    return torch.randn(8, 1, 8, 8, generator=generator), torch.randint(
        0, 3, (8,), generator=generator
    )


def test_healthy_cnn_has_no_error_or_warning(db: Path) -> None:
    def loss(m: nn.Module, step: int) -> torch.Tensor:
        x, y = images(step)
        return F.cross_entropy(m(x), y)

    report = train(SmallCNN(), db, loss, steps=8, grads=True, ops=True, lr=0.05).check()
    assert flagged(report) == []


def test_healthy_sentiment_pipeline_has_no_error_or_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The article's LSTM (smaller, every step traced, with gradients) through `tracer run`."""
    monkeypatch.setenv("TRACER_CACHE", str(tmp_path / "cache"))
    quick = ["max_reviews=500", "seq_length=50", "hidden_dim=64", "steps_per_epoch=4"]
    args = ["run", "sentiment", "--db", str(tmp_path / "s.db"), "--every", "1", "--grads"]
    result = CliRunner().invoke(cli, args + [x for q in quick for x in ("--set", q)])
    assert result.exit_code == 0, result.output
    assert "checks: 0 errors, 0 warnings" in result.stdout
    store = open_store(tmp_path / "s.db")
    report = check_run(store, store.get_run("latest"), BUILTIN_RULES)
    assert flagged(report) == [] and len(report.steps) == 8
