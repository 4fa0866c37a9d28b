"""The run screen: the article's shape flow, tree/flow sync, steps, names, ops, search."""

from __future__ import annotations

from textual.pilot import Pilot
from textual.widgets import Static
from tui_pilot import drive, wait_for

from tracer.tui.screens.layer import LayerScreen
from tracer.tui.screens.metrics import MetricsScreen
from tracer.tui.screens.run import RunScreen
from tracer.tui.widgets.flow_table import FlowTable
from tracer.tui.widgets.module_tree import ModuleTree


def flow(pilot: Pilot[None]) -> FlowTable:
    """The flow table of the screen on top."""
    return pilot.app.screen.query_one(FlowTable)


def column(pilot: Pilot[None], key: str) -> list[str]:
    """The plain text of one flow column, top to bottom."""
    table = flow(pilot)
    return [str(table.get_cell(row, key)) for row in table.rows]


async def open_run(pilot: Pilot[None], run_id: int) -> RunScreen:
    """Push the run screen and wait for its first step."""
    screen = RunScreen(run_id)
    await pilot.app.push_screen(screen)
    await wait_for(pilot, lambda: screen.run is not None and flow(pilot).row_count > 0)
    return screen


def test_run_screen_shows_the_articles_shape_flow(seeded, make_app) -> None:
    async def script(pilot: Pilot[None]) -> None:
        await open_run(pilot, seeded.baseline)
        labels = column(pilot, "layer")
        assert labels == [
            "<root>",
            "embedding",
            "lstm",
            "· view",
            "fc",
            "sig",
            "· view",
            "· getitem",
        ]
        outputs = [text.split("\n")[0] for text in column(pilot, "out")]
        assert outputs[1:] == [
            "(50, 200, 30)",
            "(50, 200, 512)",
            "(10000, 512)",
            "(10000, 1)",
            "(10000, 1)",
            "(50, 200)",
            "(50,)",
        ]
        assert "1.0 (1, 50, 512)" in column(pilot, "out")[2]  # h and c of the LSTM
        assert column(pilot, "in")[1] == "(50, 200)"
        assert set(column(pilot, "dtype")) == {"float32"}
        tree = pilot.app.screen.query_one(ModuleTree)
        assert tree.paths == ["", "embedding", "lstm", "fc", "sig"]

    drive(make_app(), script)


def test_run_screen_keeps_tree_and_flow_in_step(seeded, make_app) -> None:
    async def script(pilot: Pilot[None]) -> None:
        await open_run(pilot, seeded.baseline)
        tree = pilot.app.screen.query_one(ModuleTree)
        await pilot.press("down", "down")  # <root> -> embedding -> lstm
        assert flow(pilot).current_call().module == "lstm"
        await wait_for(pilot, lambda: tree.current_path == "lstm")
        tree.focus()
        await pilot.press("down")  # the tree moves on to fc; the flow follows
        await wait_for(pilot, lambda: flow(pilot).current_call().module == "fc")
        assert flow(pilot).current_call().kind == "module"

    drive(make_app(), script)


def test_run_screen_steps_through_traced_steps(seeded, make_app) -> None:
    async def script(pilot: Pilot[None]) -> None:
        screen = await open_run(pilot, seeded.baseline)
        await pilot.press("down", "down")
        assert screen.step == 0
        await pilot.press("right_square_bracket")
        await wait_for(pilot, lambda: flow(pilot).current_call().step == 10)
        assert flow(pilot).current_call().module == "lstm"  # the cursor stays on the layer
        assert column(pilot, "mean")[2] == "0.11"
        await pilot.press("right_square_bracket", "right_square_bracket")
        await wait_for(pilot, lambda: flow(pilot).current_call().step == 20)
        assert "step 20 (3 of 3)" in str(screen.query_one("#title", Static).render())
        await pilot.press("left_square_bracket")
        await wait_for(pilot, lambda: flow(pilot).current_call().step == 10)

    drive(make_app(), script)


def test_run_screen_names_dimensions_from_the_config(seeded, make_app) -> None:
    async def script(pilot: Pilot[None]) -> None:
        await open_run(pilot, seeded.baseline)
        await pilot.press("n")
        out = column(pilot, "out")[2]
        assert out.startswith("(batch_size, seq_length, hidden_dim)")
        assert "(1, batch_size, hidden_dim)" in out
        await pilot.press("n")
        assert column(pilot, "out")[2].startswith("(50, 200, 512)")

    drive(make_app(), script)


def test_run_screen_hides_and_shows_op_rows(seeded, make_app) -> None:
    async def script(pilot: Pilot[None]) -> None:
        await open_run(pilot, seeded.baseline)
        await pilot.press("t")
        assert column(pilot, "layer") == ["<root>", "embedding", "lstm", "fc", "sig"]
        await pilot.press("t")
        assert flow(pilot).row_count == 8

    drive(make_app(), script)


def test_run_screen_searches_module_paths(seeded, make_app) -> None:
    async def script(pilot: Pilot[None]) -> None:
        screen = await open_run(pilot, seeded.baseline)
        await pilot.press("slash", "f", "c")
        assert flow(pilot).current_call().module == "fc"
        await pilot.press("escape")
        assert not screen.query_one("#search").has_class("visible")
        assert flow(pilot).has_focus

    drive(make_app(), script)


def test_run_screen_opens_layer_detail_and_metrics(seeded, make_app) -> None:
    async def script(pilot: Pilot[None]) -> None:
        await open_run(pilot, seeded.baseline)
        await pilot.press("down", "down", "enter")
        assert isinstance(pilot.app.screen, LayerScreen)
        assert pilot.app.screen.call.module == "lstm"
        await pilot.press("escape", "m")
        assert isinstance(pilot.app.screen, MetricsScreen)

    drive(make_app(), script)


def test_run_screen_shows_steps_written_while_open(seeded, make_app) -> None:
    from tui_seed import sentiment_calls

    async def script(pilot: Pilot[None]) -> None:
        screen = await open_run(pilot, seeded.live)
        assert screen.steps == [0]
        seeded.store.writer(seeded.live).write_step(10, sentiment_calls(10, 512))
        await wait_for(pilot, lambda: screen.steps == [0, 10])
        await pilot.press("right_square_bracket")
        await wait_for(pilot, lambda: flow(pilot).current_call().step == 10)

    drive(make_app(), script)
