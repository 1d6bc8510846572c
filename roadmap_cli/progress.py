"""Progress reporting without printing: library stages call a :class:`Reporter`; the CLI passes one that draws
bars, Python callers may pass their own or nothing (:data:`SILENT`).  Imports nothing from the package."""
from __future__ import annotations


class Reporter:
    """Receives stage progress.  The base class ignores everything."""

    def start(self, stage: str, total: int, completed: int = 0) -> None:
        """A stage begins with ``total`` steps, ``completed`` of them already done (resume)."""

    def advance(self, stage: str, n: int = 1, info: str = "") -> None:
        """``n`` more steps of ``stage`` are done; ``info`` is a short status (rate, loss)."""

    def message(self, text: str) -> None:
        """A line worth showing the user (an epoch's validation scores)."""

    def close(self) -> None:
        """No more progress will be reported."""


SILENT = Reporter()
