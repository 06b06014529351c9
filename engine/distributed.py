"""torchrun: a run's folds shared out over the ranks, or each fold data-parallel (``--ddp``).

``torchrun --nnodes N --nproc_per_node M -m engine train|resume ...`` on a filesystem every
rank sees. Rank 0 does all that a lone ``kfold train``/``resume`` does (checks, run folder,
run lock, ``run_started``, final status and CV summary). Once the folder is ready it
broadcasts its path (so every rank agrees on the run, and none races its creation) or the
one-line reason it could not start; then every rank trains its share, fold k on rank
(k-1) % world_size, writing that fold's files as a ``--devices`` worker would. A gather of
the ranks' outcomes and a barrier end the job.

With ``--ddp`` every rank trains every fold together under DistributedDataParallel: the
fold's batches come from its saved generator, identical on all ranks, and are dealt out
like ``DistributedSampler`` deals (padded to a multiple of the world size, rank r takes
every world_size-th index), so a resumed fold sees exactly the batches it would have.
``--batching bucket`` buckets world_size batches' worth at a time and deals each bucket,
so the ranks' batches of a step have similar lengths and none waits long for another.
Only rank 0 writes; every rank restores from the same ``last_`` checkpoint. Dropout draws
are reseeded per rank and epoch, so they do not depend on a torch RNG saved by one rank.
A job that torchrun restarts (``--max_restarts``) resumes the run rather than refusing
its existing name; relaunching with ``resume`` is the tested way back after a lost rank.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from engine.batches import bucketed_batches, chunked, shuffled_order
from engine.config import TrainConfig
from engine.data import Dataset
from engine.errors import ConfigError, RunError, UserError
from engine.fit import FoldTrainer, Interrupted, _zero_sums
from engine.folds import derive_seed
from engine.kfold import RunOutcome, load_training_data, start_run, train_entries
from engine.loss import ErrorSums, masked_error_sums
from engine.resume import resume_run
from engine.run import RUN_JSON, EventLog, Listener, RunFolder

# Ranks wait for each other's folds at the end; a fold may take days. A dead rank is
# noticed sooner: its sockets close and the collectives fail.
_TIMEOUT = timedelta(days=7)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def launched() -> bool:
    """Started by torchrun (or another launcher that sets the torch.distributed env)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def is_lead() -> bool:
    return rank() == 0


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def check_launch(cfg: TrainConfig) -> None:
    if cfg.ddp and not launched():
        raise ConfigError(
            "--ddp trains each fold over the ranks of a torchrun job: start it with "
            "`torchrun --nproc_per_node N -m engine train ... --ddp`"
        )
    if launched() and cfg.devices:
        raise ConfigError("--devices is for one process; under torchrun the ranks share folds")
    if cfg.devices:
        from engine.parallel import parse_devices

        parse_devices(cfg.devices)


def rank_device(cfg: TrainConfig) -> torch.device:
    if cfg.device != "cpu" and torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


class _Job:
    """The process group and the one message rank 0 sends before the folds start."""

    def __init__(self, cfg: TrainConfig) -> None:
        device = rank_device(cfg)
        backend = "nccl" if device.type == "cuda" else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend, timeout=_TIMEOUT)
        # One group for everything: a second one would, after a torchrun restart, find the
        # killed attempt's addresses under its name in the store and fail to connect.
        self.control: Any = None
        self.announced = False

    def announce(self, message: dict[str, Any]) -> None:
        self.announced = True
        dist.broadcast_object_list([message], src=0, group=self.control)

    def receive(self) -> dict[str, Any]:
        box: list[Any] = [None]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


_job: _Job | None = None


def start(cfg: TrainConfig, stop: threading.Event, listener: Listener | None) -> RunOutcome:
    """``kfold train``, alone or as one rank of a torchrun job."""
    check_launch(cfg)
    if not launched():
        return start_run(cfg, stop, listener)
    if not cfg.run:
        raise ConfigError(
            "under torchrun give --run_name NAME, so every rank and every restart of the job "
            "uses the same run folder"
        )

    def lead() -> RunOutcome:
        path = Path(cfg.with_absolute_paths().model_save_dir) / str(cfg.run)
        restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
        if restarted and (path / RUN_JSON).is_file():
            overrides = cfg.with_absolute_paths().to_dict()
            return resume_run(path, stop, listener, overrides)
        return start_run(cfg, stop, listener)

    return _as_rank(cfg, lead, stop)


def resume(
    run_dir: Path | str,
    stop: threading.Event,
    listener: Listener | None,
    overrides: dict[str, Any],
) -> RunOutcome:
    """``kfold resume``, alone or as one rank of a torchrun job."""
    manifest = RunFolder(run_dir).read_manifest()
    cfg = TrainConfig.from_dict({**manifest["config"], **overrides})
    check_launch(cfg)
    if not launched():
        return resume_run(run_dir, stop, listener, overrides)
    return _as_rank(cfg, lambda: resume_run(run_dir, stop, listener, overrides), stop)


def _as_rank(cfg: TrainConfig, lead: Callable[[], RunOutcome], stop: threading.Event) -> RunOutcome:
    global _job
    _job = job = _Job(cfg)
    try:
        if rank() == 0:
            try:
                outcome = lead()
            except BaseException as exc:
                if not job.announced:
                    text = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}"
                    job.announce({"error": text})
                raise
        else:
            outcome = _follow(job, stop)
        dist.barrier(group=job.control)
        return outcome
    finally:
        _job = None
        job.close()


def _follow(job: _Job, stop: threading.Event) -> RunOutcome:
    message = job.receive()
    if "error" in message:
        raise RunError(f"rank 0 could not start the run: {message['error']}")
    folder = RunFolder(message["path"])
    manifest = folder.read_manifest()
    cfg = TrainConfig.from_dict(manifest["config"])
    ds = load_training_data(cfg)
    if cfg.ddp:
        folder, events = _ReadOnlyFolder(folder.path), _NoEvents(folder.name)
    else:
        events = EventLog(folder.events_jsonl, folder.name)
    try:
        status = _train_share(folder, cfg, ds, manifest["folds"], events, stop)
    except Interrupted:
        status = "interrupted"
    finally:
        events.close()
    return RunOutcome(folder.path, status, folder.read_manifest())


def train_on_ranks(
    folder: RunFolder,
    cfg: TrainConfig,
    ds: Dataset,
    entries: list[dict[str, Any]],
    device: torch.device,
    events: EventLog,
    stop: threading.Event,
) -> str:
    """Rank 0's fold runner (see ``engine.kfold.train_entries``): the run is ready, so the
    other ranks may start; then this rank trains its own share."""
    if _job is None:
        raise RuntimeError("train_on_ranks runs only inside a torchrun job")
    if cfg.ddp:
        _check_world(folder)
    _job.announce({"path": str(folder.path)})
    return _train_share(folder, cfg, ds, entries, events, stop)


def _check_world(folder: RunFolder) -> None:
    seen = folder.read_manifest().get("ddp_world_size")
    if seen is not None and seen != world_size():
        raise ConfigError(
            f"this --ddp run trained on {seen} ranks; resume it on {seen} (now {world_size()}) "
            "so that it continues exactly"
        )
    folder.update_manifest(lambda m: m.update(ddp_world_size=world_size()))


def _train_share(
    folder: RunFolder,
    cfg: TrainConfig,
    ds: Dataset,
    entries: list[dict[str, Any]],
    events: EventLog,
    stop: threading.Event,
) -> str:
    """This rank's folds; then every rank learns how the others ended."""
    assert _job is not None
    device = rank_device(cfg)
    try:
        if cfg.ddp:
            local = train_entries(folder, cfg, ds, entries, device, events, stop, DDPFoldTrainer)
        else:
            mine = [e for e in entries if (e["fold"] - 1) % world_size() == rank()]
            local = train_entries(folder, cfg, ds, mine, device, events, stop)
    except Interrupted:
        local = "interrupted"
    outcomes: list[Any] = [None] * world_size()
    dist.all_gather_object(outcomes, local, group=_job.control)
    if "interrupted" in outcomes:
        raise Interrupted
    return "failed" if "failed" in outcomes else "finished"


def rank_indices(order: list[int], world: int, rank: int) -> list[int]:
    """``DistributedSampler``'s deal: padded with the first indices to a multiple of
    ``world`` so every rank takes the same number of steps, then every world-th index."""
    padded = order + order[: (-len(order)) % world]
    while len(padded) % world:  # fewer sequences than ranks
        padded += order[: world - len(padded) % world]
    return padded[rank::world]


def rank_batches(
    lengths: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
    batching: str,
    world: int,
    rank: int,
) -> list[list[int]]:
    """This rank's batches of an epoch; every rank gets the same number of them."""
    if batching == "shuffle":
        order = shuffled_order(len(lengths), generator)
        return chunked(rank_indices(order, world, rank), batch_size)
    groups = bucketed_batches(lengths, batch_size * world, generator)
    return [rank_indices(group, world, rank) for group in groups]


class DDPFoldTrainer(FoldTrainer):
    """One fold on every rank at once; only rank 0 writes checkpoints."""

    def _train_epoch(self) -> ErrorSums:
        cfg, p = self.cfg, self.progress
        ddp = getattr(self, "_ddp", None)
        if ddp is None:
            ids = [self.device.index] if self.device.type == "cuda" else None
            ddp = self._ddp = DistributedDataParallel(self.model, device_ids=ids)
        torch.manual_seed(derive_seed(cfg.seed, "ddp-dropout", p.fold, p.epoch + 1, rank()))
        ddp.train()
        groups = rank_batches(
            self.train_set.lengths,
            cfg.batch_size,
            self.generator,
            cfg.batching,
            world_size(),
            rank(),
        )
        sums = _zero_sums(self.device)
        for idx in groups:
            self._check_stop()
            batch = self.train_set.batch(idx, self.device)
            self.optimizer.zero_grad(set_to_none=True)
            pred = ddp(batch.x, batch.mask)
            batch_sums = masked_error_sums(pred, batch.y, batch.mask)
            batch_sums.hybrid(cfg.alpha).backward()
            self.optimizer.step()
            sums += ErrorSums(
                batch_sums.squared.detach(), batch_sums.absolute.detach(), batch_sums.count
            )
        # The epoch's train loss covers every rank's share, the same number on each rank.
        errors = torch.stack([sums.squared, sums.absolute])
        count = sums.count.clone()
        dist.all_reduce(errors)
        dist.all_reduce(count)
        return ErrorSums(errors[0], errors[1], count)

    def _check_stop(self) -> None:
        # Ranks stop at the same batch, or one would wait forever in the next all-reduce.
        assert _job is not None
        flag = torch.tensor([1 if self.stop.is_set() else 0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=_job.control)
        if flag.item():
            raise Interrupted

    def _persist(
        self, payloads: dict[str, dict[str, Any]], history: list[dict[str, Any]], ended: dict
    ) -> None:
        if rank() == 0:
            super()._persist(payloads, history, ended)


class _ReadOnlyFolder(RunFolder):
    """The run folder as ranks other than 0 see it under ``--ddp``: they read, never write."""

    def update_manifest(self, change: Any) -> dict[str, Any]:
        return self.read_manifest()

    def replace_fold_metrics(self, fold: int, rows: list[dict[str, Any]]) -> None:
        return None

    def drop_previous_copy(self, model: str, fold: int) -> None:
        return None


class _NoEvents(EventLog):
    def __init__(self, run: str) -> None:
        self.run, self.listener = run, None

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        return {"event": event, "run": self.run, **fields}

    def close(self) -> None:
        return None
