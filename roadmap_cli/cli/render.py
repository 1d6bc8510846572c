"""Everything the CLI draws: progress bars (a rich :class:`Reporter`) and result tables."""
from __future__ import annotations

from ..progress import Reporter


class RichReporter(Reporter):
    """Progress bars on the terminal, one per stage; ``disable`` hides them (``-q``, non-zero DDP ranks)."""

    def __init__(self, disable: bool = False):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(TextColumn("[bold]{task.description:<8}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                 disable=disable, transient=False)
        self.tasks: dict[str, int] = {}
        self.started = False

    def __enter__(self) -> "RichReporter":  # the bars start with the first stage: a refusal before it prints nothing
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self, stage: str, total: int, completed: int = 0) -> None:
        """A new bar."""
        if not self.started:
            self.progress.start()
            self.started = True
        self.tasks[stage] = self.progress.add_task(stage, total=total, completed=completed, info="")

    def advance(self, stage: str, n: int = 1, info: str = "") -> None:
        """Move a bar."""
        self.progress.update(self.tasks[stage], advance=n, info=info)

    def message(self, text: str) -> None:
        """Print above the bars."""
        self.progress.console.print(text)

    def close(self) -> None:
        """Stop drawing (idempotent)."""
        if self.started:
            self.progress.stop()


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    """A two-column table without header."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, show_header=False)
    for k, v in rows:
        t.add_row(k, v)
    Console().print(t)
