"""The checkpoint browser's tree: runs and their .pth files, kept in step with the save
folder in place, so that the cursor, the scroll and what the person collapsed survive a
refresh, and a cheap signature that tells when a refresh is needed."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from engine.catalog import list_runs, loose_checkpoints
from engine.run import RUN_JSON, lock_holder

Signature = tuple[object, ...]


def _mtime(path: str) -> int | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns if stat.S_ISREG(st.st_mode) else None


def _pth_files(folder: str) -> tuple[tuple[str, int | None], ...]:
    try:
        with os.scandir(folder) as entries:
            names = sorted(e.name for e in entries if e.name.endswith(".pth"))
    except OSError:
        return ()
    return tuple((name, _mtime(os.path.join(folder, name))) for name in names)


def folder_signature(save_dir: Path) -> Signature:
    """Everything the tree shows, as names and mtimes: each run's run.json (its status
    label), whether a live process holds it (running vs died), its .pth files, and the loose
    .pth files. Only scandir, stat and a lock probe: a 2 s poll of this is cheap where
    reading every run.json, let alone every checkpoint, would not be."""
    try:
        with os.scandir(save_dir) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:
        return ()
    runs: list[object] = []
    loose: list[object] = []
    for e in entries:
        try:
            is_dir = e.is_dir()
        except OSError:  # gone since the listing
            continue
        if is_dir:
            manifest = _mtime(os.path.join(e.path, RUN_JSON))
            if manifest is not None:
                live = lock_holder(e.path) is not None
                runs.append((e.name, manifest, live, _pth_files(e.path)))
        elif e.name.endswith(".pth"):
            loose.append((e.name, _mtime(e.path)))
    return (tuple(runs), tuple(loose))


@dataclass(frozen=True)
class Wanted:
    """One node as the save folder has it now; children is None for a file."""

    path: Path
    label: Text
    children: tuple[Wanted, ...] | None = None


def wanted_nodes(save_dir: Path) -> list[Wanted]:
    """Runs newest first, each with its .pth files by name, then the loose .pth files."""
    nodes = [
        Wanted(
            run.path,
            # Text, not str: a str label is read as markup, and "[finished]" would vanish.
            Text(f"{run.name}  [{run.status}]"),
            tuple(Wanted(f, Text(f.name)) for f in sorted(run.path.glob("*.pth"))),
        )
        for run in list_runs(save_dir)
    ]
    nodes += [Wanted(f, Text(f.name)) for f in loose_checkpoints(save_dir)]
    return nodes


def _all_paths(nodes: tuple[Wanted, ...] | list[Wanted]) -> set[Path]:
    paths: set[Path] = set()
    for node in nodes:
        paths.add(node.path)
        if node.children:
            paths |= _all_paths(node.children)
    return paths


class CheckpointTree(Tree[Path]):
    def __init__(self, save_dir: Path, *, id: str | None = None) -> None:
        # Text, not str, here too: a folder name with [brackets] must show as it is.
        super().__init__(Text(str(save_dir)), save_dir, id=id)
        self.root.expand()

    def sync(self, wanted: list[Wanted]) -> Path | None:
        """Make the tree show ``wanted``, changing only the nodes that differ.

        When the node under the cursor is gone, the cursor moves to the nearest node above
        it that stays (its run, or the save folder), and the path that went is returned.
        """
        gone = self._move_cursor_off(_all_paths(wanted))
        self._sync_children(self.root, wanted)
        return gone

    def _move_cursor_off(self, keep: set[Path]) -> Path | None:
        cursor = self.cursor_node
        if cursor is None or cursor.is_root or cursor.data in keep:
            return None
        target = cursor.parent
        while target is not None and not target.is_root and target.data not in keep:
            target = target.parent
        # Move before removing anything: the nodes' line numbers are still those on screen,
        # and a removed node left under the cursor would stay the Tree's cursor_node.
        _ = self.last_line  # the Tree numbers its lines lazily; this makes them current
        self.move_cursor(target or self.root)
        return cursor.data

    def _sync_children(
        self, parent: TreeNode[Path], wanted: list[Wanted] | tuple[Wanted, ...]
    ) -> None:
        want = {w.path for w in wanted}
        for child in list(parent.children):
            if child.data not in want:
                child.remove()
        by_path = {child.data: child for child in parent.children}
        previous: TreeNode[Path] | None = None
        for w in wanted:
            node = by_path.get(w.path)
            if node is None:
                # New nodes go right after the one before them in the wanted order; the
                # nodes already there keep their places (a run's place never changes: the
                # order is by its creation time).
                is_run = w.children is not None
                if previous is None:
                    node = parent.add(w.label, w.path, before=0, expand=is_run, allow_expand=is_run)
                else:
                    node = parent.add(
                        w.label, w.path, after=previous, expand=is_run, allow_expand=is_run
                    )
            elif node.label != w.label:
                node.set_label(w.label)
            if w.children is not None:
                self._sync_children(node, w.children)
            previous = node
