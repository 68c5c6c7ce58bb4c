"""Errors lit_opt reports to a person: the CLI prints their message alone, no traceback.

Each message says what was wrong and what is allowed, so it can be shown as it is
in a terminal or a dialog box.
"""


class LitOptError(Exception):
    """Base class for errors whose message is meant for the user, not a developer."""


class ConfigError(LitOptError, ValueError):
    """A setting is unknown or out of range (raised before any data loads)."""


class DataNotFoundError(LitOptError):
    """The dataset files are missing and could not be downloaded."""


class CheckpointError(LitOptError):
    """A checkpoint file is missing, corrupt, foreign or of another kind of model."""


class DivergenceError(LitOptError):
    """Training produced a NaN or infinite loss or gradient."""


class RunStopped(LitOptError):
    """A run was stopped on request (Ctrl-C or the desktop app's Stop); it can be resumed."""
