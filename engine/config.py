"""Every training setting in one frozen dataclass, built from argparse and validated.

The seed script's flags keep their names and defaults; ``--seed``, ``--device``,
``--patience``, ``--run``, ``--batching``, ``--threads`` and ``--amp`` are added.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import ConfigError

MODELS = ("mlp", "lstm", "gru", "transformer")
# bucket: sequences of similar length share a batch (little padding); shuffle: the seed's.
BATCHING = ("bucket", "shuffle")
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_RUN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

# Settings that `kfold resume` may change; every other difference is refused. Which device
# (or devices, side by side) trains a fold changes where it runs, not what it computes; the
# thread count belongs to the machine (bit-for-bit resume on CPU needs the same count).
RESUMABLE_CHANGES = ("epochs", "device", "devices", "threads")
_DEVICE_LIST_RE = re.compile(r"^(auto|(cpu|cuda(:\d+)?)(,(cpu|cuda(:\d+)?))*)$")


@dataclass(frozen=True)
class TrainConfig:
    model: str = "mlp"
    input_dir: str = "./data_train/inputs"
    label_dir: str = "./data_train/labels"
    batch_size: int = 4
    epochs: int = 100
    lr: float = 0.001
    hidden_size: int = 128
    nhead: int = 4
    num_layers: int = 2
    alpha: float = 0.7
    max_seq_len: int = 20 * 60 * 1
    k_folds: int = 5
    model_save_dir: str = "./model_checkpoints"
    seed: int = 0
    device: str = "auto"
    patience: int = 0
    run: str | None = None
    devices: str = ""  # folds side by side, one process per device ("" = one process)
    ddp: bool = False  # each fold data-parallel over the torchrun ranks
    batching: str = "bucket"
    threads: int = 0  # torch CPU threads; 0 = auto (usable CPUs less one, see threads.py)
    amp: bool = False  # bf16 autocast (meant for CUDA)

    def __post_init__(self) -> None:
        problems = validation_problems(self)
        if problems:
            field, reason = problems[0]
            raise ConfigError(f"--{field}: {reason}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def with_absolute_paths(self) -> TrainConfig:
        """Paths made absolute so that `resume` and `eval` work from any directory."""
        return self.replace(
            input_dir=str(Path(self.input_dir).expanduser().resolve()),
            label_dir=str(Path(self.label_dir).expanduser().resolve()),
            model_save_dir=str(Path(self.model_save_dir).expanduser().resolve()),
        )


def validation_problems(cfg: TrainConfig) -> list[tuple[str, str]]:
    """Every invalid setting as (flag name, reason); the app shows these beside fields."""
    problems: list[tuple[str, str]] = []

    def need(ok: bool, field: str, reason: str) -> None:
        if not ok:
            problems.append((field, reason))

    need(cfg.model in MODELS, "model", f"must be one of {', '.join(MODELS)}")
    for name in ("batch_size", "epochs", "hidden_size", "num_layers", "max_seq_len"):
        value = getattr(cfg, name)
        need(_is_int(value) and value >= 1, name, f"must be a whole number >= 1, got {value!r}")
    need(_is_int(cfg.k_folds) and cfg.k_folds >= 2, "k_folds", "must be a whole number >= 2")
    need(_is_int(cfg.patience) and cfg.patience >= 0, "patience", "must be >= 0 (0 = off)")
    need(_is_int(cfg.seed) and cfg.seed >= 0, "seed", "must be a whole number >= 0")
    need(_is_int(cfg.threads) and cfg.threads >= 0, "threads", "must be >= 0 (0 = auto)")
    need(cfg.batching in BATCHING, "batching", f"must be one of {', '.join(BATCHING)}")
    need(isinstance(cfg.amp, bool), "amp", f"must be true or false, got {cfg.amp!r}")
    need(_is_number(cfg.lr) and 0 < cfg.lr < 10, "lr", f"must be > 0 and < 10, got {cfg.lr!r}")
    need(
        _is_number(cfg.alpha) and 0 <= cfg.alpha <= 1,
        "alpha",
        f"must be between 0 and 1 (weight of MSE against MAE), got {cfg.alpha!r}",
    )
    need(
        isinstance(cfg.device, str) and bool(_DEVICE_RE.match(cfg.device)),
        "device",
        f"must be auto, cpu, cuda or cuda:N, got {cfg.device!r}",
    )
    need(
        isinstance(cfg.devices, str)
        and (not cfg.devices or bool(_DEVICE_LIST_RE.match(cfg.devices))),
        "devices",
        f"must be auto or a list like cuda:0,cuda:1 or cpu,cpu, got {cfg.devices!r}",
    )
    need(isinstance(cfg.ddp, bool), "ddp", f"must be true or false, got {cfg.ddp!r}")
    need(bool(str(cfg.input_dir).strip()), "input_dir", "must not be empty")
    need(bool(str(cfg.label_dir).strip()), "label_dir", "must not be empty")
    need(bool(str(cfg.model_save_dir).strip()), "model_save_dir", "must not be empty")
    need(
        cfg.run is None or bool(_RUN_NAME_RE.match(cfg.run)),
        "run",
        "may hold letters, digits, '.', '_' and '-' (max 128), starting with a letter or digit",
    )
    if cfg.model == "transformer" and _is_int(cfg.nhead) and _is_int(cfg.hidden_size):
        need(cfg.nhead >= 1, "nhead", "must be a whole number >= 1")
        need(
            cfg.nhead < 1 or cfg.hidden_size % cfg.nhead == 0,
            "nhead",
            f"hidden_size {cfg.hidden_size} must be divisible by nhead {cfg.nhead}",
        )
    return problems


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def add_train_arguments(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    """The seed's flags with their names and defaults, plus the engine's additions.

    With ``suppress`` no defaults are set, so only the flags given appear (for resume,
    which compares them against the run's settings)."""
    d = TrainConfig()

    def add(*flags: str, **kw: object) -> None:
        if suppress:
            kw["default"] = argparse.SUPPRESS
        elif kw.get("default") not in (None, "") and kw.get("default") is not False:
            # `kfold train --help` shows every default, as the seed script's users expect.
            kw["help"] = f"{kw.get('help') or ''} (default: {kw['default']})".strip()
        parser.add_argument(*flags, **kw)  # type: ignore[arg-type]

    add("--model", type=str, choices=MODELS, default=d.model)
    add("--input_dir", type=str, default=d.input_dir)
    add("--label_dir", type=str, default=d.label_dir)
    add("--batch_size", type=int, default=d.batch_size)
    add("--epochs", type=int, default=d.epochs)
    add("--lr", type=float, default=d.lr)
    add("--hidden_size", type=int, default=d.hidden_size)
    add("--nhead", type=int, default=d.nhead, help="attention heads (transformer only)")
    add("--num_layers", type=int, default=d.num_layers)
    add("--alpha", type=float, default=d.alpha, help="loss = alpha*MSE + (1-alpha)*MAE")
    add("--max_seq_len", type=int, default=d.max_seq_len, help="longer sequences are truncated")
    add("--k_folds", type=int, default=d.k_folds)
    add("--model_save_dir", type=str, default=d.model_save_dir)
    add("--seed", type=int, default=d.seed, help="seeds folds, init and shuffling")
    add("--device", type=str, default=d.device, help="auto, cpu, cuda or cuda:N")
    add("--patience", type=int, default=d.patience, help="early stopping epochs (0 = off)")
    # --run_name too: torchrun's own parser reads --run as an abbreviation of its --run-path.
    add(
        "--run",
        "--run_name",
        type=str,
        default=d.run,
        help="run folder name (default <model>-<time>)",
    )
    add(
        "--devices",
        type=str,
        default=d.devices,
        metavar="LIST",
        help="train folds side by side, one process per device: cuda:0,cuda:1 or cpu,cpu; "
        "auto = every visible GPU",
    )
    add("--ddp", action="store_true", default=d.ddp, help="under torchrun: each fold on all ranks")
    add(
        "--batching",
        type=str,
        choices=BATCHING,
        default=d.batching,
        help="bucket: similar lengths batched together (less padding); shuffle: plain shuffle",
    )
    add("--threads", type=int, default=d.threads, help="torch CPU threads (0 = auto)")
    add("--amp", action="store_true", default=d.amp, help="bf16 autocast (for CUDA)")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in names})


def config_differences(old: TrainConfig, new: TrainConfig) -> list[str]:
    """Human-readable `name: old -> new` for every setting that differs."""
    out = []
    for f in dataclasses.fields(TrainConfig):
        a, b = getattr(old, f.name), getattr(new, f.name)
        if a != b:
            out.append(f"{f.name}: {a!r} -> {b!r}")
    return out


def problems_for(values: dict[str, Any]) -> list[tuple[str, str]]:
    """Every problem of a set of values at once (``TrainConfig()`` stops at the first),
    for a form that shows each reason beside its field."""
    cfg = object.__new__(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        object.__setattr__(cfg, f.name, values.get(f.name, f.default))
    return validation_problems(cfg)
