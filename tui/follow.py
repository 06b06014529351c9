"""Tail a run folder's events.jsonl in a worker thread.

Each poll hands over *all* events that arrived since the last one in a single batch, so a
run that writes a thousand events a second costs the UI a handful of messages a second.
A half-written last line (the writer was killed mid-line, or is mid-write) is kept back
until it is complete.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.run import EVENTS_JSONL, lock_holder


@dataclass(frozen=True)
class FollowUpdate:
    events: list[dict[str, Any]]
    live_pid: int | None  # the process that holds the run, or None


class EventTail:
    """Reads complete new lines of a growing file; survives the file appearing late."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self._partial = b""

    def read_new(self) -> list[dict[str, Any]]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:  # replaced or truncated: start over
            self.offset, self._partial = 0, b""
        if size == self.offset:
            return []
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read(size - self.offset)
        self.offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()  # b"" when data ended with a newline
        out = []
        for raw in lines:
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except ValueError:
                continue  # a torn line from a killed writer: skip it, keep following
            if isinstance(obj, dict):
                out.append(obj)
        return out


class RunFollower:
    """Polls a run folder until ``stop`` is set; calls ``deliver`` with each batch."""

    def __init__(
        self,
        run_dir: Path,
        deliver: Callable[[FollowUpdate], None],
        stop: threading.Event,
        interval: float = 0.1,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.deliver = deliver
        self.stop = stop
        self.interval = interval
        self.tail = EventTail(self.run_dir / EVENTS_JSONL)

    def poll(self) -> FollowUpdate:
        return FollowUpdate(self.tail.read_new(), lock_holder(self.run_dir))

    def run(self) -> None:
        last_pid: int | None = -2  # forces a first delivery
        while not self.stop.is_set():
            update = self.poll()
            if update.events or update.live_pid != last_pid:
                self.deliver(update)
                last_pid = update.live_pid
            self.stop.wait(self.interval)
