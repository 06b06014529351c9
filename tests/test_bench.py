"""The benchmark runs (``python -m bench --quick``), and the bare loop it measures the engine
against computes exactly what the engine's training step computes. No timing is checked."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import ENV, ROOT

from bench import app as bench_app
from bench.app import run_app_section, tail_like_the_app
from bench.check import same_loss_check
from bench.cli import QUICK_APP, build_parser
from bench.report import count, targets

MODELS = ("mlp", "lstm", "gru", "transformer")


@pytest.mark.parametrize("batching", ["bucket", "shuffle"])
@pytest.mark.parametrize("model", MODELS)
def test_engine_step_and_bare_loop_reach_the_same_loss(
    model: str, batching: str, tmp_path: Path
) -> None:
    result = same_loss_check(model, batching, tmp_path)
    assert result["batches"] > 1
    assert result["engine_loss"] == result["bare_loss"]
    assert result["same_weights"]


def test_quick_bench_runs_and_reports_every_section(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    res = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--threads", "1", "--json", str(out)],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert figures["machine"]["torch_threads"] == 1
    assert all(check["same"] for check in figures["same_loss"])
    rows = {(r["model"], r["batch_size"]) for r in figures["epochs"]}
    assert rows == {(m, b) for m in MODELS for b in (4, 32)}
    assert all(r["engine_s"] > 0 and r["seed_s"] > 0 and r["bare_s"] > 0 for r in figures["epochs"])
    assert all("checkpoint" in r for r in figures["epochs"] if r["batch_size"] == 4)
    assert figures["data"][0]["cached_s"] > 0
    app = figures["app"]
    assert app.get("skipped") == "app not available" or app["ratio"] > 0
    assert {t["target"] for t in figures["targets"]} >= {"mlp b4: engine/seed epoch"}
    assert "| target | measured | limit | met |" in res.stdout
    # At the quick sizes the targets do not apply: reported, never judged.
    assert figures["targets_judged"] is False
    assert all(t["met"] is None and not t["judged"] for t in figures["targets"])
    assert "n/a (quick)" in res.stdout and "**no**" not in res.stdout
    assert "judged only by a full `python -m bench`" in res.stdout
    assert "1 layer," in res.stdout and "1 layers" not in res.stdout
    assert "nested tensors" not in res.stderr


def test_targets_are_judged_only_when_asked() -> None:
    results = {
        "epochs": [{"model": "mlp", "batch_size": 32, "engine_vs_seed": 0.9, "engine_vs_bare": 1.0}]
    }
    judged = {t["target"]: t for t in targets(results)}
    assert judged["mlp b32: engine/seed epoch"]["met"] is False
    assert judged["mlp b32: engine/bare"]["met"] is True
    assert all(t["judged"] for t in judged.values())
    unjudged = targets(results, judged=False)
    assert [t["value"] for t in unjudged] == [t["value"] for t in judged.values()]
    assert all(t["met"] is None and not t["judged"] for t in unjudged)


def test_json_is_written_only_when_asked() -> None:
    assert build_parser().parse_args(["--quick"]).json is None


def test_counts_read_as_english() -> None:
    assert count(1, "layer") == "1 layer"
    assert count(2, "layer") == "2 layers"
    assert count(0, "followed run") == "0 followed runs"


def test_app_section_is_skipped_without_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench_app, "app_follower", lambda: None)
    logged: list[str] = []
    assert run_app_section(QUICK_APP, tmp_path, logged.append) == {"skipped": "app not available"}
    assert "app not available" in logged[0]


def test_app_section_times_a_run_alone_and_followed(tmp_path: Path) -> None:
    followed: list[Path] = []

    def follower(run_dir: Path, stop: threading.Event) -> None:
        followed.append(run_dir)
        tail_like_the_app(run_dir, stop, poll_s=0.02)

    result = run_app_section(QUICK_APP, tmp_path, lambda message: None, follower)
    assert len(followed) == QUICK_APP.rounds
    assert result["alone_s"] > 0 and result["with_app_s"] > 0 and result["ratio"] > 0
