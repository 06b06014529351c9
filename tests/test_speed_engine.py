"""The engine's speed settings: --threads applied and restored, checkpoints written off the
training thread without changing what lands on disk, --amp."""

from __future__ import annotations

import errno
import json
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import tiny_args

from engine import checkpoint as ck
from engine import threads as th
from engine.cli import build_parser
from engine.config import TrainConfig, config_from_args
from engine.kfold import start_run
from engine.resume import resume_run
from engine.saver import BackgroundSaver, snapshot


def _cfg(tiny_data: tuple[Path, Path], save: Path, **extra: Any) -> TrainConfig:
    args = ["train", *tiny_args(*tiny_data, save, **extra)]
    return config_from_args(build_parser().parse_args(args))


@pytest.mark.parametrize("threads", [1, 2])
def test_threads_flag_is_applied_during_the_run_and_restored_after(
    threads: int, tiny_data: tuple[Path, Path], tmp_path: Path
) -> None:
    seen: list[tuple[str, Any]] = []

    def listen(event: dict[str, Any]) -> None:
        if event["event"] == "run_started":
            seen.append(("event", event["threads"]))
        if event["event"] == "fold_started":  # emitted on the training thread
            seen.append(("torch", torch.get_num_threads()))

    before = torch.get_num_threads()
    cfg = _cfg(tiny_data, tmp_path, epochs=1, threads=threads)
    assert start_run(cfg, threading.Event(), listen).status == "finished"
    assert seen == [("event", threads), ("torch", threads), ("torch", threads)]
    assert torch.get_num_threads() == before


def test_auto_threads_count_usable_cpus_not_host_cores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(th.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(th, "cgroup_cpu_quota", lambda: None)
    assert th.usable_cpus() == 4
    assert th.resolve_threads(0) == 3  # one CPU left to the app and the rest
    assert th.resolve_threads(4) == 4
    monkeypatch.setattr(th, "cgroup_cpu_quota", lambda: 2.5)  # a 2.5-CPU container
    assert th.usable_cpus() == 2 and th.resolve_threads(0) == 1
    monkeypatch.setattr(th, "cgroup_cpu_quota", lambda: 0.5)
    assert th.usable_cpus() == 1 and th.resolve_threads(0) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert th.resolve_threads(0) == 3
    monkeypatch.undo()
    (tmp_path / "cpu.max").write_text("250000 100000\n")
    assert th.cgroup_cpu_quota(tmp_path) == 2.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert th.cgroup_cpu_quota(tmp_path) is None
    assert th.cgroup_cpu_quota(tmp_path / "absent") is None


def test_threads_flag_parses_validates_and_may_change_on_resume(
    tiny_data: tuple[Path, Path], tmp_path: Path
) -> None:
    assert TrainConfig().threads == 0
    cfg = _cfg(tiny_data, tmp_path, epochs=1, threads=2, model="mlp")
    assert cfg.threads == 2
    with pytest.raises(Exception, match="--threads"):
        TrainConfig(threads=-1)
    outcome = start_run(cfg, threading.Event())
    resumed = resume_run(outcome.folder, threading.Event(), overrides={"epochs": 2, "threads": 1})
    assert resumed.status == "finished"
    assert json.loads((outcome.folder / "run.json").read_text())["config"]["threads"] == 1


def test_saver_reraises_a_failed_write_on_the_training_thread() -> None:
    saver = BackgroundSaver()
    done: list[int] = []
    saver.submit(lambda: done.append(1))
    saver.submit(lambda: done.append(2))  # waits for the first: one write in flight
    saver.wait()
    assert done == [1, 2]

    def fail() -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    saver.submit(fail)
    with pytest.raises(OSError, match="No space"):
        saver.wait()
    saver.wait()  # the error is raised once


def test_snapshot_is_a_copy_that_later_steps_cannot_change() -> None:
    w = torch.ones(3)
    state = {"w": w, "nested": [w, ("x", 1)], "step": 5}
    copy = snapshot(state)
    w.add_(1)
    assert torch.equal(copy["w"], torch.ones(3)) and torch.equal(copy["nested"][0], torch.ones(3))
    assert copy["nested"][1] == ("x", 1) and copy["step"] == 5


def test_boundary_files_and_events_keep_their_order(
    tiny_data: tuple[Path, Path], tmp_path: Path
) -> None:
    outcome = start_run(_cfg(tiny_data, tmp_path, epochs=3), threading.Event())
    lines = (outcome.folder / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    per_epoch: dict[tuple[int, int], list[str]] = {}
    for e in events:
        if e["event"] in ("checkpoint_saved", "epoch_ended"):
            per_epoch.setdefault((e["fold"], e["epoch"]), []).append(e.get("kind", e["event"]))
    assert len(per_epoch) == 6
    for names in per_epoch.values():
        assert names[-2:] == ["last", "epoch_ended"] and names[0] in ("best", "last")
    for k in (1, 2):
        last = torch.load(outcome.folder / f"last_mlp_fold_{k}.pth", weights_only=True)
        assert last["epoch"] == 3 and len(last["progress"]["history"]) == 3


def test_a_failed_checkpoint_write_fails_the_run(
    tiny_data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(path: Path, payload: dict[str, Any], **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(ck, "save_checkpoint", full_disk)
    with pytest.raises(OSError, match="No space"):
        start_run(_cfg(tiny_data, tmp_path, epochs=2), threading.Event())
    manifest = json.loads((tmp_path / "r" / "run.json").read_text())
    assert manifest["status"] == "failed"


def test_amp_runs_the_model_under_bf16_autocast(
    tiny_data: tuple[Path, Path], tmp_path: Path
) -> None:
    args = ["train", *tiny_args(*tiny_data, tmp_path, epochs=1, model="gru"), "--amp"]
    cfg = config_from_args(build_parser().parse_args(args))
    assert cfg.amp
    outcome = start_run(cfg, threading.Event())
    assert outcome.status == "finished"
    assert outcome.manifest["summary"]["cv_mean"] is not None


def test_encoder_layer_computes_what_the_stock_layer_does() -> None:
    from torch import nn

    from engine.attention import EncoderLayer, _attention, keep_mask

    torch.manual_seed(0)
    stock = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(16, 2, 32, 0.1, batch_first=True), 2, enable_nested_tensor=False
    )
    ours = nn.TransformerEncoder(EncoderLayer(16, 2, 32, 0.1), 2, enable_nested_tensor=False)
    ours.load_state_dict(stock.state_dict())  # same parameters, same names
    x = torch.randn(3, 20, 16)
    pad = torch.arange(20)[None] >= torch.tensor([20, 11, 3])[:, None]
    stock.eval()
    ours.eval()
    with torch.no_grad():  # eval: the stock layer itself, fused path included
        assert torch.equal(stock(x, src_key_padding_mask=pad), ours(x, src_key_padding_mask=pad))
    mha = stock.layers[0].self_attn
    want = mha(x, x, x, key_padding_mask=pad, need_weights=False)[0]
    float_pad = torch.zeros(3, 20).masked_fill(pad, float("-inf"))
    for mask in (pad, float_pad):  # training attention with (almost) no dropout
        torch.testing.assert_close(_attention(mha, x, mask, 1e-12), want)
    dropped = 1 - keep_mask(torch.Size([400, 1000]), 0.1).float().mean().item()
    assert abs(dropped - 0.1) < 0.003
    # Training draws from the global generator, so a saved RNG state replays it exactly.
    ours.train()
    torch.manual_seed(5)
    a = ours(x, src_key_padding_mask=pad)
    torch.manual_seed(5)
    assert torch.equal(a, ours(x, src_key_padding_mask=pad))


def test_cpu_gru_matches_nn_gru_outputs_and_gradients() -> None:
    from torch import nn

    from engine.gru import MAX_BATCH, cpu_gru, use_cpu_gru

    torch.manual_seed(0)
    rnn = nn.GRU(3, 5, num_layers=2, batch_first=True).double()
    x = torch.randn(2, 9, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, *p: cpu_gru(rnn, x), (x, *rnn.parameters()))
    rnn = nn.GRU(4, 16, num_layers=2, batch_first=True)
    x = torch.randn(3, 40, 4)
    want, got = rnn(x)[0], cpu_gru(rnn, x)
    torch.testing.assert_close(got, want)
    w = torch.randn_like(want)
    for a, b in zip(
        torch.autograd.grad((want * w).sum(), list(rnn.parameters())),
        torch.autograd.grad((got * w).sum(), list(rnn.parameters())),
        strict=True,
    ):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
    # Only small-batch training on CPU takes it; eval, big batches and LSTMs do not.
    assert use_cpu_gru(rnn, x)
    assert not use_cpu_gru(rnn, torch.randn(MAX_BATCH + 1, 40, 4))
    assert not use_cpu_gru(nn.LSTM(4, 16, batch_first=True), x)
    with torch.no_grad():
        assert not use_cpu_gru(rnn, x)
    rnn.eval()
    assert not use_cpu_gru(rnn, x)
