"""``python -m tui [training flags]``: the app, its train form pre-filled from the flags."""

import argparse
import sys

from engine.config import add_train_arguments
from tui.app import run_app

parser = argparse.ArgumentParser(prog="kfold tui", description="The kfold terminal app.")
add_train_arguments(parser, suppress=True)
sys.exit(run_app(vars(parser.parse_args())))
