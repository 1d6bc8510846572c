"""Global CLI flags (set by the app callback, read by the commands)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class CliState:
    """``--debug`` and ``-q`` of the current invocation, and its start."""

    debug: bool = False
    quiet: bool = False
    t0: float = field(default_factory=time.monotonic)  # when the CLI started (its imports are timed from here)


STATE = CliState()
