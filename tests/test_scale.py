"""Scaling out: folds side by side (--devices), torchrun fold-split and --ddp, all exact."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ENV, ROOT, tiny_args, write_sequences
from killrun import assert_same_run, events, kill_when, run, saved, start

from engine.distributed import rank_batches, rank_indices

TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]


@pytest.fixture
def data3(tmp_path: Path) -> tuple[Path, Path]:
    return write_sequences(tmp_path / "data", n=9)


def _args(data: tuple[Path, Path], save: Path, **extra: object) -> list[str]:
    return tiny_args(*data, save, model="lstm", k_folds=3, **extra)


def _reference(data: tuple[Path, Path], root: Path, epochs: int = 2) -> Path:
    res = run(["train", *_args(data, root, epochs=epochs)])
    assert res.returncode == 0, res.stderr
    return root / "r"


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        out += [int(k) for k in kids]
        todo += [int(k) for k in kids]
    return out


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def _worker_fold(pid: int) -> int | None:
    cmd = _cmdline(pid)
    return int(cmd[cmd.index("--fold") + 1]) if "_fold" in cmd and "--fold" in cmd else None


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def test_devices_cpu_cpu_equals_sequential_per_fold(
    data3: tuple[Path, Path], tmp_path: Path
) -> None:
    ref = _reference(data3, tmp_path / "ref")
    res = run(["train", *_args(data3, tmp_path / "par", devices="cpu,cpu")])
    assert res.returncode == 0, res.stderr
    par = tmp_path / "par" / "r"
    assert_same_run(ref, par, "lstm", folds=3)
    evs = events(par)
    assert [e["event"] for e in evs].count("run_started") == 1
    assert [e["event"] for e in evs].count("run_finished") == 1
    assert sorted(e["fold"] for e in evs if e["event"] == "fold_finished") == [1, 2, 3]
    # The CLI shows every fold, though two of them ran in other processes.
    assert all(f"fold {k} | Epoch 002" in res.stdout for k in (1, 2, 3))


def test_devices_parent_sigkill_then_resume_is_exact(
    data3: tuple[Path, Path], tmp_path: Path
) -> None:
    """The workers notice their parent died and stop; resume finishes in parallel."""
    ref = _reference(data3, tmp_path / "ref", epochs=4)
    save = tmp_path / "k"
    proc = start(["train", *_args(data3, save, epochs=4, devices="cpu,cpu")])
    workers: list[int] = []

    def ready(run_dir: Path) -> bool:
        workers[:] = [p for p in _descendants(proc.pid) if "_fold" in _cmdline(p)]
        return saved("last", 1, 2)(run_dir)

    kill_when(proc, save / "r", ready)
    deadline = time.monotonic() + 60
    while any(Path(f"/proc/{p}").exists() and _is_alive(p) for p in workers):
        assert time.monotonic() < deadline, "fold workers outlived their parent"
        time.sleep(0.05)
    res = run(["resume", str(save / "r"), "--devices", "cpu,cpu"])
    assert res.returncode == 0, res.stderr
    assert_same_run(ref, save / "r", "lstm", folds=3)


def _is_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_devices_a_failed_fold_does_not_stop_the_others(
    data3: tuple[Path, Path], tmp_path: Path
) -> None:
    ref = _reference(data3, tmp_path / "ref", epochs=4)
    save = tmp_path / "f"
    proc = start(["train", *_args(data3, save, epochs=4, devices="cpu,cpu")])
    deadline = time.monotonic() + 120
    while not saved("last", 1, 1)(save / "r"):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.01)
    fold1 = [p for p in _descendants(proc.pid) if _worker_fold(p) == 1]
    os.kill(fold1[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    manifest = json.loads((save / "r" / "run.json").read_text())
    assert manifest["status"] == "failed"
    assert [f["status"] for f in manifest["folds"]] == ["failed", "finished", "finished"]
    assert "killed by signal 9" in manifest["folds"][0]["error"]
    res = run(["resume", str(save / "r")])
    assert res.returncode == 0, res.stderr
    assert_same_run(ref, save / "r", "lstm", folds=3)


@pytest.mark.slow
def test_devices_sigint_stops_every_fold_resumable(
    data3: tuple[Path, Path], tmp_path: Path
) -> None:
    save = tmp_path / "s"
    proc = start(["train", *_args(data3, save, epochs=6, devices="cpu,cpu")])
    kill_when(proc, save / "r", saved("last", 2, 1), sig=signal.SIGINT)
    assert proc.returncode == 130
    manifest = json.loads((save / "r" / "run.json").read_text())
    assert manifest["status"] == "interrupted"
    assert manifest["config"]["devices"] == "cpu,cpu"
    assert "running" not in [f["status"] for f in manifest["folds"]]
    res = run(["resume", str(save / "r")])  # continues on the run's --devices
    assert res.returncode == 0, res.stderr
    ref = _reference(data3, tmp_path / "ref", epochs=6)
    assert_same_run(ref, save / "r", "lstm", folds=3)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _torchrun(args: list[str], *extra: str) -> subprocess.Popen[str]:
    # A free port each time: a fixed one collides with another job on the same machine.
    cmd = [*TORCHRUN, "--nproc_per_node", "2", "--master_port", str(_free_port()), *extra]
    return subprocess.Popen(
        [*cmd, "-m", "engine", *args],
        env=ENV,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _torchrun_args(args: list[str]) -> list[str]:
    # torchrun's parser takes --run for its own --run-path; --run_name is the same flag.
    return ["--run_name" if a == "--run" else a for a in args]


def test_torchrun_fold_split_equals_sequential(data3: tuple[Path, Path], tmp_path: Path) -> None:
    ref = _reference(data3, tmp_path / "ref")
    proc = _torchrun(["train", *_torchrun_args(_args(data3, tmp_path / "tr"))])
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    assert_same_run(ref, tmp_path / "tr" / "r", "lstm", folds=3)
    assert "finished" in out  # rank 0's summary


def test_ddp_sigkill_of_one_rank_restarts_and_resumes_exactly(
    data3: tuple[Path, Path], tmp_path: Path
) -> None:
    def args(save: Path) -> list[str]:
        return ["train", *_torchrun_args(tiny_args(*data3, save, model="lstm", epochs=4))]

    proc = _torchrun([*args(tmp_path / "ref"), "--ddp"])
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    ref = tmp_path / "ref" / "r"
    saves = [
        (e["fold"], e["epoch"], e["kind"]) for e in events(ref) if e["event"] == "checkpoint_saved"
    ]
    assert len(saves) == len(set(saves)) == 2 * 4 * 2  # rank 0 alone writes
    proc = _torchrun([*args(tmp_path / "kill"), "--ddp"])
    run_dir = tmp_path / "kill" / "r"
    deadline = time.monotonic() + 120
    while not saved("last", 1, 2)(run_dir):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.005)
    rank1 = [p for p in _descendants(proc.pid) if _environ(p).get("RANK") == "1"]
    os.kill(rank1[0], signal.SIGKILL)
    proc.communicate(timeout=240)
    assert proc.returncode != 0  # torchrun tore the job down
    # The whole job again, as a scheduler (or torchrun --max_restarts) would start it.
    proc = _torchrun(["resume", str(run_dir)])
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    assert any(e["event"] == "run_started" and e["resumed"] for e in events(run_dir))
    assert_same_run(ref, run_dir, "lstm", folds=2)


def test_rank_indices_deal_every_index_evenly() -> None:
    order = [5, 3, 0, 4, 1, 2, 6]
    parts = [rank_indices(order, 2, r) for r in range(2)]
    assert parts == [[5, 0, 1, 6], [3, 4, 2, 5]]
    assert rank_indices([1], 3, 2) == [1]


def test_rank_batches_bucket_a_step_together_and_match_in_number() -> None:
    # Three clusters of lengths; 2 ranks x batch 2 = 4 sequences a step.
    lengths = torch.tensor([50, 10, 11, 52, 30, 12, 31, 51, 29, 13, 33], dtype=torch.int64)

    def deal(batching: str) -> list[list[list[int]]]:
        # Every rank holds the same generator state (the fold's, from its checkpoint).
        return [
            rank_batches(lengths, 2, torch.Generator().manual_seed(3), batching, 2, r)
            for r in range(2)
        ]

    for batching in ("bucket", "shuffle"):
        ranks = deal(batching)
        assert ranks == deal(batching)  # the generator decides it all
        assert len(ranks[0]) == len(ranks[1]) == 3  # 11 sequences, 4 per step
        dealt = [i for batches in ranks for batch in batches for i in batch]
        assert set(dealt) == set(range(11)) and len(dealt) == 12  # a repeat pads the last step
        assert all(1 <= len(b) <= 2 for batches in ranks for b in batches)
    clusters = [{10, 11, 12, 13}, {29, 30, 31, 33}, {50, 51, 52}]
    steps = [{int(lengths[i]) for i in a + b} for a, b in zip(*deal("bucket"), strict=True)]
    assert sorted(steps, key=min) == clusters  # a step never pads 10 steps to 50


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ddp"], "--ddp trains each fold over the ranks of a torchrun job"),
        (["--devices", "gpu0"], "--devices: must be auto or a list"),
        (["--devices", "cuda:0,cpu"], "no CUDA device is available here"),
    ],
)
def test_scale_flags_fail_in_one_line(
    extra: list[str], message: str, tiny_data: tuple[Path, Path], tmp_path: Path
) -> None:
    if "cuda" in " ".join(extra) and shutil.which("nvidia-smi"):
        pytest.skip("a GPU is visible here")
    res = run(["train", *tiny_args(*tiny_data, tmp_path), *extra])
    assert res.returncode == 2
    assert message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
