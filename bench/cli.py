"""``python -m bench [--quick]``: the engine against the seed's loop and a bare loop.

Sections (issue 4): ``epochs`` (engine vs the seed's loop and vs the bare loop, per model
and batch size, with the ``last_`` checkpoint cost), ``data`` (first and cached loads of
2,000 and 10,000 CSV sequences, peak memory), ``app`` (epoch time with the terminal app
following the run). Before them, a check that the engine's training step and the bare
loop reach the same loss on the same batches. Prints a Markdown table and, with ``--json
FILE``, writes the same figures as JSON. ``--quick`` (tiny models and data, under a
minute) is the smoke test; it reports the targets without judging them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from bench.app import AppPlan, run_app_section
from bench.check import same_loss_check
from bench.dataload import run_dataload
from bench.epochs import EpochPlan, run_epochs, stderr_log
from bench.report import command_line, machine, render, targets
from engine.config import MODELS
from engine.threads import resolve_threads

SECTIONS = ("epochs", "data", "app")
QUICK_EPOCHS = EpochPlan(
    sequences=tuple((m, 10) for m in MODELS),
    features=4,
    max_len=400,
    rounds=1,
    warmup=0,
    hidden_size=16,
    num_layers=1,
    nhead=2,
    checkpoint_repeats=1,
)
QUICK_APP = AppPlan(
    model="mlp",
    sequences=8,
    epochs=2,
    rounds=1,
    extra_args=("--hidden_size", "8", "--num_layers", "1"),
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny smoke run, under a minute")
    p.add_argument("--json", default=None, help="also write the figures as JSON to this file")
    p.add_argument("--table", default=None, help="also write the Markdown table here")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = auto, as kfold)")
    p.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated sections")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated models")
    p.add_argument("--sequences", type=int, default=None, help="sequences per model (epochs)")
    p.add_argument("--rounds", type=int, default=None, help="timed epochs per contender")
    p.add_argument("--data-sizes", default=None, help="comma-separated CSV counts to load")
    p.add_argument("--workdir", default=None, help="scratch folder (default: a temp folder)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        build_parser().error(f"--sections: unknown {', '.join(sorted(unknown))}")
    torch.set_num_threads(resolve_threads(args.threads))
    epoch_plan = QUICK_EPOCHS if args.quick else EpochPlan()
    epoch_plan = dataclasses.replace(
        epoch_plan,
        models=tuple(args.models.split(",")),
        sequences=tuple((m, args.sequences) for m in MODELS)
        if args.sequences
        else epoch_plan.sequences,
        rounds=args.rounds or epoch_plan.rounds,
    )
    sizes = (100,) if args.quick else (2000, 10000)
    if args.data_sizes:
        sizes = tuple(int(n) for n in args.data_sizes.split(","))
    app_plan = QUICK_APP if args.quick else AppPlan()
    results: dict[str, Any] = {
        "command": command_line(),
        "machine": machine(),
        "plans": {"epochs": dataclasses.asdict(epoch_plan), "app": dataclasses.asdict(app_plan)},
    }
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="kfold-bench-", dir=args.workdir))
    try:
        stderr_log("check: engine step vs bare loop on the same batches")
        results["same_loss"] = [same_loss_check(m, workdir=work) for m in epoch_plan.models]
        if "epochs" in sections:
            stderr_log("epochs: engine, seed loop (baseline), bare loop")
            results["epochs"] = run_epochs(epoch_plan, work / "epochs", stderr_log)
        if "data" in sections:
            stderr_log("data: first and cached loads")
            results["data"] = run_dataload(sizes, 6, 1 if args.quick else 3, work, stderr_log)
        if "app" in sections:
            stderr_log("app: a run alone and followed")
            results["app"] = run_app_section(app_plan, work / "app", stderr_log)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["seconds"] = time.perf_counter() - started
    results["load_avg_at_end"] = os.getloadavg()[0]
    results["targets_judged"] = not args.quick
    results["targets"] = targets(results, judged=results["targets_judged"])
    table = render(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    if args.table:
        Path(args.table).write_text(table)
    print(table)
    stderr_log(
        f"done in {results['seconds']:.0f}s; "
        + (f"figures in {args.json}" if args.json else "--json FILE keeps the figures")
    )
    return 0 if all(c["same"] for c in results["same_loss"]) else 1
