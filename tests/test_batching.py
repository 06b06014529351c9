"""Length-bucketed batching: a permutation per epoch, replayable from the generator, less
padding than the seed's shuffle, on by default, and exact across a stop and resume."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import tiny_args

from engine.batches import (
    bucketed_batches,
    chunked,
    epoch_batches,
    length_order,
    shuffled_order,
)
from engine.cli import build_parser
from engine.config import TrainConfig, config_from_args
from engine.errors import ConfigError
from engine.kfold import start_run
from engine.resume import resume_run


def _lengths(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(100, 1201, (n,), generator=torch.Generator().manual_seed(seed))


def _padding(lengths: torch.Tensor, batches: list[list[int]]) -> float:
    computed = sum(int(lengths[b].max()) * len(b) for b in batches)
    return 1 - int(lengths.sum()) / computed


@pytest.mark.parametrize(("n", "batch_size"), [(1, 4), (3, 4), (10, 3), (64, 4), (1000, 8)])
def test_each_epoch_is_a_permutation_in_full_batches(n: int, batch_size: int) -> None:
    lengths, gen = _lengths(n), torch.Generator().manual_seed(1)
    for _ in range(3):  # several epochs from one generator
        batches = bucketed_batches(lengths, batch_size, gen)
        assert sorted(i for b in batches for i in b) == list(range(n))
        assert sum(len(b) < batch_size for b in batches) <= 1
        assert all(0 < len(b) <= batch_size for b in batches)


def test_batches_replay_from_the_generator_state() -> None:
    lengths = _lengths(500)
    a, b = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    for _ in range(2):
        assert bucketed_batches(lengths, 8, a) == bucketed_batches(lengths, 8, b)
    assert torch.equal(a.get_state(), b.get_state())
    # Restoring a saved state (what resume does) replays the next epoch.
    saved = a.get_state()
    expected = bucketed_batches(lengths, 8, a)
    c = torch.Generator()
    c.set_state(saved)
    assert bucketed_batches(lengths, 8, c) == expected
    assert bucketed_batches(lengths, 8, torch.Generator().manual_seed(8)) != expected


def test_buckets_group_similar_lengths_and_still_vary_between_epochs() -> None:
    lengths, gen = _lengths(2000), torch.Generator().manual_seed(0)
    for batch_size in (4, 32):
        bucketed = bucketed_batches(lengths, batch_size, gen)
        shuffled = chunked(shuffled_order(len(lengths), gen), batch_size)
        assert _padding(lengths, bucketed) < 0.05 < 0.3 < _padding(lengths, shuffled)
        spans = [int(lengths[b].max() - lengths[b].min()) for b in bucketed]
        assert max(spans) < 200  # lengths span 1100 steps in all
    one = {frozenset(b) for b in bucketed_batches(lengths, 4, gen)}
    two = {frozenset(b) for b in bucketed_batches(lengths, 4, gen)}
    assert len(one & two) < len(one) // 2  # sequences meet new neighbours each epoch


def test_shuffle_mode_is_the_seeds_plain_shuffle() -> None:
    lengths = _lengths(50)
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert epoch_batches(lengths, 4, a, "shuffle") == chunked(shuffled_order(50, b), 4)
    assert epoch_batches(lengths, 4, a, "bucket") == bucketed_batches(lengths, 4, b)


def test_length_order_is_sorted_and_stable() -> None:
    lengths = torch.tensor([5, 3, 5, 1, 3])
    assert length_order(lengths) == [3, 1, 4, 0, 2]


def test_bucketing_is_the_default_and_shuffle_a_flag() -> None:
    assert TrainConfig().batching == "bucket"
    parser = build_parser()
    assert config_from_args(parser.parse_args(["train"])).batching == "bucket"
    assert config_from_args(parser.parse_args(["train", "--batching", "shuffle"])).batching == (
        "shuffle"
    )
    with pytest.raises(ConfigError, match="--batching"):
        TrainConfig(batching="sorted")


def _cfg(tiny_data: tuple[Path, Path], save: Path, **extra: Any) -> TrainConfig:
    args = build_parser().parse_args(["train", *tiny_args(*tiny_data, save, epochs=3, **extra)])
    return config_from_args(args)


def _states(run_dir: Path, model: str) -> list[dict[str, Any]]:
    return [
        torch.load(run_dir / f"{kind}_{model}_fold_{k}.pth", weights_only=True)
        for kind in ("best", "last")
        for k in (1, 2)
    ]


@pytest.mark.parametrize("batching", ["bucket", "shuffle"])
def test_stop_and_resume_equals_an_uninterrupted_run(
    batching: str, tiny_data: tuple[Path, Path], tmp_path: Path
) -> None:
    cfg = _cfg(tiny_data, tmp_path / "ref", batching=batching, model="lstm")
    ref = start_run(cfg, threading.Event())
    assert ref.status == "finished"
    stop = threading.Event()

    def stop_after_epoch_2(event: dict[str, Any]) -> None:
        if event["event"] == "epoch_ended" and event["epoch"] == 2:
            stop.set()

    cut_cfg = cfg.replace(model_save_dir=str(tmp_path / "cut"))
    cut = start_run(cut_cfg, stop, stop_after_epoch_2)
    assert cut.status == "interrupted"
    assert resume_run(cut.folder, threading.Event()).status == "finished"
    for a, b in zip(_states(ref.folder, "lstm"), _states(cut.folder, "lstm"), strict=True):
        assert a["epoch"] == b["epoch"] and a["val_loss"] == b["val_loss"]
        for key, tensor in a["model_state"].items():
            assert torch.equal(tensor, b["model_state"][key]), key


def test_resume_refuses_another_batching(tiny_data: tuple[Path, Path], tmp_path: Path) -> None:
    cfg = _cfg(tiny_data, tmp_path, model="mlp")
    outcome = start_run(cfg.replace(epochs=1), threading.Event())
    with pytest.raises(ConfigError, match="batching: 'bucket' -> 'shuffle'"):
        resume_run(outcome.folder, threading.Event(), overrides={"batching": "shuffle"})
