"""Save docs/monitor.svg: the app's own screenshot of the monitor during a real run.

    python scripts/screenshot.py

Trains a small lstm on the sample data in a temporary save folder (about a minute on a
laptop CPU) and asks the app to save an SVG once the second fold is under way.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tui.app import KfoldApp  # noqa: E402
from tui.screens.monitor import MonitorScreen  # noqa: E402


async def shoot(out: Path) -> None:
    with tempfile.TemporaryDirectory() as save:
        app = KfoldApp(
            {
                "model": "lstm",
                "hidden_size": 32,
                "epochs": 40,
                "k_folds": 3,
                "lr": 0.005,
                "batch_size": 8,
                "max_seq_len": 400,
                "input_dir": str(ROOT / "data_train/inputs"),
                "label_dir": str(ROOT / "data_train/labels"),
                "model_save_dir": save,
                "run": "lstm-demo",
                "device": "cpu",
            }
        )
        async with app.run_test(size=(100, 32)) as pilot:
            deadline = time.monotonic() + 30
            while app.screen.query("#dataset") and time.monotonic() < deadline:
                if getattr(app.screen, "dataset_sequences", None):
                    break
                await pilot.pause(0.1)
            await pilot.press("ctrl+s")
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                screen = app.screen
                if (
                    isinstance(screen, MonitorScreen)
                    and screen.view.folds.get(2)
                    and (screen.view.folds[2].epoch >= 12)
                ):
                    break
                await pilot.pause(0.2)
            await pilot.pause(1.2)
            app.save_screenshot(filename=out.name, path=str(out.parent))
            screen = app.screen
            if isinstance(screen, MonitorScreen):
                screen.action_stop()
            await pilot.pause(1.0)


if __name__ == "__main__":
    target = ROOT / "docs" / "monitor.svg"
    asyncio.run(shoot(target))
    print(f"wrote {target}")
