"""What every inspector screen shares: store queries in worker threads, errors as notifications."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Any, TypeVar, cast

from textual import work
from textual.screen import Screen
from textual.worker import get_current_worker

from tracer.tui.data import StoreReader, describe_error

if TYPE_CHECKING:
    from tracer.checks import CheckReport
    from tracer.records import RunInfo
    from tracer.tui.app import TracerApp

T = TypeVar("T")


class TracerScreen(Screen[None]):
    """A screen that reads the store only in worker threads."""

    #: A poll is out and has not answered yet.
    _polling = False

    @property
    def tracer_app(self) -> TracerApp:
        """The app, typed."""
        return cast("TracerApp", self.app)

    @property
    def data(self) -> StoreReader:
        """The data layer over the open store."""
        return self.tracer_app.data

    def check(self, run: RunInfo) -> CheckReport:
        """The app's checks on a run (a store read: call it from a worker, e.g. in fetch)."""
        return self.data.report(run, self.tracer_app.rules)

    @work(thread=True, exit_on_error=False, group="store")
    def fetch(self, query: Callable[[], T], done: Callable[[T], Any]) -> None:
        """Run a store query off the UI thread; hand its result (or its error) back to the UI."""
        try:
            result = query()
        except Exception as exc:  # every failed read becomes a notification, never a crash
            self._deliver(self.report, exc)
            return
        self._deliver(done, result)

    def poll_store(self, query: Callable[[], T], done: Callable[[T], Any]) -> None:
        """Fetch for a periodic poll: one at a time (a failed poll does not stop the next)."""
        if self._polling:
            return
        self._polling = True

        def landed(result: T) -> None:
            self._polling = False
            done(result)

        self.fetch(query, landed)

    def _deliver(self, callback: Callable[[Any], Any], value: Any) -> None:
        if get_current_worker().is_cancelled:
            return
        with suppress(RuntimeError):  # the app closed while the query ran
            self.app.call_from_thread(self._land, callback, value)

    def _land(self, callback: Callable[[Any], Any], value: Any) -> None:
        # A screen closed while its query ran has nothing left to update.
        if self.is_attached:
            callback(value)

    def report(self, exc: BaseException) -> None:
        """Show a failed query as an error notification (literal text); polling goes on."""
        self._polling = False
        self.notify(describe_error(exc), title="error", severity="error", markup=False)

    def action_back(self) -> None:
        """Back to the screen below."""
        self.app.pop_screen()
