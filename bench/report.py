"""The machine header, the issue's targets checked against the figures, and the tables."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

import numpy as np
import torch

from engine.threads import usable_cpus

# engine epoch / seed-loop epoch, at batch 4 and 32 (issue 4).
SEED_TARGETS = {"mlp": 0.67, "transformer": 0.5, "lstm": 0.2, "gru": 0.2}
BARE_TARGET = 1.05  # engine / bare loop, at batch 32
BARE_TARGET_BATCH = 32
CACHED_SPEEDUP_TARGET = 20.0  # at 10,000 sequences
RSS_TARGET = 2.0  # peak RSS above the base, over the raw float32 size
CHECKPOINT_TARGET = 0.05  # writing last_, share of an epoch at the default batch size
APP_TARGET = 1.03


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "device": "cpu",
        "platform": platform.platform(),
        "load_avg_at_start": os.getloadavg()[0],
    }


# The targets are set for the full run's sizes; at --quick's tiny sizes fixed costs
# (Python overhead, a file write) dominate an epoch, so a quick run's ratios say nothing
# about them and judging them there would only mislead.
QUICK_NOTE = (
    "`--quick` is a smoke run at tiny sizes, where fixed costs dominate: the targets below "
    "are set for the full run's sizes and are judged only by a full `python -m bench`."
)


def targets(results: dict[str, Any], judged: bool = True) -> list[dict[str, Any]]:
    """Every target of the issue with its measured value and, when ``judged``, whether it
    is met (``met`` is None when not judged or not measured)."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, limit: float, at_most: bool = True) -> None:
        met = None
        if judged and value is not None:
            met = value <= limit if at_most else value >= limit
        out.append(
            {
                "target": name,
                "value": value,
                "limit": limit,
                "at_most": at_most,
                "judged": judged,
                "met": met,
            }
        )

    for row in results.get("epochs", []):
        m, b = row["model"], row["batch_size"]
        if m in SEED_TARGETS:
            add(f"{m} b{b}: engine/seed epoch", row["engine_vs_seed"], SEED_TARGETS[m])
    for row in results.get("epochs", []):
        if row["batch_size"] == BARE_TARGET_BATCH:
            name = f"{row['model']} b{BARE_TARGET_BATCH}: engine/bare"
            add(name, row["engine_vs_bare"], BARE_TARGET)
    for row in results.get("data", []):
        n = row["sequences"]
        add(f"{n} CSVs: cached speedup", row["cached_speedup"], CACHED_SPEEDUP_TARGET, False)
        add(f"{n} CSVs: peak RSS above base / raw", row["peak_over_base_vs_raw"], RSS_TARGET)
    for row in results.get("epochs", []):
        if "checkpoint" in row:
            share = row["checkpoint"]["write_share"]
            add(f"{row['model']}: last_ write / epoch", share, CHECKPOINT_TARGET)
    app = results.get("app")
    if app is not None:
        add("app following: epoch ratio", app.get("ratio"), APP_TARGET)
    return out


def render(results: dict[str, Any]) -> str:
    lines = [f"# kfold-tui bench: {results['command']}", ""]
    m = results["machine"]
    lines.append(
        f"Machine: {m['cpu']}, {count(m['usable_cpus'], 'usable CPU')}, torch {m['torch']} "
        f"with {count(m['torch_threads'], 'thread')}, device {m['device']}, Python {m['python']}; "
        f"1-minute load average {m['load_avg_at_start']:.1f} at the start"
        + (f", {results['load_avg_at_end']:.1f} at the end" if "load_avg_at_end" in results else "")
    )
    lines.append("")
    epochs = results.get("epochs", [])
    if epochs:
        plan = results["plans"]["epochs"]
        lines += [
            f"Epoch times, {_timed_epochs(plan['rounds'], plan['warmup'])}; generated sequences "
            f"of {plan['min_len']}-{plan['max_len']} steps, {count(plan['features'], 'feature')}, "
            f"20% for validation; models with hidden {plan['hidden_size']}, "
            f"{count(plan['num_layers'], 'layer')}, {count(plan['nhead'], 'head')}:",
            "",
            "| model | sequences | batch | engine s | seed s | bare s | engine/seed "
            "| engine/bare | padding bucket / shuffle | load |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in epochs:
            lines.append(
                f"| {r['model']} | {r['sequences']} | {r['batch_size']} | {r['engine_s']:.3f} "
                f"| {r['seed_s']:.3f} "
                f"| {r['bare_s']:.3f} | {r['engine_vs_seed']:.3f} | {r['engine_vs_bare']:.3f} "
                f"| {r['padding_bucket']:.0%} / {r['padding_shuffle']:.0%} | {r['load_avg']:.1f} |"
            )
        lines.append("")
        ck_rows = [r for r in epochs if "checkpoint" in r]
        if ck_rows:
            lines += [
                "Checkpoints (`last_`, default settings, share of the batch-4 engine epoch):",
                "",
                "| model | size MB | write ms | write share | snapshot ms (stall) | stall share |",
                "|---|---:|---:|---:|---:|---:|",
            ]
            for r in ck_rows:
                c = r["checkpoint"]
                lines.append(
                    f"| {r['model']} | {c['bytes'] / 1e6:.2f} | {c['write_s'] * 1e3:.1f} "
                    f"| {c['write_share']:.2%} | {c['snapshot_s'] * 1e3:.2f} "
                    f"| {c['stall_share']:.2%} |"
                )
            lines.append("")
    data = results.get("data", [])
    if data:
        lines += [
            "Data loads (each in a fresh process; median of alternating first/cached loads):",
            "",
            "| sequences | raw f32 MB | CSV MB | first s | cached s | speedup "
            "| base RSS MB | peak above base MB (first / cached) | peak / raw |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in data:
            lines.append(
                f"| {r['sequences']} | {r['raw_float32_bytes'] / 1e6:.1f} "
                f"| {r['csv_bytes'] / 1e6:.1f} | {r['first_s']:.2f} | {r['cached_s']:.3f} "
                f"| {r['cached_speedup']:.1f}x | {r['base_rss'] / 1e6:.0f} "
                f"| {r['peak_over_base_first'] / 1e6:.1f} / {r['peak_over_base_cached'] / 1e6:.1f} "
                f"| {r['peak_over_base_vs_raw']:.2f} |"
            )
        lines.append("")
    app = results.get("app")
    if app is not None:
        if "skipped" in app:
            lines += [f"App following a run: skipped ({app['skipped']}).", ""]
        else:
            lines += [
                f"App following a run ({app['model']}): median epoch {app['alone_s']:.3f}s alone, "
                f"{app['with_app_s']:.3f}s followed, ratio {app['ratio']:.3f}." + _app_cpu(app),
                "",
            ]
    checks = results.get("same_loss", [])
    if checks:
        same = all(c["same"] for c in checks)
        lines += [
            "Engine step vs bare loop on the same batches: "
            + ("identical losses and weights" if same else "DIFFERENT")
            + f" ({', '.join(c['model'] for c in checks)}).",
            "",
        ]
    if not results.get("targets_judged", True):
        lines += [QUICK_NOTE, ""]
    lines += ["| target | measured | limit | met |", "|---|---:|---:|---|"]
    for t in results.get("targets", []):
        value = "-" if t["value"] is None else f"{t['value']:.3f}"
        sign = "<=" if t["at_most"] else ">="
        met = {True: "yes", False: "**no**", None: "-"}[t["met"]]
        if not t.get("judged", True):
            met = "n/a (quick)"
        lines.append(f"| {t['target']} | {value} | {sign} {t['limit']} | {met} |")
    return "\n".join(lines) + "\n"


def command_line() -> str:
    return " ".join(["python -m bench", *sys.argv[1:]])


def _app_cpu(app: dict[str, Any]) -> str:
    cpu = app.get("app_cpu_s")
    if not cpu:
        return ""
    return (
        f" The app (real, on a 120x40 terminal) used {sum(cpu):.1f} CPU seconds"
        f" over {count(len(cpu), 'followed run')}."
    )


def count(n: int, noun: str) -> str:
    """``1 layer``, ``2 layers``: the report's figures come from user-chosen sizes."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _timed_epochs(rounds: int, warmup: int) -> str:
    timed = "one timed epoch each" if rounds == 1 else f"median of {rounds} alternating epochs"
    if warmup == 0:
        return f"{timed}, no warm-up"
    return f"{timed} after {count(warmup, 'warm-up epoch')}"
