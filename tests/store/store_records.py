"""Records to write in store tests: a small model's modules and one traced step's calls."""

from __future__ import annotations

import math

from tracer.records import CallRecord, ModuleRecord, ParamRecord, TensorRecord, frozen_mapping


def tensor(
    slot: str = "0",
    shape: tuple[int, ...] = (4, 8),
    *,
    role: str = "output",
    dtype: str = "float32",
    device: str = "cpu",
    scale: float = 1.0,
    **extra: float,
) -> TensorRecord:
    """A float tensor record whose statistics depend on ``scale`` (so steps differ)."""
    stats = {
        "numel": float(math.prod(shape)),
        "mean": 0.25 * scale,
        "std": 1.5 * scale,
        "min": -2.0 * scale,
        "max": 3.0 * scale,
        "abs_mean": 0.75 * scale,
        "l2": 9.5 * scale,
        "zero_frac": 0.125,
        "nan_count": 0.0,
        "inf_count": 0.0,
        "near_zero_frac": 0.0625,
        "near_one_frac": 0.25,
        **extra,
    }
    return TensorRecord(slot, shape, dtype, device, role=role, stats=frozen_mapping(stats))  # type: ignore[arg-type]


def sample_modules() -> list[ModuleRecord]:
    """Modules of ``Sequential(emb=Embedding, lstm=LSTM, fc=Linear)``."""
    weight = ParamRecord("weight", (8, 16), "float32", 128, True)
    bias = ParamRecord("bias", (1,), "float32", 1, True, shared_with="fc.bias")
    return [
        ModuleRecord("", "Net", None, 0, 0, 417, 0, 417),
        ModuleRecord("emb", "Embedding", "", 1, 160, 160, 160, 160, "10, 16", (weight,)),
        ModuleRecord("lstm", "LSTM", "", 1, 128, 128, 128, 128, "16, 8"),
        ModuleRecord("fc", "Linear", "", 1, 129, 129, 129, 129, "8, 1", (weight, bias)),
    ]


def sample_flow(step: int = 0, scale: float = 1.0) -> list[CallRecord]:
    """One traced step: root, embedding, LSTM with (out, (h, c)), a flatten op, linear."""
    ids = TensorRecord(
        "0",
        (4, 5),
        "int64",
        "cpu",
        role="input",
        stats=frozen_mapping({"numel": 20.0, "mean": 3.5, "min": 0.0, "max": 9.0}),
    )
    mask = TensorRecord(
        "mask",
        (4, 5),
        "bool",
        "cpu",
        role="input",
        stats=frozen_mapping({"numel": 20.0, "true_frac": 0.5}),
    )
    opaque = TensorRecord("extra", (), "", "", role="input", type_name="NoneType")
    grad = tensor("weight_ih_l0", (32, 16), role="param_grad", scale=0.01 * scale)
    return [
        CallRecord(
            step,
            0,
            "",
            "Net",
            inputs=(ids, mask, opaque),
            outputs=(tensor(scale=scale),),
            duration_s=0.002,
        ),
        CallRecord(
            step,
            1,
            "emb",
            "Embedding",
            inputs=(ids,),
            outputs=(tensor(shape=(4, 5, 16), scale=scale),),
            depth=1,
        ),
        CallRecord(
            step,
            2,
            "lstm",
            "LSTM",
            inputs=(tensor(shape=(4, 5, 16), role="input"),),
            outputs=(
                tensor("0", (4, 5, 8), scale=scale),
                tensor("1.0", (1, 4, 8)),
                tensor("1.1", (1, 4, 8)),
            ),
            grads=(tensor("0", (4, 5, 8), role="grad", scale=scale), grad),
            depth=1,
            duration_s=0.001,
        ),
        CallRecord(
            step,
            3,
            "",
            "Net",
            kind="op",
            op="flatten",
            call_index=0,
            outputs=(tensor(shape=(4, 40), scale=scale, kurtosis=2.5 * scale),),
        ),
        CallRecord(step, 4, "fc", "Linear", outputs=(tensor(shape=(4, 1), scale=scale),), depth=1),
    ]
