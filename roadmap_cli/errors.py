"""One error convention for the whole CLI.

Code raises :class:`UserError` (or a subclass) for anything the user can fix; the CLI prints its message as one line
on stderr and exits with its ``exit_code`` (2 = bad input).  Anything else is a bug: one line too, unless ``--debug``.
"""
from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or environment.  ``str(err)`` is the one-line message."""

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(" ".join(str(message).split()))  # one line, always
        if exit_code is not None:
            self.exit_code = exit_code


class OfflineError(UserError):
    """A download was needed but the network is unreachable."""

    exit_code = 3
