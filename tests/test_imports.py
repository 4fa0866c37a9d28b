"""The torch-free parts stay torch-free: importing them never loads torch."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

TORCH_FREE = ["tracer", "tracer.records", "tracer.sink", "tracer.store", "tracer.tui"]


def _exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


@pytest.mark.parametrize("module", TORCH_FREE)
def test_imports_torch_free_module_does_not_load_torch(module: str) -> None:
    if not _exists(module):  # a part that has not landed yet has nothing to check
        pytest.skip(f"{module} does not exist yet")
    code = f"import sys, {module}; print('torch' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False", f"importing {module} imported torch"


def test_imports_trace_is_the_function_whatever_is_imported_first() -> None:
    code = (
        "import types, tracer.session, tracer; import tracer.api as api; "
        "print(isinstance(tracer.trace, types.FunctionType) and tracer.trace is api.trace)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"


def test_imports_public_api_loads_lazily() -> None:
    code = (
        "import sys, tracer; assert 'torch' not in sys.modules; "
        "tracer.trace; assert 'torch' in sys.modules; print(callable(tracer.trace))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
