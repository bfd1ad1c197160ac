"""Methods: one small file each, registered by name; every module here is imported."""
from __future__ import annotations

import importlib
import pkgutil

from ..registry import METHODS
from .base import Batch, PromptMethod, register_method

__all__ = ["METHODS", "Batch", "PromptMethod", "register_method", "get_method"]

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name != "base":
        importlib.import_module(f"{__name__}.{_info.name}")


def get_method(name: str) -> type[PromptMethod]:
    return METHODS.get(name)
