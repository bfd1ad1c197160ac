"""A live line for a sweep: a bar over runs plus done / running / failed counts (rich).

Quiet when stderr is not a terminal or ``DVPT_NO_PROGRESS`` is set; the driver logs every
finished or failed run either way.
"""
from __future__ import annotations

import os
import sys
from collections import Counter

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class SweepProgress:
    def __init__(self, total: int, backend: str) -> None:
        enabled = sys.stderr.isatty() and not os.environ.get("DVPT_NO_PROGRESS")
        self._progress = Progress(
            TextColumn(f"sweep ({backend})"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
            TimeElapsedColumn(), console=Console(stderr=True), disable=not enabled,
        )
        self._task = self._progress.add_task("", total=total)

    def __enter__(self) -> "SweepProgress":
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def advance(self, n: int) -> None:
        self._progress.advance(self._task, n)

    def show(self, counts: Counter) -> None:
        text = f"done {counts.get('done', 0)} · running {counts.get('running', 0)} · failed {counts.get('failed', 0)}"
        self._progress.update(self._task, description=text)
