"""Val loss per epoch (rows) and fold (columns); each fold's best epoch is marked *."""

from __future__ import annotations

from textual.widgets import DataTable

from tui.runview import RunView, fmt_loss


class LossTable(DataTable[str]):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(zebra_stripes=True, cursor_type="row", **kwargs)  # type: ignore[arg-type]
        self._folds: list[int] = []
        self._shown: dict[tuple[int, int], str] = {}
        self._last_epoch = 0
        self._auto_row = 0

    def sync(self, view: RunView, cells: set[tuple[int, int]]) -> None:
        """Rewrite only the given (fold, epoch) cells; all of them when the folds change."""
        wanted = sorted(view.folds)
        if wanted != self._folds:
            self.clear(columns=True)
            self._shown.clear()
            self._last_epoch = 0
            self._folds = wanted
            self.add_column("epoch", key="epoch")
            for k in wanted:
                self.add_column(f"fold {k}", key=f"f{k}")
            cells = {(k, e) for k in wanted for e in view.folds[k].val_history}
        # Follow the epoch being trained unless the person moved the cursor to read back.
        following = self.row_count == 0 or self.cursor_row == self._auto_row
        newest: tuple[int, int] | None = None
        for k, epoch in sorted(cells, key=lambda c: (c[1], c[0])):
            f = view.folds.get(k)
            if f is None or epoch not in f.val_history:
                continue
            text = fmt_loss(f.val_history[epoch]) + (" *" if epoch == f.best_epoch else "  ")
            if self._shown.get((k, epoch)) == text:
                continue
            row = str(epoch)
            if row not in self.rows:
                self._add_epoch_row(epoch)
            self.update_cell(row, f"f{k}", text)
            self._shown[(k, epoch)] = text
            newest = max(newest or (k, epoch), (k, epoch))
        if following and newest is not None:
            self._auto_row = self.get_row_index(str(newest[1]))
            self.move_cursor(row=self._auto_row)

    def _add_epoch_row(self, epoch: int) -> None:
        blank = [""] * len(self._folds)
        self.add_row(str(epoch), *blank, key=str(epoch))
        if epoch < self._last_epoch:  # a later fold can reach an epoch first: keep order
            self.sort("epoch", key=lambda v: int(v))
        self._last_epoch = max(self._last_epoch, epoch)
