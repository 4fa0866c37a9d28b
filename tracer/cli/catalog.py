"""``tracer pipelines`` and ``tracer plugins``: what is installed, and from where."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from tracer.cli.base import (
    debug_option,
    format_option,
    load_plugins,
    out,
    plugin_option,
    print_json,
)
from tracer.cli.render import lit

#: The largest --every and --seed: what the store's 64-bit integer columns hold.
_INT64_MAX = 2**63 - 1


def _config_table(pipeline: Any) -> Table:
    from tracer.plugins.config import config_fields

    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("key", "type", "default", "range", "help"):
        table.add_column(column)
    for f in config_fields(pipeline.config_cls):
        table.add_row(lit(f.name), f.type_name, lit(repr(f.default)), f.range_text, lit(f.help))
    return table


@click.command()
@plugin_option
@format_option
@debug_option
def pipelines(plugin_files: tuple[Path, ...], fmt: str) -> None:
    """List pipelines, the plugin each comes from, and their config keys."""
    from tracer.plugins.config import config_fields

    found = load_plugins(plugin_files).pipelines
    if fmt == "json":
        print_json(
            [
                {
                    "name": p.name,
                    "plugin": p.plugin,
                    "description": p.description,
                    "config": [
                        {
                            "key": f.name,
                            "type": f.type_name,
                            "default": f.default,
                            "min": f.min,
                            "max": f.max,
                            "help": f.help,
                        }
                        for f in config_fields(p.config_cls)
                    ],
                }
                for p in found.values()
            ]
        )
        return
    for p in found.values():
        out.print(
            Text.assemble(
                lit(p.name, "bold"),
                "  ",
                lit(p.description),
                "  ",
                lit(f"(plugin: {p.plugin})", "dim"),
            )
        )
        out.print(_config_table(p))
        out.print()


@click.command()
@plugin_option
@format_option
@debug_option
def plugins(plugin_files: tuple[Path, ...], fmt: str) -> None:
    """List loaded plugins: where each comes from, its hooks and what it contributes."""
    manager = load_plugins(plugin_files)
    contributed: dict[str, list[str]] = {}
    for kind, items in (
        ("pipeline", manager.pipelines),
        ("exporter", manager.exporters),
        ("stat", manager.tensor_stats),
        ("rule", manager.checks()),
    ):
        for item in items.values():
            contributed.setdefault(item.plugin, []).append(f"{kind} {item.name}")
    infos = manager.plugins()
    if fmt == "json":
        print_json(
            [
                {
                    "name": i.name,
                    "source": i.source,
                    "hooks": list(i.hooks),
                    "contributes": contributed.get(i.name, []),
                }
                for i in infos
            ]
        )
        return
    table = Table(box=None, header_style="bold")
    for column in ("plugin", "source", "hooks", "contributes"):
        table.add_column(column)
    for i in infos:
        table.add_row(
            lit(i.name),
            lit(i.source),
            ", ".join(i.hooks),
            lit(", ".join(contributed.get(i.name, []))),
        )
    out.print(table)
