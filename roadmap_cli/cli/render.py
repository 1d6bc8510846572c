"""Everything the CLI draws: progress (bars on a terminal, plain lines elsewhere) and result tables."""
from __future__ import annotations

import sys
import time

from ..progress import Reporter

LINE_EVERY_S = 60.0  # without a terminal: a progress line per stage at most this often (and at its end)


def _clock(seconds: float) -> str:
    s = int(round(max(seconds, 0.0)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def pace(done: float, total: float | None, elapsed: float) -> tuple[str, str]:
    """(rate, time left) of a stage from its start: known from the first finished unit on, however long it took
    (rich's own estimate needs two updates within 30 s, so a stage of minute-long units never gets one)."""
    if done <= 0 or elapsed <= 0:
        return "", "-:--:--"
    rate = done / elapsed
    shown = f"{rate:.2f}/s" if rate >= 1 else f"{elapsed / done:.1f} s each"
    left = (total - done) / rate if total else 0.0
    return shown, _clock(left)


class RichReporter(Reporter):
    """Progress bars on the terminal (stderr, so stdout holds only results), one per stage, each with its elapsed
    time, rate and time left; the bars start with the first stage, so a refusal before it draws nothing."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
        from rich.text import Text

        class Pace(ProgressColumn):
            def render(self, task):
                rate, left = pace(task.completed, task.total, task.elapsed or 0.0)
                return Text(f"{rate} {left} left" if rate else "")

        self.progress = Progress(TextColumn("[bold]{task.description:<8}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), Pace(),
                                 console=Console(stderr=True), transient=False)
        self.tasks: dict[str, int] = {}
        self.started = False

    def __enter__(self) -> "RichReporter":
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


class LineReporter(Reporter):
    """Progress as plain lines on stderr, for logs, pipes, CI and ``-q``: a line when a stage starts, then at most
    one every ``every`` seconds, and one when it ends, each with the count, elapsed time, rate and time left."""

    def __init__(self, every: float = LINE_EVERY_S, stream=None, clock=time.monotonic):
        self.every, self.stream, self.clock = every, stream, clock
        self.stages: dict[str, dict] = {}

    def __enter__(self) -> "LineReporter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _line(self, stage: str) -> None:
        st = self.stages[stage]
        elapsed = self.clock() - st["t0"]
        rate, left = pace(st["done"] - st["first"], st["total"] - st["first"], elapsed)
        tail = f", {rate}, {left} left" if rate else ""
        info = f", {st['info']}" if st["info"] else ""
        print(f"roadmap: {stage} {st['done']}/{st['total']}, {_clock(elapsed)} elapsed{tail}{info}",
              file=self.stream or sys.stderr, flush=True)
        st["last"] = self.clock()

    def start(self, stage: str, total: int, completed: int = 0) -> None:
        """A stage begins: its first line."""
        now = self.clock()
        self.stages[stage] = {"t0": now, "last": now, "done": completed, "first": completed, "total": total,
                              "info": ""}
        print(f"roadmap: {stage} started ({completed}/{total})", file=self.stream or sys.stderr, flush=True)

    def advance(self, stage: str, n: int = 1, info: str = "") -> None:
        """Count; a line when the stage ends or ``every`` seconds have passed since the last one."""
        st = self.stages[stage]
        st["done"] += n
        st["info"] = info or st["info"]
        if st["done"] >= st["total"] or self.clock() - st["last"] >= self.every:
            self._line(stage)

    def message(self, text: str) -> None:
        """A line of its own."""
        print(text, file=self.stream or sys.stderr, flush=True)


def reporter(quiet: bool = False, enabled: bool = True) -> Reporter:
    """Bars on a terminal; plain lines without one or with ``-q``; nothing where ``enabled`` is False (the other
    ranks of a distributed run)."""
    if not enabled:
        return _Silent()
    if quiet or not sys.stderr.isatty():
        return LineReporter()
    return RichReporter()


class _Silent(Reporter):
    def __enter__(self) -> "_Silent":
        return self

    def __exit__(self, *exc) -> None:
        pass


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    """A two-column table without header."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, show_header=False)
    for k, v in rows:
        t.add_row(k, v)
    Console().print(t)
