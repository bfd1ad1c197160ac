"""JSON files of the data layer: read with clear errors, write atomically, fingerprint.

Split files and few-shot caches live next to the user's data and may be read by several
runs at once; writing to a temporary file and ``os.replace`` means a reader never sees a
half-written file, even when a run is killed mid-write.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ..errors import DataError


def read_json(path: Path, what: str = "file") -> Any:
    """Parse ``path``; a missing or malformed file raises ``DataError`` naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise DataError(f"cannot read {what} {path}: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"malformed JSON in {what} {path} (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "re-download the file or delete it"
        ) from None


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON through a temporary file in the same folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


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
