"""Layer detail, diff, metrics and help screens on a real store."""

from __future__ import annotations

from textual.pilot import Pilot
from textual.widgets import DataTable, Static
from tui_pilot import drive, wait_for

from tracer.tui.screens.diff import DiffScreen
from tracer.tui.screens.help import HelpScreen
from tracer.tui.screens.layer import LayerScreen
from tracer.tui.screens.metrics import MetricsScreen
from tracer.tui.widgets.diff_table import CHANGED, DiffTable
from tracer.tui.widgets.stat_plots import StatPlots


def text(pilot: Pilot[None], selector: str) -> str:
    """What a Static on the top screen shows, as plain text."""
    return str(pilot.app.screen.query_one(selector, Static).render())


async def open_layer(pilot: Pilot[None], seeded, module: str, step: int = 0) -> LayerScreen:
    """The layer screen of one module's call, as the run screen would open it."""
    app = pilot.app
    run = seeded.store.get_run(seeded.baseline)
    call = next(c for c in seeded.store.flow(run.id, step) if c.module == module)
    tree = {m.path: m for m in seeded.store.module_tree(run.id)}
    screen = LayerScreen(run, call, tree[module])
    await app.push_screen(screen)
    await wait_for(pilot, lambda: screen.query_one(StatPlots).series is not None)
    return screen


def test_layer_screen_lists_every_tensor_slot_and_parameter(seeded, make_app) -> None:
    async def script(pilot: Pilot[None]) -> None:
        screen = await open_layer(pilot, seeded, "lstm")
        tensors = screen.query_one("#tensors", DataTable)
        roles = [str(tensors.get_cell(row, "role")) for row in tensors.rows]
        slots = [str(tensors.get_cell(row, "slot")) for row in tensors.rows]
        assert list(zip(roles, slots, strict=True)) == [
            ("input", "0"),
            ("output", "0"),
            ("output", "1.0"),
            ("output", "1.1"),
            ("grad", "0"),
        ]
        assert str(tensors.get_cell("1", "shape")) == "(50, 200, 512)"
        params = screen.query_one("#params", DataTable)
        names = [str(params.get_cell_at((i, 0))) for i in range(params.row_count)]
        assert names == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
        assert "1,114,112" in text(pilot, "#title")

    drive(make_app(), script)


def test_layer_screen_plots_statistics_across_steps(seeded, make_app) -> None:
    async def script(pilot: Pilot[None]) -> None:
        screen = await open_layer(pilot, seeded, "lstm")
        plots = screen.query_one(StatPlots)
        assert (plots.series.role, plots.series.slot) == ("input", "0")
        await pilot.press("down")  # output 0: its std grows over the steps
        await wait_for(pilot, lambda: plots.series.role == "output")
        std = plots.series.stats["std"]
        assert [step for step, _ in std] == [0, 10, 20]
        assert std[0][1] < std[-1][1]
        assert [round(v, 6) for _, v in plots.series.grad_norm] == [0.002, 0.000182, 0.000095]
        shown = str(plots.render())
        assert "std" in shown and "0.05 → 0.25" in shown and "grad‖" in shown

    drive(make_app(), script)


def test_diff_screen_highlights_the_lstm_rows_of_two_hidden_sizes(seeded, make_app) -> None:
    async def script(pilot: Pilot[None]) -> None:
        screen = DiffScreen(seeded.baseline, seeded.small)
        await pilot.app.push_screen(screen)
        table = screen.query_one(DiffTable)
        await wait_for(pilot, lambda: table.row_count == 8)
        assert "config: hidden_dim 512 → 256" in text(pilot, "#counts")
        assert "5 same · 3 shape" in text(pilot, "#counts")
        assert "lstm 1,114,112 → 294,912" in text(pilot, "#counts")
        changed = {line.left.layer: line.status for line in table.lines if line.status != "same"}
        assert changed == {"lstm": "shape", "· view": "shape", "fc": "shape"}
        left, right = table.get_cell("2", "a.flow"), table.get_cell("2", "b.flow")
        assert str(left).endswith("(50, 200, 512) +2") and CHANGED in str(left.style)
        assert str(right).endswith("(50, 200, 256) +2") and CHANGED in str(right.style)
        assert CHANGED in str(table.get_cell("2", "b.params").style)
        assert CHANGED not in str(table.get_cell("1", "a.flow").style)  # the embedding: same
        assert "a.dtype" not in [str(key.value) for key in table.columns]  # no dtype changes

        assert table.current_line().left.layer == "<root>"  # the cursor starts at the top
        await pilot.press("n")
        assert table.current_line().left.layer == "lstm"
        await pilot.press("n")
        assert table.current_line().left.layer == "· view"
        await pilot.press("N", "N")  # back past the lstm, round to the last change
        assert table.current_line().left.layer == "fc"
        await pilot.press("c")  # the root's total follows its children: not a change of its own
        assert [line.left.layer for line in table.lines] == ["lstm", "· view", "fc"]

    drive(make_app(), script)


def test_diff_screen_picks_the_step_on_each_side(seeded, make_app) -> None:
    async def script(pilot: Pilot[None]) -> None:
        screen = DiffScreen(seeded.baseline, seeded.small)
        await pilot.app.push_screen(screen)
        await wait_for(pilot, lambda: screen.compared is not None)
        await pilot.press("right_square_bracket")
        await wait_for(pilot, lambda: screen.compared.diff.step_a == 10)
        assert screen.compared.diff.step_b == 0
        await pilot.press("right_curly_bracket", "right_curly_bracket")
        await wait_for(pilot, lambda: screen.compared.diff.step_b == 20)
        assert "(step 10)" in text(pilot, "#title") and "(step 20)" in text(pilot, "#title")
        assert screen.compared.diff.counts["drift"] > 0  # the statistics moved between steps

    drive(make_app(), script)


def test_metrics_screen_shows_curves_config_and_provenance(seeded, make_app) -> None:
    async def script(pilot: Pilot[None]) -> None:
        screen = MetricsScreen(seeded.tricky)
        await pilot.app.push_screen(screen)
        await wait_for(pilot, lambda: screen.curves is not None)
        assert sorted(screen.curves) == ["accuracy", "loss"]
        assert [step for step, _ in screen.curves["loss"]] == [0, 10, 20]
        prov = screen.query_one("#provenance", DataTable)
        fields = {
            str(prov.get_cell_at((i, 0))): str(prov.get_cell_at((i, 1)))
            for i in range(prov.row_count)
        }
        assert fields["name"] == "[bold]x[/]"
        assert fields["status"] == "failed" and fields["error"] == "CUDA out of memory"
        assert fields["host"] == "trainer-01" and fields["torch"] == "2.13.0"
        assert fields["command"] == "tracer run sentiment --set hidden_dim=128"
        config = screen.query_one("#config", DataTable)
        assert config.row_count == 4
        assert "loss" in text(pilot, "#curves") and "0.7 → 0.6" in text(pilot, "#curves")

    drive(make_app(), script)


def test_help_screen_lists_the_bindings_of_the_screen_below(seeded, make_app) -> None:
    async def script(pilot: Pilot[None]) -> None:
        await pilot.app.push_screen(DiffScreen(seeded.baseline, seeded.small))
        await pilot.press("question_mark")
        help_screen = pilot.app.screen
        assert isinstance(help_screen, HelpScreen)
        assert ("n", "next change") in help_screen.rows
        assert ("[", "left step -") in help_screen.rows
        assert ("q", "quit") in help_screen.rows
        await pilot.press("escape")
        assert isinstance(pilot.app.screen, DiffScreen)

    drive(make_app(), script)


def test_command_palette_lists_the_screens_actions(seeded, make_app) -> None:
    async def script(pilot: Pilot[None]) -> None:
        await wait_for(pilot, lambda: pilot.app.screen.__class__.__name__ == "RunsScreen")
        titles = [c.title for c in pilot.app.get_system_commands(pilot.app.screen)]
        assert {"diff marked", "mark", "delete", "filter", "metrics"} <= set(titles)

    drive(make_app(), script)


def test_layer_screen_steps_through_the_same_call(seeded, make_app) -> None:
    async def script(pilot: Pilot[None]) -> None:
        app = pilot.app
        run = seeded.store.get_run(seeded.baseline)
        call = next(c for c in seeded.store.flow(run.id, 0) if c.module == "lstm")
        module = {m.path: m for m in seeded.store.module_tree(run.id)}["lstm"]
        screen = LayerScreen(run, call, module, [0, 10, 20])
        await app.push_screen(screen)
        tensors = screen.query_one("#tensors", DataTable)
        await pilot.press("down")  # output 0
        await pilot.press("right_square_bracket")
        await wait_for(pilot, lambda: screen.call.step == 10)
        assert screen.call.module == "lstm"
        assert str(tensors.get_cell("1", "mean")) == "0.11"
        assert tensors.cursor_row == 1  # still on output 0
        assert "step 10" in text(pilot, "#title")
        await pilot.press("left_square_bracket", "left_square_bracket")
        await wait_for(pilot, lambda: screen.call.step == 0)

    drive(make_app(), script)
