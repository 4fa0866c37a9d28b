"""The torch-free parts stay torch-free: importing them never loads torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

TORCH_FREE = ["tracer", "tracer.records", "tracer.sink", "tracer.store", "tracer.tui"]


def _python(code: str) -> str:
    """Run ``code`` in a fresh interpreter; its stdout, stripped (fails on a non-zero exit)."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("module", TORCH_FREE)
def test_imports_torch_free_module_does_not_load_torch(module: str) -> None:
    code = f"import sys, {module}; print('torch' in sys.modules)"
    assert _python(code) == "False", f"importing {module} imported torch"


def test_imports_trace_is_the_function_whatever_is_imported_first() -> None:
    code = (
        "import types, tracer.core.trace, tracer; import tracer.api as api; "
        "print(isinstance(tracer.trace, types.FunctionType) and tracer.trace is api.trace)"
    )
    assert _python(code) == "True"


def test_imports_public_api_loads_lazily() -> None:
    code = (
        "import sys, tracer; assert 'torch' not in sys.modules; "
        "tracer.trace; assert 'torch' in sys.modules; print(callable(tracer.trace))"
    )
    assert _python(code) == "True"
