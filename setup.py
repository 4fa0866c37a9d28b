"""Compiled parts of layer-tracer; everything else is declared in pyproject.toml.

Both extensions are optional: an install without them works and says what it lacks in each
run's notes.

- ``tracer.core._speedups`` (C, no torch headers): the one-pass statistics kernel. Built whenever a
  C compiler is present.
- ``tracer.core._probe`` (C++ against torch's headers): the hooks' fast path reads tensor metadata
  from the C++ tensor. It needs the torch that will run it at build time, so it is built only
  when the build can import torch: ``pip install --no-build-isolation`` after installing torch.
  An isolated build (plain ``pip install``) skips it rather than download a torch to build with;
  the first trace then builds it once into a per-user cache (tracer/core/probe_build.py, which
  holds the one description of its build).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from setuptools import Extension, setup

#: The statistics vector's layout, included by both extensions (tracer/core/stats_layout.py
#: names the same positions).
LAYOUT_HEADER = "tracer/core/stats_layout.h"

ext_modules: list[Extension] = [
    Extension(
        "tracer.core._speedups",
        ["tracer/core/_speedups.c"],
        depends=[LAYOUT_HEADER],
        optional=True,
    ),
]


def _probe_build() -> Any:
    """tracer/core/probe_build.py, loaded by its path (the package cannot be imported yet): the
    probe's one build description, shared with the build on first use."""
    path = Path(__file__).resolve().parent / "tracer" / "core" / "probe_build.py"
    spec = importlib.util.spec_from_file_location("_tracer_probe_build", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _torch() -> Any:
    """torch, where the build can import it (never in an isolated build)."""
    try:
        import torch
        import torch.utils.cpp_extension
    except ImportError:
        return None
    return torch


if (torch := _torch()) is not None and (probe_build := _probe_build()).supported():
    ext_modules.append(probe_build.probe_extension(torch, "tracer/core", optional=True))

setup(ext_modules=ext_modules)
