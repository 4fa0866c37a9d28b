"""The key bindings of the screen below, what the flags mean, and which checks run."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from tracer.formatting import literal
from tracer.tui.findings import MARKER, SEVERITY_STYLE
from tracer.tui.flow import FLAG_HELP

GLOBAL_KEYS: tuple[tuple[str, str], ...] = (
    ("click", "move there; a runs heading sorts, a second click opens"),
    ("?", "this help"),
    ("ctrl+p", "command palette (every action)"),
    ("escape", "back"),
    ("q", "quit"),
)


class HelpScreen(ModalScreen[None]):
    """A modal listing the bindings of the screen it was opened from."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "dismiss", "close")]

    def __init__(self, screen: Screen[object]) -> None:
        super().__init__()
        self.below = screen
        self.rows = help_rows(screen)

    def compose(self) -> ComposeResult:
        """One table of keys, then the flag legend, then the checks."""
        with VerticalScroll(id="help"):
            yield Static(self._keys(), id="help-keys")
            yield Static(self._flags(), id="help-flags")
            yield Static(self._checks(), id="help-checks")

    def _keys(self) -> Table:
        table = Table(title=f"keys: {self.below.__class__.__name__.removesuffix('Screen')}")
        table.add_column("key", style="bold cyan")
        table.add_column("action")
        for key, what in self.rows:
            table.add_row(Text(key), Text(what))
        return table

    def _flags(self) -> Table:
        table = Table(title="flags")
        table.add_column("flag", style="bold red")
        table.add_column("meaning")
        for glyph, meaning in FLAG_HELP.items():
            table.add_row(glyph, meaning)
        table.add_row(f"{MARKER} rule", "a check found this here (error red, warning yellow)")
        table.add_row("2E 1W", "runs: errors and warnings the checks found (? check failed)")
        return table

    def _checks(self) -> Table:
        table = Table(title="checks (f lists a run's findings)")
        table.add_column("rule")
        table.add_column("finds")
        for rule in getattr(self.app, "rules", ()):
            name = Text(literal(rule.name, 40), style=SEVERITY_STYLE.get(rule.severity, ""))
            table.add_row(name, Text(literal(rule.summary, 200)))
        return table


def help_rows(screen: Screen[object]) -> list[tuple[str, str]]:
    """(keys, what they do) for a screen, then the keys that work everywhere that the screen
    does not bind itself (its own meaning of ``escape`` is the one that applies)."""
    bindings = screen_bindings(screen)
    own = [(display_key(b.key), b.description) for b in bindings]
    taken = {display_key(k) for b in bindings for k in b.key.split(",")}
    return own + [(key, what) for key, what in GLOBAL_KEYS if key not in taken]


def screen_bindings(screen: Screen[object]) -> list[Binding]:
    """The described bindings a screen declares (its own, not the app's)."""
    found = []
    for item in getattr(screen, "BINDINGS", []):
        binding = item if isinstance(item, Binding) else Binding(*item)
        if binding.description:
            found.append(binding)
    return found


def display_key(key: str) -> str:
    """``left_square_bracket,question_mark`` -> ``[ ?``."""
    names = {
        "left_square_bracket": "[",
        "right_square_bracket": "]",
        "left_curly_bracket": "{",
        "right_curly_bracket": "}",
        "question_mark": "?",
        "slash": "/",
        "space": "space",
        "full_stop": ".",
    }
    return " ".join(names.get(k.strip(), k.strip()) for k in key.split(","))
