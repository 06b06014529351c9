"""kfold engine: masked K-fold training of sequence models.

The engine never imports the terminal UI (``tui``), ``textual`` or ``rich``; only
``engine.cli`` may use rich. Progress leaves the engine through plain callbacks and the
run folder (``run.json``, ``metrics.csv``, ``events.jsonl``, checkpoints).
"""

__version__ = "0.1.0"
