"""`kfold` in a real terminal (tmux, 100x30), driven with keys, read off the screen."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import ENV, ROOT

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Tmux:
    def __init__(self, command: str, cwd: Path, env: dict[str, str]) -> None:
        self.socket = f"kfold-test-{uuid.uuid4().hex[:8]}"
        self.env = env
        exports = " ".join(
            f"{k}={v}"
            for k, v in env.items()
            # The write delays too: a test that gives them means its run to take a while.
            if k in ("PYTHONPATH", "KFOLD_CACHE_DIR", "OMP_NUM_THREADS")
            or k.startswith("KFOLD_TEST_WRITE_DELAY")
        )
        self._tmux(
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "100",
            "-y",
            "30",
            "-c",
            str(cwd),
            f"env -u COLUMNS -u LINES TERM=xterm-256color {exports} {command}",
        )

    def _tmux(self, *args: str) -> str:
        res = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=30
        )
        return res.stdout

    def keys(self, *keys: str) -> None:
        for key in keys:  # one at a time: a burst can read as an escape sequence
            self._tmux("send-keys", "-t", "t", key)
            time.sleep(0.3)

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "t")

    def size(self) -> str:
        return self._tmux("display", "-p", "-t", "t", "#{window_width}x#{window_height}").strip()

    def wait_for(self, text: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.25)
        raise AssertionError(f"{text!r} never appeared; the screen was:\n{self.screen()}")

    def close(self) -> None:
        self._tmux("kill-server")


def test_a_person_trains_the_sample_data_for_one_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    save = tmp_path / "runs"
    command = (
        f"{sys.executable} -m engine --model_save_dir {save} --k_folds 2 "
        "--hidden_size 8 --max_seq_len 200"
    )
    term = Tmux(command, ROOT, {**ENV, "KFOLD_CACHE_DIR": os.environ["KFOLD_CACHE_DIR"]})
    try:
        form = term.wait_for("dataset: 48 sequences", timeout=60)
        assert term.size() == "100x30"
        assert "4 input columns (x0, x1, x2, x3) | 1 label column(s) (y)" in form
        assert "median 608, max 1196" in form
        assert "model_save_dir" in form and "Ready: ctrl+s starts the run" in form
        term.keys("Tab", "Tab", "Tab", "Tab", "1")  # focus epochs, replace 100 with 1
        screen = term.screen()
        assert "\n epochs          1\n" in screen, screen
        term.keys("C-s")
        screen = term.wait_for("status finished")
        assert "fold 1 finished" in screen and "fold 2 finished" in screen
        assert screen.count("epoch 1/1") == 2
        assert "CV val loss" in screen
        assert "device cpu" in screen
        assert "s Stop" in screen and "r Resume" in screen
        term.keys("Escape")
        runs = term.wait_for("1 run(s) in")
        assert "finished" in runs and "2/2" in runs
    finally:
        term.close()
    assert len(list(save.glob("*/best_mlp_fold_*.pth"))) == 2
