"""The rich progress bar a pipeline reports to through ``ctx.progress``."""

from __future__ import annotations

import io

from rich.console import Console

from tracer.plugins.progress import RichProgress


def test_progress_shows_phases_counts_metrics_and_messages() -> None:
    console = Console(file=io.StringIO(), width=120, force_terminal=False)
    with RichProgress(console) as progress:
        progress.start("epoch 1/2", 4)
        progress.advance()
        progress.advance(2)
        progress.status("loss 0.41")
        progress.print("epoch 1: val_acc 0.800")
    text = console.file.getvalue()
    assert "epoch 1: val_acc 0.800" in text
    assert "epoch 1/2" in text and "3/4" in text and "loss 0.41" in text


def test_progress_ignores_updates_before_a_phase_starts() -> None:
    console = Console(file=io.StringIO(), width=80)
    with RichProgress(console) as progress:
        progress.advance()
        progress.status("nothing yet")
    assert "nothing yet" not in console.file.getvalue()
