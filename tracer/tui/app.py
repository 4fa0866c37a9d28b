"""The inspector app: `tracer tui` opens it on a run store."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, ClassVar

from textual import events
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen

from tracer.tui.data import StoreReader, describe_error, describe_location
from tracer.tui.screens.help import HelpScreen, screen_bindings

if TYPE_CHECKING:
    from tracer.checks import Rule

#: What a person does that pauses the checks running in the background.
_USER_INPUT = (events.Key, events.MouseDown, events.MouseScrollDown, events.MouseScrollUp)

#: How long the UI thread may hold the GIL before a store-reading worker gets it back.
SWITCH_INTERVAL_S = 0.0005


class TracerApp(App[None]):
    """Browse runs layer by layer, watch statistics across steps, diff two runs."""

    CSS_PATH = "app.tcss"
    TITLE = "layer-tracer"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "quit"),
        Binding("question_mark", "help", "help"),
        Binding("escape", "close_screen", "back", show=False),
    ]

    def __init__(
        self,
        data: StoreReader,
        *,
        rules: Sequence[Rule] | None = None,
        poll_interval: float = 1.0,
    ) -> None:
        """``rules`` are the checks whose findings the screens show (None: the built-in ones)."""
        super().__init__()
        self.data = data
        self.poll_interval = poll_interval
        #: Set by `tracer serve --read-only`: the inspector deletes nothing.
        self.read_only = os.environ.get("TRACER_READ_ONLY", "") not in ("", "0")
        if rules is None:
            # imported here: the checks load the store, which the app's import does not need
            from tracer.checks.builtin import BUILTIN_RULES

            rules = BUILTIN_RULES
        self.rules: tuple[Rule, ...] = tuple(rules)

    def on_mount(self) -> None:
        """Start on the runs screen."""
        from tracer.tui.screens.runs import RunsScreen

        # Store reads run in worker threads, and SQLite gives up the GIL for every row it
        # steps: with Python's default 5 ms switch interval a busy UI thread made each row
        # wait, and loading a step's flow took 3-20 s instead of milliseconds.
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))

        self.push_screen(RunsScreen())

    async def on_event(self, event: events.Event) -> None:
        """A key or a click pauses the checks under way in the background (see StoreReader)."""
        if isinstance(event, _USER_INPUT):
            self.data.hold_background()
        await super().on_event(event)

    def action_help(self) -> None:
        """Show the key bindings of the current screen."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def action_close_screen(self) -> None:
        """Close the current screen, never the runs screen."""
        if len(self.screen_stack) > 2:
            self.pop_screen()

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """The palette lists the current screen's actions next to Textual's own commands."""
        yield from super().get_system_commands(screen)
        for binding in screen_bindings(screen):
            yield SystemCommand(
                binding.description,
                f"key: {binding.key}",
                lambda action=binding.action: self.call_later(screen.run_action, action),
            )

    def on_unmount(self) -> None:
        """Release the database connections."""
        self.data.close()


def main(db_url: str | None, rules: Sequence[Rule] | None = None) -> None:
    """Open the store at ``db_url`` (None: ``$TRACER_DB``, else ``./tracer.db``) and run the app
    with ``rules`` as its checks (None: the built-in ones)."""
    location = describe_location(db_url)  # a path is described as itself
    if "://" not in location and not os.path.exists(location):
        _fail(f"no database at {location} (record a run first, e.g. `tracer run sentiment`)")
    try:
        data = StoreReader.open(db_url)
        data.store.list_runs(limit=1)  # fail here, before the screen is taken over
    except Exception as exc:  # any failure to read becomes a message, not a traceback
        _fail(f"cannot read {location}: {describe_error(exc)}")
    TracerApp(data, rules=rules).run()


def _fail(message: str) -> None:
    print(f"tracer tui: {message}", file=sys.stderr)
    raise SystemExit(1)
