"""The built-in rules. They reach the checks through the ``register_checks`` hook, as a plugin's
rules do (``tracer.plugins.builtin.checks``)."""

from __future__ import annotations

from collections.abc import Callable

from tracer.checks.builtin import activations, constant, drift, grads, nan, placement
from tracer.checks.rules import Rule

#: Every built-in rule, in the order reports list them.
BUILTIN_RULES: tuple[Rule, ...] = (
    nan.RULE,
    activations.SATURATION,
    activations.DEAD_UNITS,
    placement.DTYPE_CHANGE,
    placement.DEVICE_HOP,
    grads.EXPLODING,
    grads.VANISHING,
    constant.RULE,
    drift.RULE,
)


def register_builtin_rules(register: Callable[[Rule], None]) -> None:
    """Hand each built-in rule to ``register`` (what the built-in plugin's hook does)."""
    for rule in BUILTIN_RULES:
        register(rule)
