"""Module records: tree, depth, and parameter counts with tied parameters counted once."""

from __future__ import annotations

from torch import nn

from tracer.core.module_records import module_records


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.body = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
        self.decoder = nn.Linear(4, 10, bias=False)
        self.decoder.weight = self.embed.weight  # weight tying
        self.body[0].bias.requires_grad_(False)


def test_modules_tree_and_tied_parameters_counted_once() -> None:
    records = {r.path: r for r in module_records(Tied())}
    assert list(records) == ["", "embed", "body", "body.0", "body.1", "decoder"]
    assert records["body.0"].parent == "body" and records["body.0"].depth == 2
    assert records[""].parent is None and records["embed"].parent == ""
    assert records[""].params_total == 40 + 16 + 4
    assert records[""].trainable_total == 40 + 16
    assert records["decoder"].params_own == 0 and records["decoder"].params_total == 40
    (weight,) = records["decoder"].parameters
    assert weight.shared_with == "embed.weight" and weight.numel == 40
    assert records["body.0"].trainable_own == 16 and records["body.0"].params_own == 20
    assert "in_features=4" in records["body.0"].extra_repr
    assert records["body"].type == "Sequential"
