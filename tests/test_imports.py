"""The public API loads lazily: ``tracer.trace`` is the function, torch loaded on first use.

Which part may load which library is tests/test_layering.py's."""

from __future__ import annotations

import subprocess
import sys


def _python(code: str) -> str:
    """Run ``code`` in a fresh interpreter; its stdout, stripped (fails on a non-zero exit)."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


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
