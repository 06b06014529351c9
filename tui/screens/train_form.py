"""The train form: every engine setting, checked as typed, with a live dataset summary."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, Select, Static
from textual.worker import get_current_worker

from engine.config import MODELS, TrainConfig, problems_for
from tui import process

if TYPE_CHECKING:
    from tui.app import KfoldApp

# (flag, kind, help). Order is the form's order; kind drives parsing.
FIELDS: tuple[tuple[str, str, str], ...] = (
    ("model", "select", "mlp, lstm, gru or transformer"),
    ("input_dir", "text", "one file per sequence"),
    ("label_dir", "text", "paired with inputs by file name"),
    ("model_save_dir", "text", "runs are created in here"),
    ("epochs", "int", ""),
    ("batch_size", "int", ""),
    ("lr", "float", "Adam learning rate"),
    ("hidden_size", "int", ""),
    ("num_layers", "int", ""),
    ("nhead", "int", "attention heads"),
    ("alpha", "float", "alpha*MSE + (1-alpha)*MAE"),
    ("max_seq_len", "int", "longer sequences are cut"),
    ("k_folds", "int", ""),
    ("seed", "int", ""),
    ("patience", "int", "early stopping, 0 = off"),
    ("device", "text", "auto, cpu, cuda, cuda:N"),
    ("devices", "list", "folds side by side: cuda:0,cuda:1"),
    ("run", "text", "blank: <model>-<date>-<time>"),
)
DATA_FIELDS = ("input_dir", "label_dir")


def parse_field(kind: str, text: str) -> tuple[Any, str | None]:
    """(value, reason it is invalid or None)."""
    text = text.strip()
    if kind == "int":
        try:
            return int(text), None
        except ValueError:
            return text, "must be a whole number"
    if kind == "float":
        try:
            return float(text), None
        except ValueError:
            return text, "must be a number"
    # "text" fields fall back to their default when blank; a "list" stays an empty list.
    return (text or None) if kind == "text" else text, None


class TrainFormScreen(Screen[None]):
    BINDINGS = [
        Binding("ctrl+s", "start", "Start", priority=True),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.dataset_sequences: int | None = None
        self.dataset_error: str | None = None

    @property
    def kapp(self) -> KfoldApp:
        return self.app  # type: ignore[return-value]

    def initial_values(self) -> dict[str, Any]:
        values = TrainConfig().to_dict()
        values.update(self.kapp.prefill)
        values["model_save_dir"] = str(self.kapp.save_dir)
        return values

    def compose(self) -> ComposeResult:
        values = self.initial_values()
        yield Header()
        with VerticalScroll(id="form"):
            for name, kind, hint in FIELDS:
                with Horizontal(classes="field", id=f"row-{name}"):
                    yield Label(name, classes="field-name")
                    if kind == "select":
                        yield Select(
                            [(m, m) for m in MODELS],
                            value=values[name],
                            allow_blank=False,
                            id=f"f-{name}",
                            compact=True,
                        )
                    else:
                        value = values.get(name)
                        text = "" if value is None else str(value)
                        yield Input(text, id=f"f-{name}", placeholder=hint, compact=True)
                    yield Label(hint, id=f"why-{name}", classes="why")
            yield Static("dataset: reading...", id="dataset")
            yield Static("", id="form-status")
            yield Button("Start (ctrl+s)", id="start", variant="success")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#f-model").focus()
        self.refresh_checks()
        self.reload_dataset()

    def reload_dataset(self) -> None:
        self.load_dataset(
            self.query_one("#f-input_dir", Input).value, self.query_one("#f-label_dir", Input).value
        )

    def values(self) -> tuple[dict[str, Any], dict[str, str]]:
        out: dict[str, Any] = {}
        reasons: dict[str, str] = {}
        for name, kind, _ in FIELDS:
            if kind == "select":
                out[name] = self.query_one(f"#f-{name}", Select).value
                continue
            value, why = parse_field(kind, self.query_one(f"#f-{name}", Input).value)
            out[name] = value
            if why:
                reasons[name] = why
        for name, why in problems_for(out):
            reasons.setdefault(name, why)
        if self.dataset_error:
            reasons.setdefault("input_dir", "see the dataset line below")
        elif (
            self.dataset_sequences is not None
            and isinstance(out["k_folds"], int)
            and (out["k_folds"] > self.dataset_sequences)
        ):
            reasons.setdefault("k_folds", f"only {self.dataset_sequences} sequences")
        if (
            out.get("run")
            and (
                Path(str(out["model_save_dir"])).expanduser() / str(out["run"]) / "run.json"
            ).exists()
        ):
            reasons.setdefault("run", "a run of this name exists; choose another")
        return out, reasons

    def refresh_checks(self) -> dict[str, str]:
        values, reasons = self.values()
        self.query_one("#row-nhead").display = values["model"] == "transformer"
        for name, _, hint in FIELDS:
            label = self.query_one(f"#why-{name}", Label)
            label.update(f"✗ {reasons[name]}" if name in reasons else hint)
            label.set_class(name in reasons, "invalid")
        status = self.query_one("#form-status", Static)
        if reasons:
            first = next(iter(reasons.items()))
            status.update(f"Cannot start: --{first[0]} {first[1]}")
        elif self.dataset_sequences is None:
            status.update("Reading the dataset...")
        else:
            status.update("Ready: ctrl+s starts the run in its own process")
        status.set_class(bool(reasons), "invalid")
        return reasons

    def on_input_changed(self, event: Input.Changed) -> None:
        name = (event.input.id or "").removeprefix("f-")
        if name in DATA_FIELDS:
            self.dataset_sequences, self.dataset_error = None, None
            self.query_one("#dataset", Static).update("dataset: reading...")
            self.reload_dataset()
        self.refresh_checks()

    def on_select_changed(self, event: Select.Changed) -> None:
        self.refresh_checks()

    @work(thread=True, exclusive=True, group="dataset")
    def load_dataset(self, inputs: str, labels: str) -> None:
        time.sleep(0.25)  # debounce: typing a path fires a change per key
        if get_current_worker().is_cancelled:  # a newer keystroke superseded this one
            return
        from engine.data import dataset_summary, load_dataset
        from engine.errors import UserError

        try:
            summary: dict[str, Any] | None = dataset_summary(load_dataset(inputs, labels))
            error = None
        except UserError as exc:
            summary, error = None, str(exc)
        self.app.call_from_thread(self.show_dataset, summary, error)

    def show_dataset(self, summary: dict[str, Any] | None, error: str | None) -> None:
        box = self.query_one("#dataset", Static)
        if summary is None:
            self.dataset_sequences, self.dataset_error = None, error
            box.update(f"dataset: ✗ {error}")
            box.add_class("invalid")
        else:
            self.dataset_sequences, self.dataset_error = summary["sequences"], None
            ins, outs = summary["input_columns"], summary["label_columns"]
            box.update(
                f"dataset: {summary['sequences']} sequences | {len(ins)} input columns "
                f"({', '.join(ins[:6])}{', ...' if len(ins) > 6 else ''}) | {len(outs)} label "
                f"column(s) ({', '.join(outs[:6])}{', ...' if len(outs) > 6 else ''}) | length "
                f"min {summary['length_min']}, median {summary['length_median']:g}, max "
                f"{summary['length_max']}"
            )
            box.remove_class("invalid")
        self.refresh_checks()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "start":
            self.action_start()

    def action_start(self) -> None:
        reasons = self.refresh_checks()
        if self.dataset_sequences is None and not self.dataset_error:
            self.notify("Still reading the dataset; try again in a moment", severity="warning")
            return
        if reasons:
            name, why = next(iter(reasons.items()))
            self.notify(f"Cannot start: --{name} {why}", severity="error")
            return
        values, _ = self.values()
        if not values.get("run"):
            values["run"] = f"{values['model']}-{time.strftime('%Y%m%d-%H%M%S')}"
        if values["model"] != "transformer":
            values.pop("nhead")
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        flags = {k: v for k, v in values.items() if k in known}
        save_dir = Path(flags["model_save_dir"]).expanduser()
        run_dir = save_dir / str(flags["run"])
        if run_dir.exists():
            self.notify(f"A run named {flags['run']} exists; choose another name", severity="error")
            return
        try:
            proc = process.spawn(process.train_args(flags), run_dir)
        except OSError as exc:
            self.notify(f"Cannot start the run: {exc}", severity="error")
            return
        self.kapp.save_dir = save_dir
        self.app.pop_screen()
        self.kapp.open_monitor(run_dir, proc)
