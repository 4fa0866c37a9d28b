"""Reusable test models for the tracing core (small, deterministic once seeded)."""

from __future__ import annotations

from collections import OrderedDict, namedtuple
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence


class ArticleLSTM(nn.Module):
    """The article's sentiment model: embedding, LSTM, flatten, Linear, Sigmoid, last step."""

    def __init__(self, vocab: int = 1000, embed: int = 30, hidden: int = 512) -> None:
        super().__init__()
        self.hidden_dim = hidden
        self.embedding = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, 1, batch_first=True)
        self.fc = nn.Linear(hidden, 1)
        self.sig = nn.Sigmoid()

    def forward(self, x: torch.Tensor, hidden: Any = None) -> tuple[torch.Tensor, Any]:
        batch_size = x.size(0)
        embeds = self.embedding(x)
        lstm_out, hidden = self.lstm(embeds, hidden)
        lstm_out = lstm_out.contiguous().view(-1, self.hidden_dim)
        out = self.sig(self.fc(lstm_out))
        out = out.view(batch_size, -1)
        return out[:, -1], hidden


class SmallCNN(nn.Module):
    """Conv -> BatchNorm -> in-place ReLU, twice, then pooling and a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(inplace=True),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


def transformer(d_model: int = 32, nhead: int = 4, layers: int = 2) -> nn.TransformerEncoder:
    """A small batch-first Transformer encoder (dropout off so training runs are comparable)."""
    layer = nn.TransformerEncoderLayer(
        d_model, nhead, dim_feedforward=2 * d_model, dropout=0.0, batch_first=True
    )
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class DictModel(nn.Module):
    """Returns a dict of named outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(6, 5)
        self.head = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = torch.tanh(self.body(x))
        return {"logits": self.head(hidden), "hidden": hidden}


class TwiceModel(nn.Module):
    """Calls the same submodule twice in one forward."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.block(torch.relu(self.block(x))))


def mlp(blocks: int, width: int = 64) -> nn.Sequential:
    """``blocks`` x (Linear, ReLU): many small layers, the per-call cost case."""
    layers: list[nn.Module] = []
    for _ in range(blocks):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers)


Pair = namedtuple("Pair", ["left", "right"])


@dataclass
class Output:
    """A dataclass output with a tensor, a None and a number."""

    scores: torch.Tensor
    extra: torch.Tensor | None
    count: int


class ModelOutputLike(OrderedDict):  # type: ignore[type-arg]
    """Like Hugging Face ``ModelOutput``: an OrderedDict subclass with attribute access."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Opaque:
    """An object the walker does not understand."""

    def __init__(self, payload: torch.Tensor) -> None:
        self.payload = payload


class NestedModel(nn.Module):
    """Takes keyword arguments and returns every kind of nested structure the walker knows."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, *, mask: torch.Tensor, note: str = "n") -> dict[str, Any]:
        y = self.proj(x) * mask
        return {
            "pair": Pair(y, y + 1),
            "data": Output(scores=y.sum(1), extra=None, count=3),
            "mo": ModelOutputLike(logits=y * 2, loss=None),
            "leaves": [None, 7, "text", 2.5],
            "opaque": Opaque(y),
        }


class PackedLSTM(nn.Module):
    """An LSTM fed a PackedSequence (its output is a PackedSequence too)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 5, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> PackedSequence:
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        return out
