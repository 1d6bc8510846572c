"""Global CLI flags (set by the app callback, read by the commands)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CliState:
    """``--debug`` and ``-q`` of the current invocation."""

    debug: bool = False
    quiet: bool = False


STATE = CliState()
