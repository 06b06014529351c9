"""Atomic file writes, checkpoint payloads, safe loading and inspection.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads
with ``torch.load(path, weights_only=True)``: loading never unpickles arbitrary objects.
Both kinds hold ``model_state``, ``config``, ``fold``, ``epoch`` and ``val_loss``; ``last_``
adds what an exact resume needs (see ``engine.fit``).
"""

from __future__ import annotations

import contextlib
import re
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from engine.atomic import atomic_write, link_replace
from engine.errors import CheckpointError
from engine.run import previous_copy

FORMAT_VERSION = 1

# Checkpoint keys, shared by the writer (fit), the loader (resume, eval) and inspect.
K_FORMAT = "format_version"
K_KIND = "kind"
K_MODEL = "model"
K_MODEL_STATE = "model_state"
K_CONFIG = "config"
K_FOLD = "fold"
K_EPOCH = "epoch"
K_VAL_LOSS = "val_loss"
K_DATA = "data"  # n_features, n_targets, input_columns, label_columns
K_OPTIMIZER = "optimizer_state"
K_RNG = "rng"
K_PROGRESS = "progress"


def save_checkpoint(path: Path, payload: dict[str, Any], *, keep_previous: bool = False) -> None:
    """Atomic write; with ``keep_previous``, the file it replaces stays on as
    ``previous_copy(path)``, for a resume when this one is damaged later (bit rot, a
    truncating copy): replaying one epoch from there gives the same run."""
    if keep_previous:
        with contextlib.suppress(FileNotFoundError):
            link_replace(path, previous_copy(path))
    atomic_write(path, lambda fh: torch.save(payload, fh))


def load_checkpoint(path: Path | str) -> Any:
    """``torch.load(weights_only=True)`` with every failure turned into one line."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes); it holds no checkpoint")
    try:
        # torch warns about odd pickle protocols on stderr; the one-line error says enough.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad files; all mean "unreadable"
        with open(path, "rb") as fh:
            is_zip = fh.read(4) == b"PK\x03\x04"
        raise CheckpointError(f"{path}: {_explain_load_error(exc, is_zip)}") from None


def _explain_load_error(exc: Exception, is_zip: bool) -> str:
    text = " ".join(str(exc).split())
    found = re.search(r"GLOBAL (\S+)", text) or re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found:
        return (
            f"refused: it asks to import {found.group(1).rstrip('.')}, which could run code "
            "if unpickled; nothing in it was run (load it elsewhere only if you trust it)"
        )
    if "Weights only load failed" in text and not is_zip:
        return "not a PyTorch checkpoint (unknown or damaged bytes)"
    if is_zip or "central directory" in text or "zip archive" in text:
        return "truncated or corrupt PyTorch file; use another checkpoint (e.g. last_ or best_)"
    if isinstance(exc, EOFError):
        return "truncated (ended early); use another checkpoint"
    if "invalid load key" in text:
        return "not a PyTorch checkpoint (unknown format)"
    first = text.split(". ")[0][:160]
    return f"not a readable PyTorch checkpoint ({type(exc).__name__}: {first})"


def require_training_checkpoint(obj: Any, path: Path) -> dict[str, Any]:
    """The dict of one of our checkpoints, or a one-line error saying what it is instead."""
    if not isinstance(obj, dict) or K_MODEL_STATE not in obj or K_CONFIG not in obj:
        kind = classify(obj)
        raise CheckpointError(f"{path}: a {kind}, not a kfold checkpoint; it cannot be used here")
    return obj


def restore_states(
    path: Path,
    state: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
) -> None:
    """Load weights (and optimizer state) from a checkpoint, or say in one line why they
    do not fit: a checkpoint of another model, size or feature count."""
    try:
        model.load_state_dict(state[K_MODEL_STATE])
        if optimizer is not None:
            optimizer.load_state_dict(state[K_OPTIMIZER])
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        first = " ".join(str(exc).split())[:200]
        kind = type(model).__name__.lower()
        raise CheckpointError(f"{path}: does not fit this {kind} model ({first})") from None


def classify(obj: Any) -> str:
    if isinstance(obj, dict):
        if K_MODEL_STATE in obj and K_CONFIG in obj:
            return str(obj.get(K_KIND) or ("last" if K_OPTIMIZER in obj else "best"))
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return "plain state_dict"
        if isinstance(obj.get("state_dict"), dict) or isinstance(obj.get("model"), dict):
            return "foreign training checkpoint"
    if isinstance(obj, torch.Tensor):
        return "single tensor"
    return f"other ({type(obj).__name__})"


def _tensor_dict(obj: Any) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in (K_MODEL_STATE, "state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, dict) and any(isinstance(v, torch.Tensor) for v in inner.values()):
                return {str(k): v for k, v in inner.items() if isinstance(v, torch.Tensor)}
        return {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if isinstance(obj, torch.Tensor):
        return {"<tensor>": obj}
    return {}


def inspect_checkpoint(path: Path | str) -> dict[str, Any]:
    """What a browser shows about a file, as plain JSON-able values. Raises CheckpointError."""
    path = Path(path)
    obj = load_checkpoint(path)
    stat = path.stat()
    tensors = _tensor_dict(obj)
    info: dict[str, Any] = {
        "path": str(path),
        "size_bytes": stat.st_size,
        "modified": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stat.st_mtime)),
        "kind": classify(obj),
        "model": None,
        "fold": None,
        "epoch": None,
        "val_loss": None,
        "config": None,
        "tensor_count": len(tensors),
        "parameter_count": int(sum(t.numel() for t in tensors.values())),
        "tensors": [
            {"name": k, "shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")}
            for k, v in tensors.items()
        ],
        "other_keys": [],
    }
    if isinstance(obj, dict):
        if K_MODEL_STATE in obj and K_CONFIG in obj:
            cfg = obj[K_CONFIG] if isinstance(obj[K_CONFIG], dict) else {}
            info.update(
                model=obj.get(K_MODEL, cfg.get("model")),
                fold=obj.get(K_FOLD),
                epoch=obj.get(K_EPOCH),
                val_loss=obj.get(K_VAL_LOSS),
                config=cfg,
            )
            progress = obj.get(K_PROGRESS)
            if isinstance(progress, dict):
                info["best_val_loss"] = progress.get("best_val_loss")
                info["best_epoch"] = progress.get("best_epoch")
                info["finished"] = progress.get("finished")
        else:
            info["other_keys"] = sorted(
                str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)
            )
    return info
