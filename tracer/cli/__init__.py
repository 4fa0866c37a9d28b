"""The ``tracer`` command line: one module per command group, gathered in ``main``."""

from __future__ import annotations

from tracer.cli.main import cli, main

__all__ = ["cli", "main"]
