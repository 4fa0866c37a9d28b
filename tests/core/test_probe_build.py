"""An install without the compiled tensor probe builds it on first use, once, into a per-user
cache; without a compiler it keeps the Python probe, says why once, and remembers the failure.

Each scenario runs in fresh processes on a copy of the package without its built probe (what a
plain, isolated ``pip install`` leaves). The real build runs once per test session (shared by
xdist workers): three processes start on an empty cache at the same moment.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from tracer.core import probe_build

ROOT = Path(__file__).resolve().parents[2]
BUILDING = "tracer: building the compiled tensor probe"

#: Trace a small model once; print where the probe came from, the run's notes and the timings.
TRACE = """
import json, sys, time
started = time.perf_counter()
import torch
from tracer.core import probe
imported = time.perf_counter()
import tracer
from tracer.core.step_state import single_meta
from tracer.sink import MemorySink
model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
sink = MemorySink()
with tracer.trace(model, sink=sink) as t:
    model(torch.randn(2, 4))
    t.step()
traced = time.perf_counter()
status = probe.probe_status()
x = torch.randn(3, 2, requires_grad=True)
print(json.dumps({
    "source": status.source, "path": str(status.path), "reason": probe.probe_missing(),
    "notes": sink.notes, "compiled": type(probe.new_probe(single_meta)).__name__ != "PyProbe",
    "same_meta": probe.new_probe(single_meta).meta(x) == single_meta(x),
    "import_s": imported - started, "first_trace_s": traced - imported,
}))
"""


def package_without_probe(where: Path) -> Path:
    """A copy of the package without its built probe (the sources stay); its PYTHONPATH."""
    copy = where / "site"
    if not copy.exists():
        ignore = shutil.ignore_patterns("_probe.*.so", "_probe.*.pyd", "__pycache__")
        shutil.copytree(ROOT / "tracer", copy / "tracer", ignore=ignore)
    return copy


def environment(site: Path, cache: Path, **extra: str) -> dict[str, str]:
    """This environment without tracer settings, the copy first on the path, ``cache`` as the
    probe cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACER_")}
    env.update(PYTHONPATH=str(site), TRACER_PROBE_CACHE=str(cache), **extra)
    # torch without numpy warns about it on stderr at its first tensor: not ours to count
    env["PYTHONWARNINGS"] = "ignore:Failed to initialize NumPy:UserWarning"
    return env


def start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args], env=env, cwd=cwd, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def finish(process: subprocess.Popen[str], timeout: float = 600) -> dict[str, Any]:
    out, err = process.communicate(timeout=timeout)
    return {"rc": process.returncode, "stdout": out, "stderr": err}


def trace(site: Path, cache: Path, cwd: Path, **extra: str) -> dict[str, Any]:
    """One traced step in a fresh process; its report, with ``stderr``."""
    done = finish(start(["-c", TRACE], environment(site, cache, **extra), cwd), timeout=300)
    assert done["rc"] == 0, done["stderr"]
    report: dict[str, Any] = json.loads(done["stdout"])
    report["stderr"] = done["stderr"]
    return report


def probe_note(report: dict[str, Any]) -> str:
    """The run's note about the compiled probe ("" without one)."""
    return next((n for n in report["notes"] if "tracer.core._probe" in n), "")


# --- the real build, once per session ---------------------------------------------------------


@pytest.fixture(scope="session")
def first_use(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two traces and ``tracer doctor --build`` started at once on an empty cache, then a
    fourth trace: their reports, the cache, the package copy (the build runs once)."""
    if probe_build.missing_compiler() is not None:
        pytest.skip(f"the build needs a compiler: {probe_build.missing_compiler()}")
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "probe-build"
    shared.mkdir(exist_ok=True)
    results = shared / "results.json"
    with (shared / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not results.exists():
            results.write_text(json.dumps(_first_use(shared)))
    found: dict[str, Any] = json.loads(results.read_text())
    return found


def _first_use(shared: Path) -> dict[str, Any]:
    site, cache = package_without_probe(shared), shared / "cache"
    env = environment(site, cache)
    started = time.perf_counter()
    processes = [start(["-c", TRACE], env, shared) for _ in range(2)]
    processes.append(start(["-m", "tracer", "doctor", "--build"], env, shared))
    together = [finish(p) for p in processes]
    seconds = time.perf_counter() - started
    for done in together[:2]:
        assert done["rc"] == 0, done["stderr"]
        done.update(json.loads(done["stdout"]))
    later = trace(site, cache, shared)
    return {"together": together, "seconds": seconds, "later": later, "cache": str(cache)}


@pytest.mark.slow
def test_probe_build_concurrent_first_use_builds_once(first_use: dict[str, Any]) -> None:
    together = first_use["together"]
    announced = [d["stderr"].count(BUILDING) for d in together]
    assert sum(announced) == 1, [d["stderr"] for d in together]
    line = next(d["stderr"] for d in together if BUILDING in d["stderr"]).strip()
    assert "\n" not in line and " once " in line and " done in " in line, line
    doctor = together[2]
    assert doctor["rc"] == 0, doctor["stdout"] + doctor["stderr"]
    assert "probe     loaded from the cache (" in doctor["stdout"], doctor["stdout"]
    for report in together[:2]:
        assert report["source"] == "cache" and report["compiled"], report
        assert report["same_meta"]
        assert probe_note(report) == "", report["notes"]  # the run used the compiled probe


@pytest.mark.slow
def test_probe_build_cache_holds_one_whole_build(first_use: dict[str, Any]) -> None:
    cache = Path(first_use["cache"])
    key = probe_build.cache_key(torch.__version__)
    assert sorted(p.name for p in cache.iterdir()) == [key, key + ".lock"]  # no temporary left
    build = cache / key
    assert (build / probe_build.module_file_name()).is_file()
    assert json.loads((build / "build.json").read_text())["python"] == sys.version.split()[0]
    assert first_use["later"]["path"] == str(build / probe_build.module_file_name())


@pytest.mark.slow
def test_probe_build_later_processes_load_the_cache_silently(first_use: dict[str, Any]) -> None:
    later = first_use["later"]
    assert later["stderr"] == ""
    assert later["source"] == "cache" and later["compiled"] and later["same_meta"]
    assert probe_note(later) == ""
    assert later["first_trace_s"] < 20  # no compiler ran (a build takes about 30 s)


# --- without a compiler, and the failure remembered -------------------------------------------


def test_probe_build_without_compiler_keeps_python_probe_and_says_why_once(
    tmp_path: Path,
) -> None:
    site, cache = package_without_probe(tmp_path), tmp_path / "cache"
    missing = str(tmp_path / "no-such-compiler")
    first = trace(site, cache, tmp_path, CC=missing, CXX=missing)
    assert not first["compiled"] and first["source"] == ""
    lines = first["stderr"].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(BUILDING), first["stderr"]
    assert f"{missing} (which compiles the probe) is not found" in lines[0]
    assert "using the Python probe" in lines[0]
    note = probe_note(first)
    assert f"{missing} (which compiles the probe) is not found" in note, first["notes"]
    assert "tracer doctor --build` tries again" in note
    place = probe_build.entry(torch.__version__, cache)
    failure = json.loads(place.failure_file.read_text())
    assert failure["torch"] == torch.__version__ and missing in failure["reason"]
    assert place.built() is None


def test_probe_build_failure_is_remembered_not_retried(tmp_path: Path) -> None:
    site, cache = package_without_probe(tmp_path), tmp_path / "cache"
    failing = shutil.which("false")
    assert failing is not None
    first = trace(site, cache, tmp_path, CC=failing, CXX=failing)
    assert f"command '{failing}' failed with exit code 1" in first["stderr"], first["stderr"]
    place = probe_build.entry(torch.__version__, cache)
    stamp = place.failure_file.stat().st_mtime_ns
    # The compiler is back: still no build in every process until doctor --build asks.
    second = trace(site, cache, tmp_path)
    assert second["stderr"] == "" and not second["compiled"]
    assert f"command '{failing}' failed with exit code 1" in probe_note(second)
    assert f"remembered in {place.failure_file}" in probe_note(second)
    assert place.failure_file.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [place.failure_file.name, place.key + ".lock"]
    )


def test_probe_build_switched_off_by_environment(tmp_path: Path) -> None:
    site, cache = package_without_probe(tmp_path), tmp_path / "cache"
    report = trace(site, cache, tmp_path, TRACER_NO_PROBE_BUILD="1")
    assert report["stderr"] == "" and not report["compiled"]
    assert "$TRACER_NO_PROBE_BUILD turns building it on first use off" in probe_note(report)
    assert not cache.exists()


def test_probe_build_unwritable_cache_keeps_python_probe(tmp_path: Path) -> None:
    site = package_without_probe(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    report = trace(site, blocker / "cache", tmp_path)
    assert not report["compiled"]
    assert f"the probe cache {blocker / 'cache'} is not writable" in probe_note(report)
    assert report["stderr"].count("\n") == 1 and "not writable" in report["stderr"]


# --- where the cache is, and what names a build ------------------------------------------------


def test_probe_build_cache_root_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(probe_build.CACHE_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert probe_build.cache_root() == tmp_path / "home" / ".cache" / "layer-tracer" / "probe"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert probe_build.cache_root() == tmp_path / "xdg" / "layer-tracer" / "probe"
    monkeypatch.setenv(probe_build.CACHE_ENV, str(tmp_path / "own"))
    assert probe_build.cache_root() == tmp_path / "own"


def test_probe_build_key_names_torch_python_and_platform() -> None:
    key = probe_build.cache_key(torch.__version__)
    assert key.startswith(f"torch-{torch.__version__}-{sys.implementation.cache_tag}-")
    assert probe_build.cache_key("9.9.9") != key
    assert "/" not in probe_build.cache_key("2.0/../../x")


@pytest.mark.parametrize("value", ["1", "yes", "true"])
def test_probe_build_disabled_values(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(probe_build.NO_BUILD_ENV, value)
    assert probe_build.build_disabled()
    monkeypatch.setenv(probe_build.NO_BUILD_ENV, "0")
    assert not probe_build.build_disabled()


def test_probe_build_setup_py_uses_the_shared_description() -> None:
    extension = probe_build.probe_extension(torch, "tracer/core", optional=True)
    assert extension.name == "tracer.core._probe"
    assert ("TRACER_TORCH_VERSION", f'"{torch.__version__}"') in extension.define_macros
    code = (
        "import runpy, setuptools\n"
        "setuptools.setup = lambda **kw: print([e.name for e in kw['ext_modules']])\n"
        "runpy.run_path('setup.py', run_name='__main__')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['tracer.core._speedups', 'tracer.core._probe']"
