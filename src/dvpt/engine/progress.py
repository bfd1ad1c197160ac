"""Progress bars (tqdm) that stay quiet when output is not a terminal or DVPT_NO_PROGRESS is set."""
from __future__ import annotations

import os
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T], desc: str = "", total: int | None = None, leave: bool = False) -> Iterable[T]:
    disable = True if os.environ.get("DVPT_NO_PROGRESS") else None  # None: tqdm disables off a TTY
    return tqdm(iterable, desc=desc, total=total, leave=leave, disable=disable, dynamic_ncols=True)
