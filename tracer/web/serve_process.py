"""One browser tab's inspector process: started without a shell, tied to the server's life,
stopped within a deadline.

textual-serve starts each app through ``/bin/sh -c`` and, to stop it, asks it to quit and
waits for as long as that takes. Two problems follow: a server killed with SIGKILL leaves every
app running (their parent becomes init, and they keep the database open), and a server asked
to stop waits for each tab's app. Here the app is started directly (its arguments never pass
through a shell), on Linux with ``PR_SET_PDEATHSIG`` so that the kernel kills it when the
server dies however it dies, and a stop that outlasts its deadline kills it. The apps ignore
Ctrl-C: in a terminal it reaches the whole process group, and the server stops them itself.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import signal
import sys
from asyncio.subprocess import Process
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from textual_serve.app_service import AppService

log = logging.getLogger("tracer.serve")

#: ``prctl`` option: the signal this process gets when the thread that started it exits.
PR_SET_PDEATHSIG = 1


def _child_setup() -> Callable[[], None]:
    """A function for ``preexec_fn``: the app ignores Ctrl-C (the server, which a terminal's
    Ctrl-C also reaches, tells it to quit) and, on Linux, dies with the server.

    libc is loaded here, before any fork: the child only calls into it.
    """
    prctl: Callable[..., int] | None = None
    if sys.platform.startswith("linux"):
        prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    parent = os.getpid()

    def setup() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:  # the server died before the line above took effect
                os._exit(1)

    return setup


class InspectorProcess(AppService):
    """textual-serve's app service with a direct ``exec``, a death signal and a bounded stop."""

    def __init__(self, argv: Sequence[str], environment: Mapping[str, str], **kwargs: Any) -> None:
        """``argv`` starts the app; ``environment`` is added to the server's own."""
        super().__init__(" ".join(argv), **kwargs)
        self.argv = list(argv)
        self.extra_environment = dict(environment)
        self._stopping: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        """The app's process id, once started."""
        return self._process.pid if self._process is not None else None

    def _build_environment(self, width: int = 80, height: int = 24) -> dict[str, str]:
        environment = super()._build_environment(width, height)
        environment.update(self.extra_environment)
        return environment

    async def _open_app_process(self, width: int = 80, height: int = 24) -> Process:
        self._process = process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._build_environment(width=width, height=height),
            preexec_fn=_child_setup(),
        )
        assert process.stdin is not None
        self._stdin = process.stdin
        return process

    async def stop(self, timeout: float = 1.0) -> None:  # type: ignore[override]
        """Ask the app to quit; kill it if it has not within ``timeout`` seconds.

        Safe to call more than once and from several tasks: they all wait for the one stop.
        """
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop(timeout))
        await asyncio.shield(self._stopping)

    async def _stop(self, timeout: float) -> None:
        process, task = self._process, self._task
        if process is None:
            return
        if task is not None:
            await self._download_manager.cancel_app_downloads(app_service_id=self.app_service_id)
            await self.send_meta({"type": "quit"})
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except asyncio.TimeoutError:
            if process.returncode is None:
                log.warning("killed app %s: it did not quit within %.1f s", process.pid, timeout)
                process.kill()
            await process.wait()
        if task is not None:
            await task  # it ends at the end of the app's output
        self._task = None
