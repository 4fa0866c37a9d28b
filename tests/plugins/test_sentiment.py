"""The built-in sentiment pipeline: preprocessing, IMDB loading, corpus, model shapes, learning."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

import tracer
from tracer.plugins.builtin.sentiment import PIPELINE, SentimentConfig
from tracer.plugins.builtin.sentiment.corpus import generate_reviews
from tracer.plugins.builtin.sentiment.data import (
    DataError,
    build_vocab,
    imdb_root,
    load_data,
    pad_features,
    tokenize,
)
from tracer.plugins.builtin.sentiment.model import SentimentLSTM
from tracer.plugins.builtin.sentiment.train import train
from tracer.plugins.pipeline import RunContext, build_model


@pytest.fixture(autouse=True)
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data cache, so a user's downloaded IMDB never leaks into the tests."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("TRACER_CACHE", str(cache))
    return cache


def write_imdb(root: Path, per_folder: int = 30) -> Path:
    """A tiny aclImdb tree: ``per_folder`` reviews in each of train/test x pos/neg."""
    for split in ("train", "test"):
        for label, word in (("pos", "Great"), ("neg", "Awful")):
            folder = root / "aclImdb" / split / label
            folder.mkdir(parents=True)
            for i in range(per_folder):
                text = f"{word} movie, number {i}!<br /><br />The {split} set; {word.lower()}."
                (folder / f"{i}_{8 if label == 'pos' else 2}.txt").write_text(text)
    return root / "aclImdb"


def test_sentiment_tokenize_lowercases_and_strips_punctuation() -> None:
    assert tokenize("Great movie!<br /><br />I'd see it AGAIN.") == [
        "great",
        "movie",
        "id",
        "see",
        "it",
        "again",
    ]


def test_sentiment_vocab_is_by_frequency_with_zero_free_for_padding() -> None:
    vocab = build_vocab([["b", "a", "b"], ["c", "b", "a"]])
    assert vocab == {"b": 1, "a": 2, "c": 3}


def test_sentiment_pad_features_left_pads_and_truncates() -> None:
    features = pad_features([[1, 2], [1, 2, 3, 4, 5, 6], []], 4)
    assert features.tolist() == [[0, 0, 1, 2], [1, 2, 3, 4], [0, 0, 0, 0]]
    assert features.dtype == torch.long


def test_sentiment_reads_the_imdb_layout(tmp_path: Path) -> None:
    root = write_imdb(tmp_path)
    config = SentimentConfig(data_dir=tmp_path, max_reviews=None, batch_size=4, seq_length=12)
    data = load_data(config)
    assert data.source == f"IMDB reviews from {root}"
    assert len(data.train.dataset) == 96 and len(data.valid.dataset) == 12
    assert len(data.test.dataset) == 12
    x, y = next(iter(data.train))
    assert x.shape == (4, 12) and set(y.tolist()) <= {0.0, 1.0}
    assert imdb_root(root) == root


def test_sentiment_imdb_in_the_cache_is_used_by_default(empty_cache: Path) -> None:
    write_imdb(empty_cache)
    data = load_data(SentimentConfig(max_reviews=100, batch_size=5))
    assert data.source.startswith("IMDB reviews from")


def test_sentiment_missing_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no IMDB data at .*aclImdb/"):
        load_data(SentimentConfig(data_dir=tmp_path / "nowhere"))


def test_sentiment_without_imdb_announces_the_generated_corpus(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the command sends tracer's log to its own handler; here it goes to pytest's
    monkeypatch.setattr(logging.getLogger("tracer"), "propagate", True)
    with caplog.at_level(logging.WARNING, logger="tracer.sentiment"):
        data = load_data(SentimentConfig(max_reviews=500))
    assert "using the built-in generated corpus" in caplog.text
    assert data.source == "the built-in generated corpus"
    assert len(data.train) == 8  # 400 reviews in full batches of 50


def test_sentiment_generated_corpus_is_seeded_balanced_and_imdb_like() -> None:
    reviews = generate_reviews(200, seed=1)
    assert reviews == generate_reviews(200, seed=1)
    assert reviews != generate_reviews(200, seed=2)
    assert sum(label for _, label in reviews) == 100
    assert all("<br /><br />" in text for text, _ in reviews)
    assert 20 < sum(len(tokenize(t)) for t, _ in reviews) / 200 < 200


def test_sentiment_split_and_batches_are_reproducible() -> None:
    first = next(iter(load_data(SentimentConfig(max_reviews=500)).train))
    second = next(iter(load_data(SentimentConfig(max_reviews=500)).train))
    assert torch.equal(first[0], second[0])


def test_sentiment_too_few_reviews_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="too few for batches of 50"):
        load_data(SentimentConfig(max_reviews=100))


def test_sentiment_model_has_the_article_shapes() -> None:
    model = SentimentLSTM(1000, embedding_dim=30, hidden_dim=512)
    x = torch.randint(0, 1000, (50, 200))
    with torch.no_grad():
        out = model(x)
    assert out.shape == (50,)
    assert ((out > 0) & (out < 1)).all()
    assert [name for name, _ in model.named_children()] == ["embedding", "lstm", "fc", "sig"]
    assert model.lstm.dropout == 0.0
    assert SentimentLSTM(10, n_layers=2, drop_prob=0.25).lstm.dropout == 0.25


def test_sentiment_pipeline_builds_the_model_for_the_data_vocabulary() -> None:
    config = SentimentConfig(max_reviews=500, hidden_dim=16)
    data = PIPELINE.data(config)
    model = build_model(PIPELINE, config, data)
    assert model.embedding.num_embeddings == data.vocab_size
    assert model.lstm.hidden_size == 16


def _train_traced(model: torch.nn.Module, data: object, config: SentimentConfig) -> tuple:
    """Train under a real trace (every step traced would be slow: only step 0 is)."""
    with tracer.trace(model, every=1000) as t:
        final = train(model, data, config, RunContext(t, device=torch.device("cpu")))
    return final, t


@pytest.mark.slow
def test_sentiment_generated_corpus_is_learnable_in_one_epoch() -> None:
    torch.manual_seed(0)
    config = SentimentConfig(max_reviews=1500, embedding_dim=16, hidden_dim=32, epochs=1, lr=0.01)
    data = PIPELINE.data(config)
    model = build_model(PIPELINE, config, data)
    final, t = _train_traced(model, data, config)
    assert t.step_index == 24
    assert final["val_acc"] > 0.7, final  # chance is 0.5
    names = {name for _, name, _ in t.sink.metrics}
    assert {"loss", "accuracy", "lr", "val_loss", "val_acc", "test_loss", "test_acc"} <= names


def test_sentiment_steps_per_epoch_caps_training() -> None:
    config = SentimentConfig(max_reviews=500, hidden_dim=8, epochs=2, steps_per_epoch=2)
    data = PIPELINE.data(config)
    _, t = _train_traced(build_model(PIPELINE, config, data), data, config)
    assert t.step_index == 4


def test_sentiment_run_records_where_its_data_came_from(tmp_path: Path) -> None:
    from tracer.plugins.runner import run

    result = run(
        "sentiment",
        db=str(tmp_path / "s.db"),
        every=1,
        sets=["max_reviews=500", "hidden_dim=8", "epochs=1", "steps_per_epoch=1"],
    )
    assert result.run.tags["data"] == "the built-in generated corpus"
