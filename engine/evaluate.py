"""Score a run's fold models, or one checkpoint, and write predictions.

On the run's own data each fold's best model is scored on its own held-out fold: the
honest CV score, equal to the best val loss recorded in training. On other data every
fold model is scored on all of it, plus the ensemble (the mean of their predictions).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine import checkpoint as ck
from engine.atomic import atomic_write_text
from engine.batches import SequenceSet, length_order
from engine.config import TrainConfig
from engine.data import Dataset, load_dataset
from engine.errors import CheckpointError, DataError, RunError, UserError
from engine.loss import ErrorSums, masked_error_sums
from engine.models import SequenceModel, build_model
from engine.run import RUN_JSON, RunFolder


@dataclass
class ScoredModel:
    name: str  # "fold 1", "ensemble", or a file name
    model: SequenceModel | None
    stems: list[str]  # the sequences it is scored on


def evaluate(
    target: Path | str,
    input_dir: str | None = None,
    label_dir: str | None = None,
    predictions: Path | str | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    target = Path(target)
    if (input_dir is None) != (label_dir is None):
        raise UserError("give both --input_dir and --label_dir, or neither")
    own_data = input_dir is None
    if target.is_dir():
        folder = RunFolder(target)
        manifest = folder.read_manifest()
        cfg = TrainConfig.from_dict(manifest["config"])
        entries = [
            (e["fold"], folder.checkpoint("best", cfg.model, e["fold"]), e["val_stems"])
            for e in manifest["folds"]
        ]
        entries = [e for e in entries if e[1].exists()]
        if not entries:
            raise RunError(f"{target}: no best_ checkpoints yet; train at least one epoch first")
    else:
        state = _load_model_checkpoint(target)
        cfg = TrainConfig.from_dict(state[ck.K_CONFIG])
        fold = int(state.get(ck.K_FOLD) or 0)
        val_stems = _val_stems_beside(target, fold) if own_data else None
        if own_data and val_stems is None:
            raise UserError(
                f"{target}: no run.json beside it to tell its held-out fold; give "
                "--input_dir and --label_dir to score it on data of your choice"
            )
        entries = [(fold, target, val_stems or [])]
    ds = load_dataset(
        cfg.input_dir if own_data else input_dir, cfg.label_dir if own_data else label_dir
    )
    dev = torch.device(device)
    scored: list[ScoredModel] = []
    for fold, path, val_stems in entries:
        state = _load_model_checkpoint(path)
        model = _restore_model(state, path, ds, dev)
        name = f"fold {fold}" if fold else path.name
        scored.append(ScoredModel(name, model, list(val_stems) if own_data else list(ds.stems)))
    if own_data:
        missing = sorted({s for m in scored for s in m.stems} - set(ds.stems))
        if missing:
            raise DataError(f"{cfg.input_dir}: the run's sequence {missing[0]} is gone; restore it")
    preds: dict[str, list[np.ndarray]] = {}
    rows = [_score(m, ds, cfg, dev, preds) for m in scored]
    ensemble = None
    if not own_data and len(scored) > 1:
        ensemble = _score_ensemble(ds, cfg, preds)
    summary = _summary(rows)
    if predictions is not None:
        _write_predictions(Path(predictions), preds, ds.label_columns)
    return {
        "target": str(target),
        "data": "own folds" if own_data else f"{input_dir} | {label_dir}",
        "model": cfg.model,
        "folds": rows,
        "summary": summary,
        "ensemble": ensemble,
        "predictions": str(predictions) if predictions is not None else None,
    }


def _load_model_checkpoint(path: Path) -> dict[str, Any]:
    return ck.require_training_checkpoint(ck.load_checkpoint(path), path)


def _val_stems_beside(path: Path, fold: int) -> list[str] | None:
    if not (path.parent / RUN_JSON).exists() or not fold:
        return None
    manifest = RunFolder(path.parent).read_manifest()
    for entry in manifest["folds"]:
        if entry["fold"] == fold:
            return list(entry["val_stems"])
    return None


def _restore_model(
    state: dict[str, Any], path: Path, ds: Dataset, device: torch.device
) -> SequenceModel:
    cfg = TrainConfig.from_dict(state[ck.K_CONFIG])
    meta = state.get(ck.K_DATA) or {}
    n_in, n_out = meta.get("n_features"), meta.get("n_targets")
    if n_in is not None and n_in != ds.n_features:
        raise CheckpointError(
            f"{path}: the model takes {n_in} input columns, the data has {ds.n_features}"
        )
    if n_out is not None and n_out != ds.n_targets:
        raise CheckpointError(
            f"{path}: the model predicts {n_out} label columns, the data has {ds.n_targets}"
        )
    model = build_model(cfg, ds.n_features, ds.n_targets)
    ck.restore_states(path, state, model)
    return model.to(device).eval()


@torch.no_grad()
def _score(
    m: ScoredModel,
    ds: Dataset,
    cfg: TrainConfig,
    device: torch.device,
    preds: dict[str, list[np.ndarray]],
) -> dict[str, Any]:
    assert m.model is not None
    sub = ds.subset(m.stems)
    data = SequenceSet(sub.inputs, sub.labels, cfg.max_seq_len)
    sums: ErrorSums | None = None
    for batch in data.batches(length_order(data.lengths), cfg.batch_size, device):
        out = m.model(batch.x, batch.mask)
        part = masked_error_sums(out, batch.y, batch.mask)
        if sums is None:
            sums = part
        else:
            sums += part
        for row, idx in enumerate(batch.indices):
            length = int(batch.lengths[row])
            preds.setdefault(sub.stems[idx], []).append(out[row, :length].float().cpu().numpy())
    assert sums is not None
    return {"name": m.name, "sequences": len(sub.stems), **sums.as_floats(cfg.alpha)}


def _score_ensemble(
    ds: Dataset, cfg: TrainConfig, preds: dict[str, list[np.ndarray]]
) -> dict[str, Any]:
    sq = ab = 0.0
    count = 0
    for stem, label in zip(ds.stems, ds.labels, strict=True):
        mean = np.mean(np.stack(preds[stem]), axis=0, dtype=np.float64)
        diff = mean - label[: cfg.max_seq_len]
        sq += float(np.square(diff).sum())
        ab += float(np.abs(diff).sum())
        count += diff.size
    mse, mae = sq / max(count, 1), ab / max(count, 1)
    return {
        "name": "ensemble",
        "sequences": len(ds.stems),
        "loss": cfg.alpha * mse + (1 - cfg.alpha) * mae,
        "mse": mse,
        "mae": mae,
    }


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("loss", "mse", "mae"):
        values = [r[key] for r in rows]
        out[f"{key}_mean"] = statistics.fmean(values)
        out[f"{key}_std"] = statistics.pstdev(values)
    return out


def _write_predictions(
    folder: Path, preds: dict[str, list[np.ndarray]], columns: tuple[str, ...]
) -> None:
    """One CSV per sequence (the mean over models where several scored it)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"{folder}: cannot create the predictions folder ({exc.strerror})"
        ) from None
    header = ",".join(columns)
    for stem, arrays in preds.items():
        mean = np.mean(np.stack(arrays), axis=0)
        lines = [header] + [",".join(f"{v:.7g}" for v in row) for row in mean]
        atomic_write_text(folder / f"{stem}.csv", "\n".join(lines) + "\n")
