"""One error convention for the whole package.

Library code raises a :class:`UserError` subclass for anything the user can fix, so Python callers can tell the
cases apart (``except OutputExistsError``); the CLI prints ``str(err)`` as one line on stderr and exits with the
error's ``exit_code`` (2 = bad input, 3 = offline).  Anything else is a bug: one line too, unless ``--debug``.
This module imports nothing from the package.
"""
from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or environment.  ``str(err)`` is the one-line message."""

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(" ".join(str(message).split()))  # one line, always
        if exit_code is not None:
            self.exit_code = exit_code


class InputError(UserError):
    """An input file, option value or dataset that cannot be used as given."""


class OutputExistsError(UserError):
    """An output (or a run's work folder) exists and may not be replaced without being asked to."""


class OutputError(UserError):
    """An output cannot be written (missing or read-only folder, unknown format)."""


class CheckpointError(UserError):
    """A checkpoint or model configuration that cannot be read, or does not fit the model."""


class DownloadError(UserError):
    """A download that failed (HTTP error, checksum mismatch, incomplete transfer)."""


class OfflineError(DownloadError):
    """A download was needed but the network is unreachable."""

    exit_code = 3
