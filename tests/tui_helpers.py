"""Drive the real app headless: wait on conditions, never on fixed sleeps."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from textual.pilot import Pilot


async def wait_for(
    pilot: Pilot[object],
    condition: Callable[[], bool],
    timeout: float = 90,
    what: str = "condition",
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def text_of(widget: object) -> str:
    """The plain text a Static shows, whatever it was given (str, Text, a rich Table)."""
    content = widget.content  # type: ignore[attr-defined]
    if isinstance(content, str):
        return content
    if hasattr(content, "plain"):
        return str(content.plain)
    console = Console(width=200, record=True, no_color=True, file=io.StringIO())
    console.print(content)
    return console.export_text()


# Pauses inside every atomic write, so that a stop or a kill lands mid-run.
SLOW_WRITES = {"KFOLD_TEST_WRITE_DELAY": "0.05", "KFOLD_TEST_WRITE_DELAY_MATCH": ""}


def prefill(tiny_data: tuple[Path, Path], save: Path, **extra: Any) -> dict[str, Any]:
    """Form values for a run that takes seconds: what `kfold --flags` would pre-fill."""
    return {
        "input_dir": str(tiny_data[0]),
        "label_dir": str(tiny_data[1]),
        "model_save_dir": str(save),
        "epochs": 2,
        "k_folds": 2,
        "hidden_size": 8,
        "num_layers": 1,
        "batch_size": 3,
        "lr": 0.01,
        "device": "cpu",
        "run": "r",
        **extra,
    }


def footer_keys(app: Any) -> list[str]:
    """The footer entries ("esc Back") that show whole on the bottom row: one cut by the
    screen's edge, or hidden under the docked command-palette key, is left out."""
    width, height = app.size
    cells: dict[Any, int] = {}
    for x in range(width):
        widget, _ = app.screen.get_widget_at(x, height - 1)
        if type(widget).__name__ == "FooterKey":
            cells[widget] = cells.get(widget, 0) + 1
    return [
        " ".join(str(key.render()).split())
        for key, seen in cells.items()
        if seen >= key.render().cell_len
    ]


async def start_from_form(pilot: Pilot[object], app: Any) -> Any:
    """On the pre-filled train form: wait for the dataset check, ctrl+s, and return the
    monitor screen the app opens on the new run."""
    from tui.screens.monitor import MonitorScreen
    from tui.screens.train_form import TrainFormScreen

    form = app.screen
    assert isinstance(form, TrainFormScreen)
    await wait_for(pilot, lambda: form.dataset_sequences == 8, what="dataset summary")
    await pilot.press("ctrl+s")
    await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), what="the monitor")
    return app.screen
