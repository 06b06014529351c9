"""Modal with an evaluation's per-fold table, mean, std and ensemble."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label, Static

from tui.runview import fmt_loss


class EvalResultScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,enter,q", "close", "Close")]

    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__()
        self.result = result

    def compose(self) -> ComposeResult:
        r = self.result
        with Vertical(classes="dialog wide"):
            yield Label(f"eval {r['model']}: {r['target']}")
            yield Label(f"on {r['data']}")
            yield DataTable(id="eval-table", cursor_type="row")
            missing = r.get("missing") or []
            if missing:
                # One line: the mean above is not the run's CV score.
                folds = ", ".join(str(g["fold"]) for g in missing)
                which = f"fold{'s' if len(missing) > 1 else ''} {folds}"
                more = "; ..." if len(missing) > 1 else ""
                yield Label(
                    f"⚠ mean over {len(r['folds'])} of {r['k_folds']} folds; left out: "
                    f"{which} ({missing[0]['problem']}{more})",
                    markup=False,  # file names and torch's words, not markup
                    id="eval-missing",
                    classes="warning",
                )
            if r.get("predictions"):
                yield Label(f"predictions written to {r['predictions']}")
            yield Static("escape closes", classes="hint")

    def on_mount(self) -> None:
        table = self.query_one("#eval-table", DataTable)
        table.add_columns("model", "sequences", "loss", "mse", "mae")
        for row in self.result["folds"]:
            table.add_row(
                row["name"],
                str(row["sequences"]),
                fmt_loss(row["loss"]),
                fmt_loss(row["mse"]),
                fmt_loss(row["mae"]),
            )
        s = self.result["summary"]
        table.add_row(
            "mean", "", fmt_loss(s["loss_mean"]), fmt_loss(s["mse_mean"]), fmt_loss(s["mae_mean"])
        )
        table.add_row(
            "std", "", fmt_loss(s["loss_std"]), fmt_loss(s["mse_std"]), fmt_loss(s["mae_std"])
        )
        if self.result.get("ensemble"):
            e = self.result["ensemble"]
            table.add_row(
                "ensemble",
                str(e["sequences"]),
                fmt_loss(e["loss"]),
                fmt_loss(e["mse"]),
                fmt_loss(e["mae"]),
            )

    def action_close(self) -> None:
        self.dismiss(None)
