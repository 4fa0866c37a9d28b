"""``tracer run`` as a real process: its options reach the run, a bad device leaves nothing."""

from __future__ import annotations

from pathlib import Path

from cli_process import tracer

from tracer.store import open_store

ROOT = Path(__file__).parents[2]
TINY_PLUGIN = ROOT / "tests" / "plugins" / "tiny_plugin.py"


def test_cli_run_job_unknown_device_is_one_line_and_opens_no_database(tmp_path: Path) -> None:
    done = tracer("run", "tiny", "--plugin", TINY_PLUGIN, "--device", "warp[9]", cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "Error: unknown device 'warp[9]' (try auto, cpu, cuda, cuda:1, mps)" in done.stderr
    assert not (tmp_path / "tracer.db").exists()


def test_cli_run_job_options_reach_the_recorded_run(tmp_path: Path) -> None:
    args = ["run", "tiny", "--plugin", TINY_PLUGIN, "--set", "steps=4"]
    args += ["--name", "[b]x[/b]", "--every", "3", "--seed", "7", "--grads", "--device", "cpu"]
    done = tracer(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with open_store(tmp_path / "tracer.db") as store:
        run = store.get_run("latest")
        assert (run.name, run.seed, run.status, run.device) == ("[b]x[/b]", 7, "completed", "cpu")
        assert run.command is not None and "--every 3" in run.command
        assert store.steps(run.id) == [0, 3]
        assert any(call.grads for call in store.flow(run.id, 0))
