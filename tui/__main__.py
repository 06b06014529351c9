import sys

from engine.cli import main

sys.exit(main(["tui", *sys.argv[1:]]))
