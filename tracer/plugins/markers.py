"""The pluggy markers of the ``tracer`` project: ``hookimpl`` for plugin authors, ``hookspec``."""

from __future__ import annotations

import pluggy

PROJECT = "tracer"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
