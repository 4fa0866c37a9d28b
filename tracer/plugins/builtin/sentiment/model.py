"""The article's SentimentLSTM: embedding, LSTM, flatten, Linear, Sigmoid, last time step."""

from __future__ import annotations

import torch
from torch import nn


class SentimentLSTM(nn.Module):
    """Embedding -> LSTM -> ``view(-1, hidden_dim)`` -> Linear -> Sigmoid -> last time step."""

    def __init__(
        self,
        vocab_size: int,
        output_size: int = 1,
        embedding_dim: int = 30,
        hidden_dim: int = 512,
        n_layers: int = 1,
        drop_prob: float = 0.5,
    ) -> None:
        super().__init__()
        self.output_size = output_size
        self.hidden_dim = hidden_dim
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        # torch warns about dropout on a single-layer LSTM: it only acts between layers.
        dropout = drop_prob if n_layers > 1 else 0.0
        self.lstm = nn.LSTM(embedding_dim, hidden_dim, n_layers, dropout=dropout, batch_first=True)
        self.fc = nn.Linear(hidden_dim, output_size)
        self.sig = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities of a positive review, one per sequence in the batch."""
        batch_size = x.size(0)
        embeds = self.embedding(x)
        lstm_out, _hidden = self.lstm(embeds)
        # Every time step goes through the Linear layer; only the last one is kept at the end.
        lstm_out = lstm_out.contiguous().view(-1, self.hidden_dim)
        out = self.sig(self.fc(lstm_out))
        out = out.view(batch_size, -1)
        return out[:, -1]
