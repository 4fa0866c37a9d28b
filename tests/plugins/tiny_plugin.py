"""A plugin file for the tests: a tiny MLP pipeline, a statistic, an exporter, every lifecycle hook.

Loaded with ``--plugin``; each lifecycle hook appends what it saw to ``EVENTS``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tracer import hookimpl
from tracer.plugins.pipeline import Exporter, Pipeline, TensorStat

EVENTS = []


@dataclass
class TinyConfig:
    steps: int = field(default=3, metadata={"help": "training steps"})
    width: int = field(default=4, metadata={"help": "hidden width"})
    fail_at: int = field(default=-1, metadata={"help": "raise at this step (-1: never)"})
    interrupt_at: int = field(default=-1, metadata={"help": "Ctrl-C at this step (-1: never)"})
    stop_at: int = field(default=-1, metadata={"help": "request a stop at this step"})
    delay: float = field(default=0.0, metadata={"help": "seconds to sleep per step"})


def data(config):
    import torch

    return torch.randn(8, 3)


def model(config):
    from torch import nn

    return nn.Sequential(nn.Linear(3, config.width), nn.ReLU(), nn.Linear(config.width, 1))


def train(model, data, config, ctx):
    for i in range(config.steps):
        if ctx.should_stop:
            return {}
        if i == config.fail_at:
            raise RuntimeError(f"boom at step {i}")
        if i == config.interrupt_at:
            raise KeyboardInterrupt
        time.sleep(config.delay)
        loss = model(data.to(ctx.device)).pow(2).mean()
        loss.backward()
        ctx.step({"loss": loss.item()})
        if i == config.stop_at:
            ctx.request_stop()
    with ctx.untraced():  # an evaluation pass that must not show up as a traced step
        model(data.to(ctx.device))
    return {"final": 1.5}


@hookimpl
def register_pipelines(register):
    register(Pipeline("tiny", "a tiny MLP", TinyConfig, data, model, train))


@hookimpl
def register_tensor_stats(register):
    register(TensorStat("pos_frac", lambda t: (t > 0).float().mean().item(), "share > 0"))


@hookimpl
def register_exporters(register):
    def export(store, run_id, path):
        path.write_text(f"run {run_id}: {store.get_run(run_id).name}")

    register(Exporter("txt", "one line of text", export, ".txt"))


@hookimpl
def before_run(run, pipeline, config):
    EVENTS.append(("before_run", run.id, pipeline.name, config.steps))


@hookimpl
def after_step(run, step, metrics):
    EVENTS.append(("after_step", step, dict(metrics)))


@hookimpl
def after_run(run, status, metrics):
    EVENTS.append(("after_run", status, dict(metrics)))


@hookimpl
def on_run_error(run, error):
    EVENTS.append(("on_run_error", run.status, str(error)))
