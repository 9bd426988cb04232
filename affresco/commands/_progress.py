"""Progress bars of long commands (rich.progress is imported only by the commands that draw one)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text

__all__ = ["RateColumn", "fits_progress", "records_progress"]


class RateColumn(ProgressColumn):
    """Records per second, averaged by rich over the recent updates."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f} records/s" if task.speed else "", style="progress.data.speed")


def records_progress(title: str, console: Console) -> Progress:
    """A transient bar: title, bar, percent, records done, records/s, time remaining."""
    return Progress(
        TextColumn(title),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.completed:,} records"),
        RateColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def fits_progress(title: str, console: Console) -> Progress:
    """A transient bar over model fits: what is being fitted, bar, fits done of planned, time remaining."""
    return Progress(
        TextColumn(title),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} fits"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
