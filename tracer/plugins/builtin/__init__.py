"""Plugins shipped with tracer; they register through the same hooks as third-party plugins."""

from __future__ import annotations
