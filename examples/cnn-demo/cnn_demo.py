"""Example tracer plugin: a small CNN on generated images of horizontal and vertical bars.

Install the folder (``pip install -e examples/cnn-demo``) to get it through the ``tracer``
entry point, or pass this file directly: ``tracer run cnn --plugin examples/cnn-demo/cnn_demo.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tracer import hookimpl
from tracer.plugins.pipeline import Pipeline, RunContext


@dataclass
class CNNConfig:
    """Settings of the CNN demo."""

    n_images: int = field(default=640, metadata={"help": "generated images (80% train)"})
    image_size: int = field(default=16, metadata={"help": "height and width of an image"})
    channels: int = field(default=8, metadata={"help": "channels of the first convolution"})
    batch_size: int = field(default=32, metadata={"help": "images per batch"})
    lr: float = field(default=0.01, metadata={"help": "Adam learning rate"})
    epochs: int = field(default=1, metadata={"help": "passes over the training images"})
    noise: float = field(default=0.3, metadata={"help": "std of the Gaussian pixel noise"})
    seed: int = field(default=0, metadata={"help": "seed of the generated images"})


def make_images(config: CNNConfig) -> dict[str, Any]:
    """Noisy images with one bright bar each; label 1 for vertical, 0 for horizontal."""
    import torch

    g = torch.Generator().manual_seed(config.seed)
    n, size = config.n_images, config.image_size
    labels = torch.randint(0, 2, (n,), generator=g)
    where = torch.randint(0, size, (n,), generator=g)
    images = torch.randn(n, 1, size, size, generator=g) * config.noise
    for i in range(n):
        if labels[i]:
            images[i, 0, :, where[i]] += 1.0
        else:
            images[i, 0, where[i], :] += 1.0
    cut = int(0.8 * n)
    return {"train": (images[:cut], labels[:cut]), "test": (images[cut:], labels[cut:])}


def make_model(config: CNNConfig) -> Any:
    """conv -> relu -> pool -> conv -> relu -> global max pool -> flatten -> linear."""
    from torch import nn

    c = config.channels
    return nn.Sequential(
        nn.Conv2d(1, c, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c, 2 * c, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * c, 2),
    )


def train(model: Any, data: dict[str, Any], config: CNNConfig, ctx: RunContext) -> dict[str, float]:
    """Cross-entropy with Adam; one traced step per batch; test accuracy at the end."""
    import torch
    from torch import nn

    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    images, labels = data["train"]
    batches = len(images) // config.batch_size
    for epoch in range(config.epochs):
        ctx.progress.start(f"epoch {epoch + 1}/{config.epochs}", batches)
        for b in range(batches):
            if ctx.should_stop:
                return {}
            x = images[b * config.batch_size : (b + 1) * config.batch_size].to(ctx.device)
            y = labels[b * config.batch_size : (b + 1) * config.batch_size].to(ctx.device)
            optimizer.zero_grad()
            logits = model(x)
            loss = nn.functional.cross_entropy(logits, y)
            loss.backward()
            optimizer.step()
            accuracy = (logits.argmax(1) == y).float().mean().item()
            ctx.step({"loss": loss.item(), "accuracy": accuracy})
            ctx.progress.advance()
    test_x, test_y = data["test"]
    with ctx.untraced(), torch.no_grad():
        test_acc = (model(test_x.to(ctx.device)).argmax(1).cpu() == test_y).float().mean().item()
    ctx.log({"test_acc": test_acc})
    return {"test_acc": test_acc}


PIPELINE = Pipeline(
    name="cnn",
    description="small CNN telling horizontal from vertical bars (generated images)",
    config_cls=CNNConfig,
    data=make_images,
    model=make_model,
    train=train,
)


@hookimpl
def register_pipelines(register: Callable[[Pipeline], None]) -> None:
    """Contribute the ``cnn`` pipeline."""
    register(PIPELINE)
