"""A test that needs a compiled part which is not built skips, or fails when CI requires it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: pytest in a fresh interpreter where neither compiled part can be imported, as in an install
#: built without a C or C++ compiler.
WITHOUT_EXTENSIONS = (
    "import sys\n"
    "sys.modules['tracer.core._speedups'] = None\n"
    "sys.modules['tracer.core._probe'] = None\n"
    "import pytest\n"
    "sys.exit(pytest.main(sys.argv[1:]))\n"
)
TESTS = [
    "tests/core/test_kernel.py::test_kernel_is_built",
    "tests/core/test_probe.py::test_probe_is_built",
    "tests/core/test_probe.py::test_the_fixture_picks_the_probe",
]


def _run_without_extensions(require: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TRACER_REQUIRE_EXTENSIONS"}
    if require is not None:
        env["TRACER_REQUIRE_EXTENSIONS"] = require
    command = [sys.executable, "-c", WITHOUT_EXTENSIONS, *TESTS]
    command += ["-q", "-rsf", "-p", "no:cacheprovider", "-n", "0"]
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.parametrize("require", [None, "0"])
def test_extension_policy_missing_part_skips_with_the_reason(require: str | None) -> None:
    done = _run_without_extensions(require)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed, 3 skipped" in done.stdout, done.stdout
    assert "SKIPPED [1] tests/conftest.py" in done.stdout  # a skip with its reason, not a failure
    assert "tracer.core._speedups is not built (ModuleNotFoundError" in done.stdout
    assert "tracer.core._probe is not built (ModuleNotFoundError" in done.stdout


def test_extension_policy_missing_part_fails_when_required() -> None:
    done = _run_without_extensions("1")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 passed" in done.stdout and "3 errors" in done.stdout, done.stdout
    assert "$TRACER_REQUIRE_EXTENSIONS requires it" in done.stdout
    assert "Traceback" not in done.stdout


def test_extension_policy_ci_script_requires_the_parts_and_the_server() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert "TRACER_REQUIRE_EXTENSIONS=1" in script and "CI=" in script
