"""Driving the real app headless: run a Pilot script, wait for worker results."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from textual.pilot import Pilot

from tracer.tui.app import TracerApp

Script = Callable[[Pilot[None]], Awaitable[None]]


def drive(app: TracerApp, script: Script, size: tuple[int, int] = (160, 48)) -> None:
    """Run the real app headless at a terminal size and play ``script`` against it."""

    async def scenario() -> None:
        async with app.run_test(size=size) as pilot:
            await script(pilot)

    asyncio.run(scenario())


async def wait_for(pilot: Pilot[None], condition: Callable[[], bool], timeout: float = 5) -> None:
    """Let the app work until ``condition`` holds (store reads happen in worker threads)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the app did not reach the expected state in time")
        await pilot.pause(0.02)
