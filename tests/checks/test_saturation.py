"""``saturation`` and the smooth ``dead-units``: they read near_zero_frac and near_one_frac."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tests.checks.conftest import batch, flagged, of_rule, train


def huge(linear: nn.Linear, scale: float = 1000.0) -> nn.Linear:
    with torch.no_grad():
        linear.weight.mul_(scale)
    return linear


def test_saturation_fires_at_a_sigmoid_after_a_linear_with_huge_weights(db: Path) -> None:
    model = nn.Sequential(huge(nn.Linear(8, 16)), nn.Sigmoid(), nn.Linear(16, 1))
    report = train(model, db, lambda m, step: m(batch(step)).pow(2).mean()).check()
    assert flagged(report) == [("saturation", "1", 0, 3)]
    (found,) = of_rule(report, "saturation")
    assert found.figures["fraction"] >= 0.95
    assert not [note for note in report.notes if "near_one_frac" in note]


def test_saturation_fires_at_a_peaked_softmax(db: Path) -> None:
    model = nn.Sequential(huge(nn.Linear(8, 6), 1e4), nn.Softmax(dim=-1), nn.Linear(6, 1))
    report = train(model, db, lambda m, step: m(batch(step)).pow(2).mean()).check()
    assert flagged(report) == [("saturation", "1", 0, 3)]


def test_saturation_leaves_out_the_models_own_output(db: Path) -> None:
    model = nn.Sequential(huge(nn.Linear(8, 1)), nn.Sigmoid())
    report = train(model, db, lambda m, step: m(batch(step)).mean()).check()
    assert flagged(report) == []


def test_saturation_is_quiet_for_a_tanh_of_ordinary_weights(db: Path) -> None:
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    report = train(model, db, lambda m, step: m(batch(step)).pow(2).mean()).check()
    assert flagged(report) == []


def test_dead_units_fire_at_a_gelu_after_a_large_negative_bias(db: Path) -> None:
    model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 1))
    with torch.no_grad():
        model[0].bias.fill_(-50.0)
    report = train(model, db, lambda m, step: m(batch(step)).pow(2).mean()).check()
    assert flagged(report) == [("dead-units", "1", 0, 3)]
