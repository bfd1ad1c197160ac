"""Evaluation protocols: each composes dataset, method, training and evaluation.

A protocol is ``run(session, rundir) -> metrics`` registered by name; every module in this
package is imported, so a new protocol is one new file.
"""
from __future__ import annotations

import importlib
import pkgutil

from ..registry import PROTOCOLS

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name != "common":
        importlib.import_module(f"{__name__}.{_info.name}")
