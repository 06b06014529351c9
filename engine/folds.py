"""Seeded K-fold assignment and per-fold seeds.

The assignment is made once, written into run.json, and read back by resume and eval,
so a folder that later gains files never reshuffles a run's folds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch


def assign_folds(stems: Sequence[str], k: int, seed: int) -> list[list[str]]:
    """Validation stems of each fold (fold 1 first): a seeded shuffle cut into k near-equal
    parts, the first ``n % k`` parts one longer (as scikit-learn's KFold does)."""
    ordered = sorted(stems)
    gen = torch.Generator().manual_seed(derive_seed(seed, "folds"))
    perm = torch.randperm(len(ordered), generator=gen).tolist()
    base, extra = divmod(len(ordered), k)
    folds, start = [], 0
    for i in range(k):
        size = base + (1 if i < extra else 0)
        folds.append(sorted(ordered[j] for j in perm[start : start + size]))
        start += size
    return folds


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed for one purpose (``"init", fold``...), independent of fold order, so a
    fold trains the same whether it runs first, last or in a process of its own."""
    text = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1
