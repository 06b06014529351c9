"""``python -m bench.app_probe RUN_DIR``: the kfold app, opened on a run's monitor screen,
as a person following a run sees it (the runs screen underneath, the monitor on top)."""

from __future__ import annotations

import sys
from pathlib import Path

import tui.app
from tui.app import KfoldApp


class MonitorApp(KfoldApp):
    # Textual resolves a relative CSS_PATH against the module of the class that sets it.
    CSS_PATH = str(Path(tui.app.__file__).with_name(KfoldApp.CSS_PATH))

    def __init__(self, run_dir: Path) -> None:
        super().__init__({"model_save_dir": str(run_dir.parent)})
        self.run_dir = run_dir

    def on_ready(self) -> None:
        # On Ready, not on Mount: Textual runs every class's on_mount, the base class's
        # (which pushes the runs screen) after this one's.
        self.open_monitor(self.run_dir)


if __name__ == "__main__":
    app = MonitorApp(Path(sys.argv[1]))
    app.run()
    sys.exit(app.return_code or 0)
