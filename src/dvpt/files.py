"""The one way dvpt writes files and reads the JSON and YAML files it is given.

Why one module: a reader must never see half a file (a run killed mid-write, a full disk),
and a file from a run folder, a dataset folder or a download is untrusted input. Every
writer goes through ``atomic_write`` (a temporary file in the same folder, then one
``os.replace``), so a file is either the old one or the new one. Every JSON file goes
through ``read_json`` (size-bounded; ``NaN``/``Infinity`` refused: such a number in a metrics
file is junk, not a result) and every YAML file through ``read_yaml`` (size-bounded, no
aliases, so nested anchors cannot expand without bound). Nothing here unpickles.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import yaml

from .errors import DvptError, WriteError

MAX_YAML_BYTES = 4 * 1024 * 1024
#: large enough for a split file of ImageNet (1.3M entries, ~90 MB) with room to spare
MAX_JSON_BYTES = 512 * 1024 * 1024


# --------------------------------------------------------------------------- writing

def make_folder(path: str | Path) -> Path:
    """``mkdir -p path``; a file where a folder must go is a ``DvptError`` naming that file."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), path)
        raise DvptError(f"cannot create folder {path}: {blocker} is a file; choose another output") from None
    return path


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then move it over ``path``: readers never see half a file.

    The temporary file lives in the destination folder (``os.replace`` is atomic only within
    one file system) and is removed when ``write`` fails, so a failure leaves the old file.
    """
    path = Path(path)
    if path.is_dir():
        raise DvptError(f"cannot write {path}: it is a folder; choose a file name")
    make_folder(path.parent)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; written files are as readable as any other
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, DvptError):
            raise
        raise WriteError(exc.errno, f"cannot write {path}: {exc.strerror or exc}; free space or fix permissions "
                                    "and run again (the previous file, if any, is unchanged)") from None
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def non_finite_key(obj: Any, where: str = "") -> str | None:
    """The dotted key of the first NaN/Infinity in ``obj`` (``None`` when all numbers are finite)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return where or "(top level)"
    if isinstance(obj, dict):
        items = ((f"{where}.{k}" if where else str(k), v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(obj))
    else:
        return None
    for key, value in items:
        found = non_finite_key(value, key)
        if found is not None:
            return found
    return None


def json_text(data: Any, path: str | Path = "<json>", indent: int | None = 2, **kwargs: Any) -> str:
    """``data`` as JSON; a NaN or Infinity anywhere is a ``DvptError`` naming the key, not a file."""
    bad = non_finite_key(data)
    if bad is not None:
        raise DvptError(f"refusing to write {path}: {bad} is not a finite number; the run produced junk, not a result")
    return json.dumps(data, indent=indent, allow_nan=False, **kwargs)


def write_json(path: str | Path, data: Any, indent: int | None = 2) -> Path:
    """Write ``data`` as JSON atomically; non-finite numbers are refused before anything is written."""
    return write_text(path, json_text(data, path, indent=indent) + "\n")


def write_yaml(path: str | Path, data: Any) -> Path:
    return write_text(path, yaml.safe_dump(data, sort_keys=False))


# --------------------------------------------------------------------------- reading

def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _read_text(path: Path, what: str, limit: int, error: type[DvptError]) -> str:
    try:
        size = path.stat().st_size
        if size > limit:
            raise error(f"{what} {path} is {size / 2**20:.1f} MiB, over the {limit // 2**20} MiB limit; "
                        "this is not a file dvpt wrote")
        with open(path, "rb") as fh:
            raw = fh.read(limit + 1)  # bounded even if the file grows while read
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise error(f"{what} {path} is a folder, not a file") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(raw) > limit:
        raise error(f"{what} {path} is over the {limit // 2**20} MiB limit")
    if b"\0" in raw[:8192]:
        raise error(f"{what} {path} is binary, not text; give the {what} dvpt expects")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what} {path} is not UTF-8 text (byte {exc.start}); give the {what} dvpt expects") from None


def parse_json(text: str, source: str | Path = "<json>", what: str = "file",
               error: type[DvptError] = DvptError, fix: str = "restore the file or delete it") -> Any:
    """Parse JSON text from ``source``; malformed JSON or NaN/Infinity raise ``error`` naming it and ``fix``."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise error(f"malformed JSON in {what} {source} (line {exc.lineno}, column {exc.colno}: {exc.msg}); {fix}") from None
    except (ValueError, RecursionError) as exc:
        raise error(f"{what} {source} cannot be used: {exc}; {fix}") from None


def read_json(path: str | Path, what: str = "file", error: type[DvptError] = DvptError,
              max_bytes: int = MAX_JSON_BYTES) -> Any:
    """The JSON in ``path``: bounded in size, no NaN/Infinity, every failure one ``error`` naming it."""
    path = Path(path)
    return parse_json(_read_text(path, what, max_bytes, error), path, what, error)


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases: nested anchors ("billion laughs") would expand without bound."""

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.YAMLError(f"YAML aliases (*name) are not accepted (line {mark.line + 1}); write the value out")
        return super().compose_node(parent, index)


def load_yaml_text(text: str) -> Any:
    """Parse YAML from a file the user gave: no aliases, bounded size; raises ``yaml.YAMLError``."""
    if len(text) > MAX_YAML_BYTES:
        raise yaml.YAMLError(f"larger than {MAX_YAML_BYTES // (1024 * 1024)} MiB")
    return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass


def read_yaml(path: str | Path, what: str = "file", error: type[DvptError] = DvptError) -> Any:
    """The YAML in ``path`` (no aliases, at most 4 MiB); every failure one ``error`` naming it."""
    path = Path(path)
    text = _read_text(path, what, MAX_YAML_BYTES, error)
    try:
        return load_yaml_text(text)
    except (yaml.YAMLError, RecursionError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise error(f"{what} {path} is not valid YAML: {detail}") from None
