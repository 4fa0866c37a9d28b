"""Plugins: pluggy hookspecs, the per-invocation manager, pipelines and the built-in plugins."""

from __future__ import annotations
