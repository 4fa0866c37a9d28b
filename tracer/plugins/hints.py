"""Hints for an unknown pipeline name: a plugin file, a loaded plugin, an installed package."""

from __future__ import annotations

import shlex
from importlib import metadata
from pathlib import Path
from typing import Any

ENTRY_POINTS_HOWTO = (
    "a package declares its plugin in pyproject.toml: "
    '[project.entry-points.tracer] my_plugin = "my_package.plugin"'
)


def unknown_pipeline_hint(name: str, manager: Any) -> str:
    """A sentence that helps when ``name`` is not a pipeline, or ``""``."""
    for hint in (_file_hint(name), _plugin_hint(name, manager), _distribution_hint(name)):
        if hint:
            return hint
    return ""


def _file_hint(name: str) -> str:
    """``name`` is (or names, without ``.py``) a Python file: it is loaded with ``--plugin``."""
    path = Path(name if name.endswith(".py") else f"{name}.py")
    try:
        exists = path.is_file()
    except (OSError, ValueError):  # a name too long, or with a NUL byte, is no file
        exists = False
    howto = "and name one of its pipelines (tracer pipelines --plugin FILE lists them)"
    if exists:
        return (
            f"{str(path)!r} is a file here: load it with --plugin {shlex.quote(str(path))} {howto}"
        )
    if name.endswith(".py"):
        return f"{name!r} looks like a file name: load a plugin file with --plugin FILE {howto}"
    return ""


def _plugin_hint(name: str, manager: Any) -> str:
    """``name`` is a loaded plugin: say which pipelines it contributes."""
    wanted = name.replace("-", "_")
    for info in manager.plugins():
        if info.name.replace("-", "_") == wanted:
            mine = sorted(p.name for p in manager.pipelines.values() if p.plugin == info.name)
            if mine:
                return f"Plugin {info.name!r} contributes the pipelines: {', '.join(mine)}"
            return f"Plugin {info.name!r} is loaded but contributes no pipeline"
    return ""


def _distribution_hint(name: str) -> str:
    """``name`` is an installed package: say whether it declares a ``tracer`` entry point."""
    try:
        dist = metadata.distribution(name)
    except (metadata.PackageNotFoundError, ValueError, OSError):
        return ""
    declared = [ep.name for ep in dist.entry_points if ep.group == "tracer"]
    label = f"{dist.metadata['Name'] or name} {dist.version}"
    if declared:
        return (
            f"The installed package {label} declares the tracer plugin(s) {', '.join(declared)}, "
            "which contribute no pipeline of that name (tracer plugins shows what each adds)"
        )
    return f"The installed package {label} declares no tracer plugin; {ENTRY_POINTS_HOWTO}"
