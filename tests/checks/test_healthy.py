"""Healthy models come out with no error and no warning: false alarms make a checker useless."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tests.checks.conftest import batch, flagged, train


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
