"""Errors a user can cause. The CLI prints them as one line and exits with ``exit_code``."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's data, flags or files: one line, no traceback."""

    exit_code = 2


class DataError(UserError):
    """The data folders cannot be trained on (names the file and the problem)."""


class ConfigError(UserError):
    """A setting is invalid or conflicts with another."""


class CheckpointError(UserError):
    """A checkpoint file cannot be read safely."""


class RunError(UserError):
    """The run folder is missing, locked by a live process or does not match the request."""


class NothingToDo(UserError):
    """The request is already fulfilled (e.g. resuming a finished run): said, not an error."""

    exit_code = 0
