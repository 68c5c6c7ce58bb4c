"""Errors lit_opt reports to a person: the CLI prints their message alone, no traceback.

Each message says what was wrong and what is allowed, so it can be shown as it is
in a terminal or a dialog box.
"""


# Exit codes of `python -m lit_opt` (docs/reference.md): what went wrong, for scripts and
# schedulers. 130 and 143 follow the shell's 128 + signal number; 74 is sysexits' EX_IOERR.
EXIT_OK = 0
EXIT_DIVERGED = 1  # training diverged (NaN/inf); last.ckpt holds the last finite weights
EXIT_BAD_INPUT = 2  # a setting, data file or checkpoint was refused; nothing trained
EXIT_IO_ERROR = 74  # reading or writing a file failed (disk full, permission, I/O error)
EXIT_INTERRUPTED = 130  # stopped by Ctrl-C or the app's Stop; resumable from last.ckpt
EXIT_TERMINATED = 143  # stopped by SIGTERM (a scheduler's pre-emption); resumable from last.ckpt


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
    """A run was stopped on request (Ctrl-C, SIGTERM or the desktop app's Stop); it can be
    resumed. `signum` is the signal that asked for the stop (None: the app's Stop)."""

    def __init__(self, message: str, signum: "int | None" = None):
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        import signal

        return EXIT_TERMINATED if self.signum == signal.SIGTERM else EXIT_INTERRUPTED


class StorageError(LitOptError):
    """Writing or reading a run's file failed (disk full, no permission, an I/O error); the
    files written before are intact (checkpoints are replaced atomically)."""

    @staticmethod
    def describe(exc: BaseException, path=None) -> str:
        import errno

        reasons = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
                   errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
                   errno.EIO: "an input/output error"}
        code = getattr(exc, "errno", None)
        where = path or getattr(exc, "filename", None)
        what = reasons.get(code, str(exc))
        if code is None and "write" in str(exc):  # torch.save's writer hides the errno
            what = "writing failed (most often because the disk is full)"
        return (f"could not write {where}: {what}. The run's earlier files and checkpoints are "
                f"intact; free some space (or fix the folder) and resume from its last.ckpt."
                if where else f"a file operation failed: {what}.")


class Terminated(Exception):
    """SIGTERM reached a study (between trials, or a trial stopped by it): it ends as after
    Ctrl-C, with exit code 143. Not a LitOptError: nothing about the input was wrong."""
