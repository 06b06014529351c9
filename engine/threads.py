"""How many CPU threads torch may use for a run (``--threads``; 0 = auto).

torch's own default is every core of the host. Two things make that a poor default for
a run. It ignores a container's CPU quota and the process's affinity mask. And a run is
rarely alone on its machine: the app follows it, a shell runs, other jobs run. When a
torch thread loses its core, every parallel op waits for it at the barrier, so a run
with as many threads as cores slows down far more than its share: on a 2-core machine
with other work running, 2 threads trained 2-11x slower than 1 (measured for each of the
four models), while on an idle one 2 threads were at most ~1.5x faster. Auto therefore
counts the usable CPUs (affinity and cgroup quota) and leaves one of them to the rest of
the machine. ``OMP_NUM_THREADS`` or ``--threads N`` override it.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path

import torch


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        count = min(count, max(1, math.floor(quota)))
    return max(1, count)


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs' worth of time the cgroup allows (v2 ``cpu.max``, v1 CFS quota), or None."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    except (OSError, ValueError):
        return None


def resolve_threads(requested: int) -> int:
    """``requested`` if set, else ``OMP_NUM_THREADS`` if set, else one less than the
    usable CPUs (at least one)."""
    if requested > 0:
        return requested
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, usable_cpus() - 1)


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[int]:
    """Run with ``count`` intra-op threads, then restore the caller's setting (a run can
    be started in-process, e.g. by tests, and must not change the process for good)."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield count
    finally:
        torch.set_num_threads(before)
