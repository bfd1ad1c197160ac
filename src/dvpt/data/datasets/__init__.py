"""Dataset readers, one small module each; importing this package registers them all.

A module here calls ``DATASETS.add(name, DatasetSpec(...))``; nothing else needs editing.
"""
from __future__ import annotations

import importlib
import pkgutil

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    importlib.import_module(f"{__name__}.{_info.name}")
