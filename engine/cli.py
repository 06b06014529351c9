"""``kfold``: train, resume, eval, inspect, ls (and, with no command, the terminal app).

The only engine module that may use rich. Every user-caused failure ends in one line on
stderr and exit code 2; a stop by signal ends with 128 + the signal number; an eval that
had to leave folds out prints its scores and exits 1. A run is given by path or by the
name `kfold ls` prints, looked up in --model_save_dir.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from engine.catalog import find_in_save_dir
from engine.config import TrainConfig, add_train_arguments, config_from_args
from engine.errors import NothingToDo, UserError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_SAVE_DIR = TrainConfig().model_save_dir
_RUN_HELP = (
    "a run folder, or a run name as `kfold ls` lists it "
    f"(looked up in --model_save_dir, default {_SAVE_DIR})"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kfold",
        description="Masked K-fold training of sequence models. With no command: the app, "
        "its train form pre-filled from any training flags given.",
    )
    add_train_arguments(parser, suppress=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = sub.add_parser("train", help="start a K-fold run")
    add_train_arguments(train)

    resume = sub.add_parser("resume", help="continue an interrupted run exactly")
    resume.add_argument("run_dir", metavar="RUN_DIR|NAME", help=_RUN_HELP)
    # Its --model_save_dir (from the training flags) only says where to look for RUN.
    add_train_arguments(resume, suppress=True)

    ev = sub.add_parser("eval", help="score a run's fold models or one checkpoint")
    ev.add_argument(
        "target", metavar="RUN_DIR|NAME|FILE", help=_RUN_HELP + ", or a .pth checkpoint"
    )
    _add_save_dir(ev)
    ev.add_argument("--input_dir", default=None, help="score on other data (with --label_dir)")
    ev.add_argument("--label_dir", default=None)
    ev.add_argument(
        "--predictions",
        default=None,
        metavar="OUT",
        help="write one CSV of predictions per sequence into this folder",
    )
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--json", action="store_true", help="print JSON instead of a table")

    ins = sub.add_parser("inspect", help="show what a checkpoint holds, loaded safely")
    ins.add_argument("file", help="a .pth file, or its path inside --model_save_dir")
    _add_save_dir(ins)
    ins.add_argument("--json", action="store_true")

    ls = sub.add_parser("ls", help="list the runs and loose checkpoints in a save folder")
    ls.add_argument("dir", nargs="?", default=None, help=f"the save folder ({_SAVE_DIR})")
    ls.add_argument("--model_save_dir", default=None, help="the same, as train spells it")
    ls.add_argument("--json", action="store_true")

    tui = sub.add_parser("tui", help="open the terminal app")
    add_train_arguments(tui, suppress=True)
    return parser


def _add_save_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model_save_dir",
        default=_SAVE_DIR,
        help="where names are looked up (a path that exists is taken as it is)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_fold"]:
        # A --devices worker, started by a `kfold train|resume` parent; not for people.
        from engine.parallel import worker_main

        return worker_main(argv[1:])
    args = build_parser().parse_args(argv)
    command = args.command or "tui"
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "train": _cmd_train,
        "resume": _cmd_resume,
        "eval": _cmd_eval,
        "inspect": _cmd_inspect,
        "ls": _cmd_ls,
        "tui": _cmd_tui,
    }
    try:
        return handlers[command](args)
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130
    except NothingToDo as exc:
        print(f"kfold: {exc}", file=sys.stderr)
        return exc.exit_code
    except UserError as exc:
        _fail(str(exc))
        return exc.exit_code
    except OSError as exc:
        from engine.atomic import describe_os_error

        _fail(describe_os_error(exc))
        return 1


def _fail(message: str) -> None:
    print(f"kfold: error: {message}", file=sys.stderr)


class _StopOnSignal:
    """SIGINT/SIGTERM/SIGHUP ask the engine to stop at the next batch; it keeps the last
    epoch boundary on disk and marks the run interrupted."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.signum = self.signum or signum
        self.event.set()

    def exit_code(self, status: str) -> int:
        if status == "interrupted":
            return 128 + (self.signum or signal.SIGINT)
        return 0 if status == "finished" else 1


def _cmd_train(args: argparse.Namespace) -> int:
    from engine import distributed

    cfg = config_from_args(args)
    stopper = _StopOnSignal()
    stopper.install()
    return _report(lambda listener: distributed.start(cfg, stopper.event, listener), stopper)


def _cmd_resume(args: argparse.Namespace) -> int:
    from engine import distributed

    # --model_save_dir is where to look for the run, not a setting to change: the run keeps
    # the one it was trained with.
    save_dir = getattr(args, "model_save_dir", _SAVE_DIR)
    run_dir = find_in_save_dir(args.run_dir, save_dir)
    skip = ("command", "run_dir", "model_save_dir")
    overrides = {k: v for k, v in vars(args).items() if k not in skip}
    stopper = _StopOnSignal()
    stopper.install()
    return _report(
        lambda listener: distributed.resume(run_dir, stopper.event, listener, overrides),
        stopper,
    )


def _report(train: Callable[[Any], Any], stopper: _StopOnSignal) -> int:
    """Progress and summary on the terminal; under torchrun only rank 0 reports."""
    from engine import distributed
    from engine.cli_progress import RichProgress

    if not distributed.is_lead():
        return stopper.exit_code(train(None).status)
    with RichProgress() as progress:
        outcome = train(progress.on_event)
    progress.print_summary(outcome.manifest, outcome.status)
    return stopper.exit_code(outcome.status)


def _cmd_eval(args: argparse.Namespace) -> int:
    from engine.cli_progress import print_eval
    from engine.evaluate import evaluate

    target = find_in_save_dir(args.target, args.model_save_dir, "run folder or checkpoint")
    result = evaluate(target, args.input_dir, args.label_dir, args.predictions, args.device)
    if args.json:
        print(json.dumps(result, indent=1))
        # stdout stays pure JSON (it holds the same notices under "missing").
        for gap in result["missing"]:
            print(gap["message"], file=sys.stderr)
    else:
        print_eval(result)
    # A mean over fewer than K folds is not the run's CV score: a script must notice.
    return 1 if result["missing"] else 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from engine.checkpoint import inspect_checkpoint
    from engine.cli_progress import print_inspect

    info = inspect_checkpoint(find_in_save_dir(args.file, args.model_save_dir, "file"))
    if args.json:
        print(json.dumps(info, indent=1, default=str))
    else:
        print_inspect(info)
    return 0


def _cmd_ls(args: argparse.Namespace) -> int:
    from engine.catalog import list_runs, loose_checkpoints
    from engine.cli_progress import print_runs

    if args.dir is not None and args.model_save_dir is not None and args.dir != args.model_save_dir:
        raise UserError(
            f"two save folders given ({args.dir} and --model_save_dir {args.model_save_dir}); "
            "give one"
        )
    root = Path(args.dir or args.model_save_dir or _SAVE_DIR)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder; give the save folder (--model_save_dir)")
    runs, loose = list_runs(root), loose_checkpoints(root)
    if args.json:
        out: dict[str, Any] = {
            "runs": [{**r.__dict__, "path": str(r.path)} for r in runs],
            "loose": [str(p) for p in loose],
        }
        print(json.dumps(out, indent=1, default=str))
    else:
        print_runs(root, runs, loose)
    return 0


def _cmd_tui(args: argparse.Namespace) -> int:
    """Hand the terminal over to ``python -m tui`` with the flags given: the engine never
    imports the app, and the app starts in a fresh interpreter that has not loaded torch."""
    if importlib.util.find_spec("tui") is None:
        build_parser().print_help()
        return 0
    flags: list[str] = []
    for key, value in vars(args).items():
        if key == "command" or value is None:
            continue
        if isinstance(value, bool):
            flags += [f"--{key}"] if value else []
        else:
            flags += [f"--{key}", str(value)]
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "tui", *flags])
    return 0  # pragma: no cover - execv does not return


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
