"""Training as in the article: BCELoss, Adam, gradient clipping, validation each epoch, test."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from tracer import distributed
from tracer.plugins.pipeline import RunContext


def accuracy(output: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of predictions (rounded probabilities) equal to the labels."""
    return (output.detach().round() == labels).float().mean().item()


def evaluate(
    model: nn.Module, batches: Iterable[Any], criterion: nn.Module, ctx: RunContext
) -> tuple[float, float]:
    """Mean loss and accuracy over ``batches``, in eval mode, without gradients or tracing."""
    was_training = model.training
    model.eval()
    losses, accs = [], []
    with ctx.untraced(), torch.no_grad():
        for inputs, labels in batches:
            inputs, labels = inputs.to(ctx.device), labels.to(ctx.device)
            output = model(inputs)
            losses.append(criterion(output, labels).item())
            accs.append(accuracy(output, labels))
    model.train(was_training)
    if not losses:
        return float("nan"), float("nan")
    return sum(losses) / len(losses), sum(accs) / len(accs)


def train_epoch(
    model: nn.Module, data: Any, config: Any, ctx: RunContext, optimizer: torch.optim.Optimizer
) -> None:
    """One pass over the training batches; one traced step per optimiser step."""
    criterion = nn.BCELoss()
    model.train()
    for i, (inputs, labels) in enumerate(data.train):
        if ctx.should_stop or i == config.steps_per_epoch:
            return
        inputs, labels = inputs.to(ctx.device), labels.to(ctx.device)
        optimizer.zero_grad()
        output = model(inputs)
        loss = criterion(output, labels)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        optimizer.step()
        ctx.step({"loss": loss.item(), "accuracy": accuracy(output, labels), "lr": config.lr})
        ctx.progress.advance()


def train(model: nn.Module, data: Any, config: Any, ctx: RunContext) -> dict[str, float]:
    """Train ``config.epochs`` epochs, validating after each, then test; returns final metrics."""
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    criterion = nn.BCELoss()
    final: dict[str, float] = {}
    for epoch in range(1, config.epochs + 1):
        total = min(len(data.train), config.steps_per_epoch or len(data.train))
        ctx.progress.start(f"epoch {epoch}/{config.epochs}", total)
        distributed.set_epoch(data.train, epoch)  # a new shard order each epoch under torchrun
        train_epoch(model, data, config, ctx, optimizer)
        if ctx.should_stop:
            return final
        val_loss, val_acc = evaluate(model, data.valid, criterion, ctx)
        final.update(val_loss=val_loss, val_acc=val_acc)
        ctx.log({"val_loss": val_loss, "val_acc": val_acc})
        ctx.progress.print(f"epoch {epoch}: val_loss {val_loss:.4f}  val_acc {val_acc:.3f}")
    test_loss, test_acc = evaluate(model, data.test, criterion, ctx)
    final.update(test_loss=test_loss, test_acc=test_acc)
    ctx.log({"test_loss": test_loss, "test_acc": test_acc})
    return final
