"""Console progress: a live rich progress bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class ConsoleProgress:
    """Shows steps, steps/second, ETA, the mean return of the last 100 completed trajectories
    (progress.csv's ReturnAverage) and the latest evaluation's return.

    The bar never shows more steps than its total: the runner sets the total to the steps the
    run will reach (``n_steps`` rounded up to whole batches, `set_total`), and a count past the
    total raises the total to it.

    Args:
        total_steps: the run's env-step budget.
        enabled: False silences it (tests, library use).
        console: where to draw (default: a rich Console on stderr).
    """

    def __init__(self, total_steps: int, start_steps: int = 0, enabled: bool = True, console: Console | None = None):
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self.live = enabled and self.console.is_terminal
        self.progress = None
        self.total = total_steps
        if self.live:
            self.progress = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[sps]:>8} sps"),
                TimeRemainingColumn(),
                TextColumn("return (last 100) {task.fields[ret]}"),
                TextColumn("eval {task.fields[eval]}"),
                console=self.console,
            )
            self.task = self.progress.add_task(
                "train", total=total_steps, completed=start_steps, sps="-", ret="-", eval="-"
            )
            self.progress.start()

    def set_total(self, total_steps: int) -> None:
        """The steps the run will reach (``n_steps`` rounded up to whole batches)."""
        self.total = total_steps
        if self.live:
            self.progress.update(self.task, total=total_steps)

    def update(self, steps: int, sps: float, ret: float | None, eval_ret: float | None) -> None:
        """``ret``: the mean return of the last 100 completed trajectories (ReturnAverage)."""
        if steps > self.total:
            self.set_total(steps)
        if not self.live:
            return
        fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        self.progress.update(self.task, completed=steps, sps=f"{sps:.0f}", ret=fmt(ret), eval=fmt(eval_ret))

    def line(self, text: str) -> None:
        """One log line (printed above the bar on a terminal)."""
        if not self.enabled:
            return
        if self.live:
            self.progress.console.print(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
