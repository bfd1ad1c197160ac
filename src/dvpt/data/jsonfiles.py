"""JSON files of the data layer: read with clear errors, write atomically, fingerprint.

Split files and few-shot caches live next to the user's data and may be read by several
runs at once; writing through ``dvpt.files`` (a temporary file and ``os.replace``) means a reader never sees a
half-written file, even when a run is killed mid-write.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from .. import files
from ..errors import DataError


def read_json(path: Path, what: str = "file") -> Any:
    """Parse ``path`` (size-bounded, no NaN); a missing or malformed file raises ``DataError`` naming it."""
    return files.read_json(path, what, error=DataError)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON through a temporary file in the same folder."""
    files.write_json(path, obj, indent=1)


def fingerprint_bytes(*chunks: bytes) -> str:
    """A short, stable hash of some bytes (split-file content, a directory listing)."""
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()[:16]


def fingerprint_files(*paths: Path) -> str:
    """``fingerprint_bytes`` of the content of the given files (in that order)."""
    return fingerprint_bytes(*(p.read_bytes() for p in paths))
