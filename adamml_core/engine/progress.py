"""Progress bars (rich) that show loss, accuracy and ETA, shown on rank 0 only."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class NullProgress:
    """Used off rank 0 and when progress display is turned off."""

    def add_task(self, description: str, total: int | None = None, **fields) -> int:
        return 0

    def update(self, task: int, **kwargs) -> None:
        pass

    def remove_task(self, task: int) -> None:
        pass


@contextmanager
def training_progress(enabled: bool, console: Console | None = None) -> Iterator[Progress | NullProgress]:
    if not enabled:
        yield NullProgress()
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        transient=False,
    )
    with progress:
        yield progress
