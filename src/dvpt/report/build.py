"""``dvpt report``: run folders -> tables (md, csv, tex) and figures in one output folder."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..engine.io import write_text
from ..errors import DvptError
from . import render
from .plots import figures
from .records import Collection, collect
from .tables import HM_OF, Table, build_tables

FORMATS = ("md", "csv", "tex")


@dataclass
class Report:
    tables: list[Table]
    collection: Collection
    missing: list[dict] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def markdown(self) -> str:
        text = render.markdown(self.tables)
        extra = render.missing_markdown(self.missing, self.collection.unfinished)
        dupes = "".join(f"- {d}\n" for d in self.collection.duplicates)
        return text + ("\n" + extra if extra else "") + ("\n### Duplicate run folders\n\n" + dupes if dupes else "")


def parse_formats(text: str) -> list[str]:
    formats = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise DvptError(f"--format {text!r}: choose from {', '.join(FORMATS)} (comma-separated)")
    return formats


def build_report(dirs: Iterable[str | Path], hm_of: str = "means") -> Report:
    if hm_of not in HM_OF:
        raise DvptError(f"--hm-of {hm_of!r}: choose {' or '.join(HM_OF)}")
    collection = collect(dirs)
    if not collection.records and not collection.unfinished:
        raise DvptError("no run folders (metrics.json + config.yaml) found under " + ", ".join(map(str, dirs)))
    tables = build_tables(collection.records, hm_of)
    missing = [{"table": t.title, **m} for t in tables for m in t.missing]
    return Report(tables, collection, missing)


def write_report(report: Report, out: Path, formats: Sequence[str] = FORMATS, plots: bool = True) -> list[Path]:
    """``tables.md``, ``tables.tex``, ``<table>.csv``, ``missing.csv`` and ``figures/*.png``."""
    files = []
    if "md" in formats:
        files.append(write_text(out / "tables.md", report.markdown()))
    if "tex" in formats:
        files.append(write_text(out / "tables.tex", render.latex(report.tables)))
    if "csv" in formats:
        files += [write_text(out / f"{t.key}.csv", render.csv(t)) for t in report.tables]
        if report.missing or report.collection.unfinished:
            files.append(write_text(out / "missing.csv", _missing_csv(report)))
        else:
            (out / "missing.csv").unlink(missing_ok=True)  # a list from an earlier report would mislead
    if plots:
        files += figures(report.tables, out / "figures")
    report.files = files
    return files


def _missing_csv(report: Report) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["table", "dataset", "method", "shots", "missing_seeds", "run", "status", "error", "log"])
    for m in report.missing:
        seeds = " ".join(map(str, m["missing_seeds"]))
        writer.writerow([m["table"], m["dataset"], m["method"], m.get("shots", ""), seeds, "", "", "", ""])
    for u in report.collection.unfinished:
        writer.writerow(["", "", "", "", "", f"{u['sweep']}/{u['run']}", u["status"], u.get("error") or "", u["log"]])
    return buf.getvalue()
