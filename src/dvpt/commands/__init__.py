"""Sub-commands of ``dvpt``: one module each, with ``register(subparsers)``."""
from __future__ import annotations

from typing import Callable


def comma_list(kind: Callable[[str], object]) -> Callable[[str], list]:
    """An argparse ``type`` for "a,b,c": each non-empty item converted by ``kind``."""
    return lambda text: [kind(v) for v in text.split(",") if v.strip()]
