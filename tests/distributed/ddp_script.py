"""A user's own DDP training script traced with ``tracer.trace``: ``torchrun ... ddp_script.py DB``.

It does what the README shows: rank 0 opens (creates) the store first, every rank traces its
replica (``ddp.module``), and the process group is torn down cleanly at the end.
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import tracer
from tracer.distributed import main_first
from tracer.store import open_store


def main(db: str) -> None:
    """Three traced DDP steps per rank on random data (a different stream per rank)."""
    dist.init_process_group("gloo")
    torch.manual_seed(0)
    ddp = DistributedDataParallel(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1)))
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
    data = torch.Generator().manual_seed(dist.get_rank())
    store = main_first(lambda: open_store(db))
    with tracer.trace(ddp.module, store=store, name="user-ddp") as t:
        for _ in range(3):
            loss = ddp(torch.randn(4, 8, generator=data)).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            t.log(loss=loss.item())
            t.step()
    del ddp, optimizer  # the clean exit: release DDP, dispose the engine, barrier, destroy
    store.close()
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
