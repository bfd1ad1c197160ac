"""Run folders -> flat records; nothing but ``metrics.json`` and ``config.yaml`` is read.

A record is a dict with ``dataset, method, seed, base, novel, hm`` (base-to-novel),
``accuracy`` and ``shots`` (all classes / few-shot), ``evaluations`` (cross-dataset and
domain generalisation), plus ``protocol, backbone, path``. ``sweep.json`` files met on the
way add the runs that have no metrics yet, so a report can list them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..errors import DvptError
from ..files import read_json, read_yaml

log = logging.getLogger(__name__)

METRICS, CONFIG, INDEX = "metrics.json", "config.yaml", "sweep.json"


@dataclass
class Collection:
    records: list[dict[str, Any]] = field(default_factory=list)
    #: sweep.json entries whose run folder has no metrics.json
    unfinished: list[dict[str, Any]] = field(default_factory=list)
    #: run folders that repeat another's (protocol, backbone, dataset, method, shots, seed)
    duplicates: list[str] = field(default_factory=list)


def dataset_label(dataset: str, domain: str | None) -> str:
    return f"{dataset} ({domain})" if domain else dataset


def _load(path: Path, reader, what: str) -> dict[str, Any]:
    """A run folder's config or metrics (or a sweep index): a mapping, or a ``DvptError`` naming the file.

    Read through ``dvpt.files``: size-bounded, no YAML aliases, NaN/Infinity refused, so a
    diverged run's junk never becomes a table row.
    """
    data = reader(path, what) or {}
    if not isinstance(data, dict):
        raise DvptError(f"{what} {path} holds a {type(data).__name__}, not a mapping; delete the run folder or re-run it")
    return data


def record_from_folder(folder: Path) -> dict[str, Any]:
    """One run folder -> one record (the config decides the identity, metrics the numbers)."""
    cfg = _load(folder / CONFIG, read_yaml, "run config")
    metrics = _load(folder / METRICS, read_json, "metrics file")
    data = cfg.get("data") or {}
    domain = (data.get("options") or {}).get("domain")
    record: dict[str, Any] = {
        "dataset": dataset_label(data.get("dataset", metrics.get("dataset", "?")), domain),
        "method": cfg.get("method", metrics.get("method", "?")),
        "seed": cfg.get("seed", metrics.get("seed")),
        "protocol": cfg.get("protocol", metrics.get("protocol", "?")),
        "backbone": cfg.get("backbone", metrics.get("backbone", "?")),
        "shots": data.get("shots", metrics.get("shots")),
        "path": str(folder),
    }
    for key in ("base", "novel", "hm", "accuracy"):
        if key in metrics:
            record[key] = float(metrics[key])
    if metrics.get("evaluations"):
        record["evaluations"] = [
            {"dataset": e.get("dataset"), "subset": e.get("subset"), "accuracy": float(e["accuracy"])}
            for e in metrics["evaluations"] if "accuracy" in e
        ]
    return record


def _key(record: dict[str, Any]) -> tuple:
    return tuple(record.get(k) for k in ("protocol", "backbone", "dataset", "method", "shots", "seed"))


def _unfinished(index_file: Path) -> list[dict[str, Any]]:
    index = _load(index_file, read_json, "sweep index")
    out = []
    for name, entry in (index.get("runs") or {}).items():
        folder = index_file.parent / entry.get("output", name)
        if not (folder / METRICS).is_file():
            out.append({"run": name, "sweep": str(index_file.parent), "status": entry.get("status", "?"),
                        "error": entry.get("error"), "log": str(index_file.parent / entry.get("log", ""))})
    return out


def collect(dirs: Iterable[str | Path]) -> Collection:
    """Every run folder under ``dirs`` (recursively) and every unfinished sweep entry."""
    out = Collection()
    seen_paths: set[Path] = set()
    seen_keys: dict[tuple, str] = {}
    for top in dirs:
        top = Path(top)
        if not top.exists():
            raise DvptError(f"{top} does not exist; give run folders or sweep folders")
        for metrics in sorted(top.rglob(METRICS)):
            folder = metrics.parent.resolve()
            if folder in seen_paths or not (folder / CONFIG).is_file():
                continue
            seen_paths.add(folder)
            record = record_from_folder(folder)
            if _key(record) in seen_keys:
                out.duplicates.append(f"{folder} repeats {seen_keys[_key(record)]}; left out")
                continue
            seen_keys[_key(record)] = str(folder)
            out.records.append(record)
        for index_file in sorted(top.rglob(INDEX)):
            out.unfinished.extend(_unfinished(index_file))
    return out
