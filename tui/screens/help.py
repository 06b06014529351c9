"""Help: every key of every screen, and what the app promises."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# kfold keys

**Everywhere**: `?` this help · `ctrl+p` command palette · `q` quit (runs keep going)

**Runs** (first screen): `n` new run · `enter` monitor the selected run · `r` resume it ·
`s` change the sort (date, CV loss, model, status, name) · `b` checkpoint browser

**Train form**: `tab`/`shift+tab` move between fields · `ctrl+s` start · `escape` back.
A field that is wrong says why beside it; start is refused until nothing is wrong.

**Monitor**: `s` stop gracefully (the run ends *interrupted* and can be resumed) ·
`r` resume · `t` val-loss table · `c` chart · `l` log · `escape` back (the run goes on)

**Checkpoints**: arrows move · `r` resume the run · `e` evaluate each fold on its own
held-out fold · `o` evaluate on other data (every fold and the ensemble) ·
`p` export predictions · `d` delete (asks first) · `f5` reload now · `escape` back.
The tree follows the save folder by itself (every 2 s): new runs and files appear,
removed ones go.

Training runs as its own `kfold train` process in its own session: quitting the app or
losing the SSH connection does not stop it. Open the app again to attach.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog wide"):
            yield Markdown(HELP)

    def action_close(self) -> None:
        self.dismiss(None)
