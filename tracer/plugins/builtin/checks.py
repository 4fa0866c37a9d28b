"""Built-in rules for ``tracer check``, contributed through the same hook a plugin's rules use."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tracer.plugins.markers import hookimpl

if TYPE_CHECKING:
    from tracer.checks.rules import Rule


@hookimpl
def register_checks(register: Callable[[Rule], None]) -> None:
    """The built-in rules: nan, saturation, dead-units, dtype-change, device-hop, ..."""
    from tracer.checks.builtin import register_builtin_rules

    register_builtin_rules(register)
