"""Drive the real app headless: wait on conditions, never on fixed sleeps."""

from __future__ import annotations

import io
import time
from collections.abc import Callable

from rich.console import Console
from textual.pilot import Pilot


async def wait_for(
    pilot: Pilot[object],
    condition: Callable[[], bool],
    timeout: float = 90,
    what: str = "condition",
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def text_of(widget: object) -> str:
    """The plain text a Static shows, whatever it was given (str, Text, a rich Table)."""
    content = widget.content  # type: ignore[attr-defined]
    if isinstance(content, str):
        return content
    if hasattr(content, "plain"):
        return str(content.plain)
    console = Console(width=200, record=True, no_color=True, file=io.StringIO())
    console.print(content)
    return console.export_text()
