"""Each rule on a small model with a defect seeded in: it fires at that layer and step, only."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tests.checks.conftest import batch, flagged, of_rule, train


class Shift(nn.Module):
    """Subtracts ``offset`` (set by the training loop): its output turns negative on cue."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.abs() + 1 - self.offset


class Log(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x)


def test_nan_fires_at_the_log_from_the_step_its_input_turns_negative(db: Path) -> None:
    model = nn.Sequential(nn.Linear(8, 8), Shift(), Log(), nn.Linear(8, 1))

    def loss(m: nn.Module, step: int) -> torch.Tensor:
        m[1].offset = 100.0 if step >= 2 else 0.0
        return m(batch(step)).mean()

    report = train(model, db, loss, steps=5).check()
    assert flagged(report) == [("nan", "2", 2, 4)]
    (found,) = of_rule(report, "nan")
    assert (found.role, found.slot, found.severity) == ("output", "0", "error")
    assert found.figures["nan_count"] > 0


def test_dead_units_fire_at_a_relu_after_a_large_negative_bias(db: Path) -> None:
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    with torch.no_grad():
        model[0].bias.fill_(-100.0)
    report = train(model, db, lambda m, step: m(batch(step)).pow(2).mean()).check()
    # the Linear after it outputs its bias alone: passed on, not made there (no constant-output)
    assert flagged(report) == [("dead-units", "1", 0, 3)]
    (found,) = of_rule(report, "dead-units")
    assert found.figures["fraction"] == 1.0


class Downcast(nn.Module):
    """Casts to float16 between two float32 layers (and back), as a stray ``.half()`` does."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.fc1(x).half())
        return self.fc2(h.float())


def test_dtype_change_fires_where_a_float16_tensor_enters(db: Path) -> None:
    report = train(Downcast(), db, lambda m, step: m(batch(step)).pow(2).mean()).check()
    assert flagged(report) == [("dtype-change", "act", 0, 3)]
    (found,) = of_rule(report, "dtype-change")
    assert (found.role, found.slot) == ("input", "0")
    assert "float16" in found.message and "fc1" in found.message


def test_dtype_change_is_quiet_for_a_model_in_float16_and_for_embeddings(db: Path) -> None:
    model = nn.Sequential(nn.Embedding(20, 8), nn.Linear(8, 4)).half()

    def loss(m: nn.Module, step: int) -> torch.Tensor:
        tokens = torch.randint(0, 20, (4, 5), generator=torch.Generator().manual_seed(step))
        return m(tokens).float().pow(2).mean()

    assert flagged(train(model, db, loss).check()) == []


def test_dtype_change_is_quiet_for_double_input_a_float_model_casts(db: Path) -> None:
    class Caster(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.float())

    loss = lambda m, step: m(batch(step).double()).pow(2).mean()  # noqa: E731
    assert flagged(train(Caster(), db, loss).check()) == []


def sigmoid_chain(depth: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(16, 16), nn.Sigmoid()]
    return nn.Sequential(*layers, nn.Linear(16, 1))


def test_vanishing_grad_fires_at_the_first_layer_of_a_deep_sigmoid_chain(db: Path) -> None:
    model = sigmoid_chain(10)
    report = train(model, db, lambda m, s: m(batch(s, features=16)).mean(), grads=True).check()
    assert flagged(report) == [("vanishing-grad", "0", 0, 3)]
    (found,) = of_rule(report, "vanishing-grad")
    assert found.figures["ratio"] < 1e-3
    assert found.role == "grad"


def test_vanishing_grad_is_quiet_for_a_shallow_sigmoid_chain(db: Path) -> None:
    model = sigmoid_chain(2)
    report = train(model, db, lambda m, s: m(batch(s, features=16)).mean(), grads=True).check()
    assert flagged(report) == []


def test_exploding_grad_fires_at_the_step_a_later_weight_blows_up(db: Path) -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1))

    def loss(m: nn.Module, step: int) -> torch.Tensor:
        if step == 3:
            with torch.no_grad():
                m[2].weight.mul_(1e4)
        return m(batch(step)).sum()

    report = train(model, db, loss, steps=6, grads=True, lr=0.0).check()
    assert flagged(report) == [("exploding-grad", "0", 3, 5)]
    (found,) = of_rule(report, "exploding-grad")
    assert found.figures["ratio"] >= 1000


def test_constant_output_fires_at_a_layer_whose_weights_are_zero(db: Path) -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1), nn.Sigmoid())
    with torch.no_grad():
        model[2].weight.zero_()
    model[2].weight.requires_grad_(False)
    report = train(model, db, lambda m, step: m(batch(step)).mean()).check()
    # the sigmoid after it gets one value and passes one value on: not where it was made
    assert flagged(report) == [("constant-output", "2", 0, 3)]


def test_drift_reports_a_mean_that_moves_every_step_as_info(db: Path) -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 1))

    def loss(m: nn.Module, step: int) -> torch.Tensor:
        with torch.no_grad():
            m[0].bias.add_(1.0)
        return m(batch(step)).mean()

    report = train(model, db, loss, steps=6, lr=0.0).check()
    assert flagged(report) == []
    drifts = of_rule(report, "drift")
    assert [(f.module, f.step, f.until, f.severity) for f in drifts][:1] == [("0", 0, 5, "info")]
