"""dvpt: Dual-View Prompt Tuning for CLIP-like vision-language models."""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
