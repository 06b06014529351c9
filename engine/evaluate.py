"""Score a run's fold models, or one checkpoint, and write predictions.

On the run's own data each fold's best model is scored on its own held-out fold: the
honest CV score, equal to the best val loss recorded in training. On other data every
fold model is scored on all of it, plus the ensemble (the mean of their predictions).
A fold whose ``best_`` checkpoint is missing or unreadable is left out and listed under
``missing``, each with a one-line message; the CLI then exits 1.
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
    # Folds of a run that cannot be scored: reported, never silently dropped, since a mean
    # over fewer folds is not the run's CV score.
    gaps: list[dict[str, Any]] = []
    k_folds: int | None = None
    if target.is_dir():
        folder = RunFolder(target)
        manifest = folder.read_manifest()
        cfg = TrainConfig.from_dict(manifest["config"])
        k_folds = len(manifest["folds"])
        entries = []
        for e in manifest["folds"]:
            path = folder.checkpoint("best", cfg.model, e["fold"])
            if path.exists():
                entries.append((e["fold"], path, e["val_stems"]))
            elif e.get("best_epoch") is None:
                gaps.append(_gap(e["fold"], path, f"not trained yet (no {path.name})"))
            else:
                gaps.append(_gap(e["fold"], path, f"{path.name} is missing"))
        if not entries and all(e.get("best_epoch") is None for e in manifest["folds"]):
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
    states = []
    for fold, path, val_stems in entries:
        try:
            states.append((fold, path, val_stems, _load_model_checkpoint(path)))
        except CheckpointError as exc:
            if k_folds is None:  # one file asked for by name: its error is the answer
                raise
            reason = str(exc).removeprefix(f"{path}: ").split(";")[0]
            gaps.append(_gap(fold, path, f"{path.name} is unreadable ({reason})"))
    gaps.sort(key=lambda g: g["fold"])
    if not states:
        raise RunError(
            f"{target}: no fold can be scored ({gaps[0]['problem']}); restore the best_ "
            "checkpoints from a backup or train the run again"
        )
    ds = load_dataset(
        cfg.input_dir if own_data else input_dir, cfg.label_dir if own_data else label_dir
    )
    dev = torch.device(device)
    scored: list[ScoredModel] = []
    for fold, path, val_stems, state in states:
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
        # The summary is over len(folds) of k_folds folds (k_folds is None for one file).
        "k_folds": k_folds,
        "missing": gaps,
    }


def _gap(fold: int, path: Path, problem: str) -> dict[str, Any]:
    """A fold left out of the scores, with the one line that says so."""
    return {
        "fold": fold,
        "file": path.name,
        "problem": problem,
        "message": f"fold {fold}: {problem}; left out of the mean",
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
