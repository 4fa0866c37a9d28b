"""IMDB reviews (or the generated corpus) to padded integer batches, as in the article."""

from __future__ import annotations

import logging
import random
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

from tracer import distributed
from tracer.plugins.builtin.sentiment.corpus import generate_reviews
from tracer.plugins.builtin.sentiment.download import cache_dir
from tracer.plugins.pipeline import PipelineError

log = logging.getLogger("tracer.sentiment")

_STRIP = str.maketrans("", "", string.punctuation)
GENERATED_SIZE = 5000  # reviews generated when max_reviews is None


class DataError(PipelineError):
    """The review data cannot be found or read."""


@dataclass
class SentimentData:
    """Batches for training, validation and test, plus what the model needs to know."""

    train: DataLoader
    valid: DataLoader
    test: DataLoader
    vocab_size: int
    source: str


def tokenize(text: str) -> list[str]:
    """Lowercase, drop ``<br />`` and punctuation, split on whitespace."""
    return text.replace("<br />", " ").lower().translate(_STRIP).split()


def build_vocab(reviews: Sequence[Sequence[str]]) -> dict[str, int]:
    """Word-to-id map by descending frequency (ties alphabetical); ids start at 1, 0 pads."""
    counts = Counter(word for review in reviews for word in review)
    ordered = sorted(counts, key=lambda w: (-counts[w], w))
    return {word: i for i, word in enumerate(ordered, start=1)}


def pad_features(encoded: Sequence[Sequence[int]], seq_length: int) -> torch.Tensor:
    """Left-pad with zeros, or keep the first ``seq_length`` ids, as the article does."""
    features = torch.zeros((len(encoded), seq_length), dtype=torch.long)
    for i, ids in enumerate(encoded):
        kept = list(ids)[:seq_length]
        if kept:
            features[i, seq_length - len(kept) :] = torch.tensor(kept, dtype=torch.long)
    return features


def imdb_root(data_dir: Path | None) -> Path | None:
    """The ``aclImdb`` folder to read: ``data_dir`` (or its ``aclImdb`` child), else the cache."""
    if data_dir is None:
        candidate = cache_dir() / "aclImdb"
        return candidate if (candidate / "train").is_dir() else None
    data_dir = Path(data_dir).expanduser()
    for candidate in (data_dir, data_dir / "aclImdb"):
        if (candidate / "train" / "pos").is_dir():
            return candidate
    layout = "aclImdb/{train,test}/{pos,neg}/*.txt"
    raise DataError(f"no IMDB data at {data_dir}: expected {layout}")


def read_imdb(root: Path, limit: int | None, seed: int) -> list[tuple[str, int]]:
    """(text, label) pairs from ``root/{train,test}/{pos,neg}``; a seeded sample of ``limit``."""
    files = [
        (path, int(label == "pos"))
        for split in ("train", "test")
        for label in ("pos", "neg")
        for path in sorted((root / split / label).glob("*.txt"))
    ]
    if not files:
        raise DataError(f"no review files under {root}")
    random.Random(seed).shuffle(files)
    return [(p.read_text(encoding="utf-8", errors="replace"), y) for p, y in files[:limit]]


def load_reviews(config: Any) -> tuple[list[tuple[str, int]], str]:
    """The reviews to use and a description of where they came from."""
    root = imdb_root(config.data_dir)
    if root is not None:
        reviews = read_imdb(root, config.max_reviews, config.seed)
        return reviews, f"IMDB reviews from {root}"
    where = config.data_dir or cache_dir() / "aclImdb"
    log.warning(
        "no IMDB data found at %s; using the built-in generated corpus "
        "(run `tracer data download imdb` for the real one)",
        where,
    )
    n = config.max_reviews or GENERATED_SIZE
    return generate_reviews(n, config.seed), "the built-in generated corpus"


def _loader(x: torch.Tensor, y: torch.Tensor, batch: int, seed: int | None) -> DataLoader:
    """A loader over full batches (the model's reshape needs them); shuffled when seeded."""
    dataset = TensorDataset(x, y)
    if seed is None:
        return DataLoader(dataset, batch, drop_last=True)
    shard = distributed.sampler(dataset, seed=seed)
    if shard is not None:  # under torchrun each rank trains on its own shard
        return DataLoader(dataset, batch, sampler=shard, drop_last=True)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch, shuffle=True, generator=generator, drop_last=True)


def load_data(config: Any) -> SentimentData:
    """Reviews -> tokens -> vocabulary -> padded ids -> 80/10/10 train/validation/test loaders."""
    reviews, source = load_reviews(config)
    tokens = [tokenize(text) for text, _ in reviews]
    keep = [i for i, t in enumerate(tokens) if t]  # empty reviews carry no signal
    vocab = build_vocab([tokens[i] for i in keep])
    x = pad_features([[vocab[w] for w in tokens[i]] for i in keep], config.seq_length)
    y = torch.tensor([reviews[i][1] for i in keep], dtype=torch.float32)
    n_train, n_valid = int(0.8 * len(keep)), int(0.1 * len(keep))
    if min(n_train, n_valid) < config.batch_size:
        raise DataError(
            f"{len(keep)} reviews are too few for batches of {config.batch_size}: "
            f"raise max_reviews or lower batch_size"
        )
    cut = n_train + n_valid
    return SentimentData(
        train=_loader(x[:n_train], y[:n_train], config.batch_size, config.seed),
        valid=_loader(x[n_train:cut], y[n_train:cut], config.batch_size, None),
        test=_loader(x[cut:], y[cut:], config.batch_size, None),
        vocab_size=len(vocab) + 1,
        source=source,
    )
