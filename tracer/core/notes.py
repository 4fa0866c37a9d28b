"""Facts about how tracing changes a model's execution, stated in the run's records (notes)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from torch import nn

from tracer.core.probe import probe_available, probe_missing
from tracer.core.stats import KERNEL_MISSING
from tracer.core.wrapping import fused_encoder_layers


def collect_notes(
    model: nn.Module,
    traced: Sequence[str],
    *,
    ops: bool,
    torch_stats: bool = False,
    named: Sequence[tuple[str, nn.Module]] | None = None,
    encoder_layers: Iterable[tuple[str, nn.Module]] | None = None,
) -> list[str]:
    """Human-readable notes for the sink: fast paths switched off, compiled models, ...

    ``named``: the model's ``named_modules()``, and ``encoder_layers``: what
    :func:`fused_encoder_layers` found for ``traced``, when the caller already has them."""
    notes: list[str] = []
    if named is None:
        named = list(model.named_modules())
    if encoder_layers is None:
        encoder_layers = fused_encoder_layers(model, traced, named)
    encoder_paths = [path for path, _ in encoder_layers]
    if encoder_paths:
        shown = ", ".join(repr(p) for p in encoder_paths[:3])
        more = f" and {len(encoder_paths) - 3} more" if len(encoder_paths) > 3 else ""
        notes.append(
            f"hooks switch off the fused fast path of nn.TransformerEncoderLayer ({shown}{more}): "
            "in eval mode without gradients these layers run their slower Python path while "
            "traced, so outputs match an untraced run to float tolerance, not bit for bit; "
            "exclude them (exclude=[...]) to keep the fast path and record fewer calls"
        )
    if type(model).__name__ == "OptimizedModule":
        notes.append(
            "the model is compiled with torch.compile: module hooks run inside the compiled "
            "graph and can cause graph breaks or recompilation; trace the uncompiled module"
        )
    parallel = [
        path or "<root>"
        for path, module in named
        if isinstance(module, nn.DataParallel) and len(module.device_ids) > 1
    ]
    if parallel:
        notes.append(
            f"nn.DataParallel ({', '.join(parallel)}) runs each device's replica of the wrapped "
            "modules untraced: only the calls outside the replicas are recorded; use "
            "DistributedDataParallel (one traced process per device) to record every layer"
        )
    if torch_stats:
        why = f" ({KERNEL_MISSING})" if KERNEL_MISSING else ""
        notes.append(
            "statistics are computed with torch reductions: the compiled kernel "
            f"(tracer.core._speedups) could not be loaded{why}, so statistics of models with many "
            "small layers cost more; reinstall layer-tracer with a C compiler to build it"
        )
    if not probe_available():
        notes.append(
            "tensor metadata is read through torch's Python getters: the compiled probe "
            f"(tracer.core._probe) could not be loaded ({probe_missing()}), so tracing models with "
            "many "
            "small layers costs more; reinstall layer-tracer after torch with "
            "`pip install --no-build-isolation layer-tracer` (a C++ compiler) to build it"
        )
    if ops:
        notes.append(
            "op layer on: functional view/reshape/flatten/unflatten/permute/transpose/squeeze/"
            "unsqueeze/getitem/cat/stack/split/chunk calls are recorded as kind='op'"
        )
    return notes
