"""Modal that asks for one or more paths (evaluate on other data, export predictions)."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static


class PathsScreen(ModalScreen[dict[str, str] | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, names: list[str], defaults: dict[str, Any]) -> None:
        super().__init__()
        self.title_text = title
        self.names = names
        self.defaults = defaults

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text)
            for name in self.names:
                yield Label(name)
                yield Input(str(self.defaults.get(name, "")), id=f"p-{name}")
            yield Static("enter accepts, escape cancels", classes="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        values = {n: self.query_one(f"#p-{n}", Input).value.strip() for n in self.names}
        missing = [n for n, v in values.items() if not v]
        if missing:
            self.notify(f"{missing[0]} is empty", severity="error")
            return
        self.dismiss(values)

    def action_cancel(self) -> None:
        self.dismiss(None)
