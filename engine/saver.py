"""Epoch-boundary files written on a worker thread, so training does not wait on the disk.

The training thread takes a snapshot (copies of every tensor, so the next optimizer step
cannot change what is being written) and hands the writing to one worker thread. At most
one write is in flight: the next submit, and the end of a fold, wait for it. So files
land in order, memory holds at most one extra copy of the state, and a fold that ends,
stops or fails returns only once its last epoch is on disk. A SIGKILL during a write
leaves the previous ``last_`` in place (writes are atomic), and resume starts from it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch


class BackgroundSaver:
    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` on the worker thread after the previous job has finished."""
        self.wait()

        def work() -> None:
            try:
                job()
            except BaseException as exc:  # re-raised on the training thread by wait()
                self._error = exc

        # Not a daemon: the interpreter must not exit halfway through a checkpoint.
        self._thread = threading.Thread(target=work, name="kfold-saver")
        self._thread.start()

    def wait(self) -> None:
        """Block until the job in flight is done; raise its error, if it failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def snapshot(obj: Any) -> Any:
    """``obj`` with every tensor copied to the CPU (detached); dicts, lists and tuples are
    rebuilt, other values kept. On CUDA this is the epoch's only device-to-host copy."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [snapshot(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(snapshot(v) for v in obj)
    return obj
