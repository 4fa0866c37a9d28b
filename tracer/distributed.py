"""Running under ``torchrun``: where a process sits in the job, its process group, DDP, data
sharding, the job's shared group id, and a clean exit.

Outside a distributed job (no ``WORLD_SIZE`` above 1) every function here is a cheap no-op, so
callers never need to ask first.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import signal
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger("tracer.distributed")
T = TypeVar("T")

#: Set this to give the ranks of a job a group id of your own choosing.
GROUP_ENV = "TRACER_GROUP_ID"


class DistributedError(RuntimeError):
    """The distributed environment is malformed (bad RANK / WORLD_SIZE / LOCAL_RANK values)."""


class Terminated(Exception):
    """This rank was sent SIGTERM (torchrun stops the other ranks when one of them fails)."""


@dataclass(frozen=True)
class Placement:
    """Where this process sits in a job: ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        """True when this process is one of several ranks."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the rank that prints and creates shared things first)."""
        return self.rank == 0


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise DistributedError(f"{name}={raw!r} is not an integer") from None


def placement(env: Mapping[str, str] | None = None) -> Placement:
    """``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` as torchrun sets them; one process if unset."""
    env = os.environ if env is None else env
    world = _env_int(env, "WORLD_SIZE", 1)
    rank = _env_int(env, "RANK", 0)
    local = _env_int(env, "LOCAL_RANK", rank)
    if world < 1 or not 0 <= rank < world or local < 0:
        raise DistributedError(f"RANK={rank}, WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE")
    return Placement(rank, world, local)


def run_fields() -> dict[str, Any]:
    """``rank`` / ``world_size`` / ``group_id`` for a run created in this process ({} alone).

    Never a collective (a user may trace on one rank only): the process group's rank and size
    when one is up, else the torchrun variables; the group id from ``$TRACER_GROUP_ID`` or
    torchrun's rendezvous id (other launchers: set ``TRACER_GROUP_ID``).
    """
    where = placement()
    if dist.is_available() and dist.is_initialized():
        where = Placement(dist.get_rank(), dist.get_world_size(), where.local_rank)
    if not where.distributed and not os.environ.get(GROUP_ENV):
        return {}
    env = {**os.environ, "WORLD_SIZE": str(where.world_size), "RANK": str(where.rank)}
    return {
        "rank": where.rank,
        "world_size": where.world_size,
        "group_id": group_id(env, collective=False),
    }


def group_id(env: Mapping[str, str] | None = None, *, collective: bool = True) -> str | None:
    """The id every rank of this job records (None for a single process); cached per process.

    ``$TRACER_GROUP_ID`` wins; else torchrun's rendezvous id (``TORCHELASTIC_RUN_ID``, unique
    per ``--standalone`` launch or the ``--rdzv-id`` you pass), with the restart count after a
    restart; else, when ``collective``, rank 0's random id broadcast over the initialised process
    group (every rank must get here).
    """
    env = os.environ if env is None else env
    chosen = env.get(GROUP_ENV, "").strip()
    if chosen:
        return chosen
    if not placement(env).distributed:
        return None
    run_id = env.get("TORCHELASTIC_RUN_ID", "").strip()
    if run_id and run_id.lower() != "none":
        restart = _env_int(env, "TORCHELASTIC_RESTART_COUNT", 0)
        return run_id if restart == 0 else f"{run_id}.{restart}"
    return _broadcast_id() if collective else None


@functools.cache
def _broadcast_id() -> str | None:
    """Rank 0 draws an id, every rank receives it (None without a process group)."""
    if not dist.is_initialized():
        return None
    box: list[Any] = [uuid.uuid4().hex[:12] if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return str(box[0])


def local_device(device: torch.device, where: Placement) -> torch.device:
    """One GPU per local rank: a bare ``cuda`` becomes ``cuda:LOCAL_RANK`` in a job."""
    if device.type == "cuda" and device.index is None and where.distributed:
        return torch.device("cuda", where.local_rank)
    return device


def backend_for(device: torch.device) -> str:
    """``nccl`` for CUDA devices, ``gloo`` otherwise."""
    return "nccl" if device.type == "cuda" else "gloo"


def start(device: torch.device, where: Placement | None = None) -> bool:
    """Initialise the default process group for ``device``; True when this call created it."""
    where = placement() if where is None else where
    if not where.distributed or dist.is_initialized():
        return False
    if not os.environ.get("MASTER_ADDR") or not os.environ.get("MASTER_PORT"):
        # RANK / WORLD_SIZE without a rendezvous address: record the placement, form no group
        log.warning(
            "WORLD_SIZE=%d without MASTER_ADDR/MASTER_PORT: no process group", where.world_size
        )
        return False
    options: dict[str, Any] = {"rank": where.rank, "world_size": where.world_size}
    if device.type == "cuda":
        torch.cuda.set_device(device)
        options["device_id"] = device  # binds NCCL to this rank's GPU (barriers need to know)
    dist.init_process_group(backend_for(device), **options)
    return True


def _in_group() -> bool:
    """True when a process group of more than one rank is up."""
    return dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    """Wait for every rank (a no-op without a process group)."""
    if _in_group():
        dist.barrier()


def main_first(open_it: Callable[[], T]) -> T:
    """Call ``open_it`` on rank 0, then (after a barrier) on the other ranks: shared things such
    as a database schema get created once, by one process."""
    if not _in_group():
        return open_it()
    if dist.get_rank() == 0:
        try:
            result = open_it()
        finally:
            barrier()  # also on failure, or the others would wait for ever
        return result
    barrier()
    return open_it()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` inside DistributedDataParallel when a process group is up, else unchanged."""
    if not _in_group():
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The replica inside a DDP (or DataParallel) wrapper: what a rank traces."""
    inner = getattr(model, "module", None)
    if isinstance(inner, nn.Module) and type(model).__name__ in (
        "DistributedDataParallel",
        "DataParallel",
    ):
        return inner
    return model


def sampler(dataset: Any, *, seed: int, shuffle: bool = True) -> Any:
    """A DistributedSampler giving this rank its shard (equal lengths), or None outside a job."""
    if not _in_group():
        return None
    from torch.utils.data.distributed import DistributedSampler

    return DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=True)


def set_epoch(loader: Any, epoch: int) -> None:
    """Reshuffle a sharded loader for ``epoch`` (what DistributedSampler needs each epoch)."""
    set_it = getattr(getattr(loader, "sampler", None), "set_epoch", None)
    if callable(set_it):
        set_it(epoch)


@dataclass
class Job:
    """This process's part in a (possibly one-process) job: placement, device, what to release."""

    where: Placement
    device: torch.device
    owned: bool = False
    closers: list[Callable[[], None]] = field(default_factory=list)

    def on_exit(self, close: Callable[[], None]) -> None:
        """Call ``close`` (dispose an engine, ...) before the process group goes away."""
        self.closers.append(close)


#: The former name of :class:`Job`, kept for existing imports.
Session = Job

#: The job in progress in this process (sessions nest: inner ones share the outer job).
_active: list[Job] = []


@contextmanager
def session(device: torch.device, where: Placement | None = None) -> Iterator[Job]:
    """Start the process group if needed; on the way out release everything and tear it down.

    A clean exit under torchrun needs, in this order: the DDP model and optimiser released (the
    caller drops its references inside the block), the database engines disposed, a barrier so
    no rank leaves while another still talks to it, and the process group destroyed. Without
    that, about one 2-rank run in five died at interpreter exit (``terminate called without an
    active exception``) after finishing its work. SIGTERM (torchrun stopping the survivors when a
    rank fails) raises :class:`Terminated`, so the run is finished, not left running. A session
    opened inside another one is that outer session; only the outermost tears down.
    """
    if _active:
        yield _active[0]
        return
    where = placement() if where is None else where
    device = local_device(device, where)
    current = Job(where, device, owned=start(device, where))
    restore = _on_sigterm() if current.owned else None
    _active.append(current)
    clean = False
    try:
        yield current
        clean = True
    finally:
        _active.clear()
        _teardown(current, clean)
        if restore is not None:
            restore()


def _teardown(current: Job, clean: bool) -> None:
    gc.collect()  # DDP reducers and optimiser state held in reference cycles go now
    for close in reversed(current.closers):
        with suppress(Exception):
            close()
    if not current.owned or not dist.is_initialized():
        return
    if clean:
        barrier()  # only on success: after a failure a peer may be gone, and this would hang
    with suppress(Exception):
        dist.destroy_process_group()


def _on_sigterm() -> Callable[[], None] | None:
    """Turn the first SIGTERM into :class:`Terminated`; returns how to restore the old handler."""
    previous = signal.getsignal(signal.SIGTERM)
    fired: list[int] = []

    def handle(signum: int, frame: Any) -> None:
        if fired:
            return  # already finishing: let the cleanup run
        if _in_database_call(frame):
            # an exception inside a commit could leave the run unfinished: ask again shortly
            threading.Timer(0.02, os.kill, (os.getpid(), signum)).start()
            return
        fired.append(signum)
        raise Terminated("stopped by SIGTERM (torchrun stops every rank when one fails)")

    try:
        signal.signal(signal.SIGTERM, handle)
    except ValueError:  # not the main thread
        return None

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore


def _in_database_call(frame: Any) -> bool:
    """True while the interrupted code is inside the store or SQLAlchemy (a write, a commit)."""
    while frame is not None:
        if str(frame.f_globals.get("__name__", "")).startswith(("tracer.store", "sqlalchemy")):
            return True
        frame = frame.f_back
    return False
