"""kfold-tui's terminal app (Textual). Reads run folders; starts and signals engine
processes; never trains in its own process and never imports torch at start-up."""
