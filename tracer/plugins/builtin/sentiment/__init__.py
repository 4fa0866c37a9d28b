"""The built-in ``sentiment`` pipeline: the article's IMDB sentiment LSTM.

Importing this module does not import torch; data, model and training load on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracer.plugins.markers import hookimpl
from tracer.plugins.pipeline import Pipeline, RunContext

#: The widest embedding or LSTM layer: 4 * 8192**2 weights per LSTM matrix is 1 GiB of float32.
_WIDTH = 8192


@dataclass
class SentimentConfig:
    """Settings of the sentiment pipeline; the defaults finish in minutes on a laptop CPU."""

    data_dir: Path | None = field(
        default=None,
        metadata={"help": "aclImdb folder; default: the download cache, else the generated corpus"},
    )
    max_reviews: int | None = field(
        default=1000,
        metadata={"help": "reviews to use (none = all); split 80/10/10", "min": 1, "max": 10**8},
    )
    seq_length: int = field(
        default=200,
        metadata={
            "help": "tokens per review: left-padded with 0 or truncated",
            "min": 1,
            "max": 100_000,
        },
    )
    batch_size: int = field(
        default=50, metadata={"help": "reviews per batch", "min": 1, "max": 1_000_000}
    )
    embedding_dim: int = field(
        default=30, metadata={"help": "size of the word embeddings", "min": 1, "max": _WIDTH}
    )
    hidden_dim: int = field(
        default=512, metadata={"help": "LSTM hidden size", "min": 1, "max": _WIDTH}
    )
    n_layers: int = field(default=1, metadata={"help": "stacked LSTM layers", "min": 1, "max": 64})
    drop_prob: float = field(
        default=0.5,
        metadata={
            "help": "dropout between LSTM layers (only when n_layers > 1)",
            "min": 0.0,
            "max": 1.0,
        },
    )
    lr: float = field(default=0.001, metadata={"help": "Adam learning rate", "min": 0.0})
    clip: float = field(default=5.0, metadata={"help": "gradient norm clipping", "min": 0.0})
    epochs: int = field(
        default=2, metadata={"help": "passes over the training reviews", "min": 1, "max": 1_000_000}
    )
    steps_per_epoch: int | None = field(
        default=None,
        metadata={"help": "stop each epoch after this many steps (none = all)", "min": 1},
    )
    seed: int = field(
        default=0,
        metadata={
            "help": "seed of the data split, shuffling and initial weights",
            "min": 0,
            "max": 2**63 - 1,
        },
    )


def sentiment_data(config: SentimentConfig) -> Any:
    """Load reviews into train/validation/test batches."""
    import torch

    from tracer.plugins.builtin.sentiment.data import load_data

    # Gradients flowing back through 200 LSTM time steps decay into denormal floats, which the
    # CPU handles in microcode: measured here, training steps took 3.3-6.6 s instead of 0.45 s
    # until Adam had moved the weights. The flag is per thread and torch's worker threads copy
    # it when they start, so it is set here, before the first parallel torch operation.
    torch.set_flush_denormal(True)
    return load_data(config)


def sentiment_model(config: SentimentConfig, data: Any) -> Any:
    """Build the SentimentLSTM for the data's vocabulary."""
    from tracer.plugins.builtin.sentiment.model import SentimentLSTM

    return SentimentLSTM(
        data.vocab_size,
        embedding_dim=config.embedding_dim,
        hidden_dim=config.hidden_dim,
        n_layers=config.n_layers,
        drop_prob=config.drop_prob,
    )


def sentiment_train(model: Any, data: Any, config: Any, ctx: RunContext) -> Mapping[str, float]:
    """Train, validate each epoch, test at the end."""
    from tracer.plugins.builtin.sentiment.train import train

    return train(model, data, config, ctx)


PIPELINE = Pipeline(
    name="sentiment",
    description="IMDB sentiment LSTM from the article (generated reviews when IMDB is absent)",
    config_cls=SentimentConfig,
    data=sentiment_data,
    model=sentiment_model,
    train=sentiment_train,
)


@hookimpl
def register_pipelines(register: Callable[[Pipeline], None]) -> None:
    """Contribute the sentiment pipeline."""
    register(PIPELINE)
