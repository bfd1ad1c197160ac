"""dvpt: Dual-View Prompt Tuning for CLIP-like vision-language models."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .inference.api import TunedPrompt

from .version import __version__

__all__ = ["__version__", "load_prompt"]


def load_prompt(*args: Any, **kwargs: Any) -> "TunedPrompt":
    """Load a ``.dvpt`` prompt file (see ``dvpt.inference.api.load_prompt``); imported lazily so that
    ``import dvpt`` stays light."""
    from .inference.api import load_prompt as _load_prompt

    return _load_prompt(*args, **kwargs)
