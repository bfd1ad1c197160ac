"""Tables -> markdown, CSV and LaTeX text (two decimals; CSV keeps full precision).

In markdown and LaTeX a ``Stat`` reads ``mean ± std`` (no ± for one seed or a derived
average), a flagged row carries its mark after the method; CSV has ``<col>_mean``,
``<col>_std`` and ``<col>_n`` columns, for scripts.
"""
from __future__ import annotations

import csv as _csv
import io
from typing import Any, Iterable

from .stats import Stat
from .tables import Table

DASH = "—"
HEADERS = {"dataset": "Dataset", "method": "Method", "base": "Base", "novel": "Novel", "hm": "HM", "seeds": "Seeds"}
TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _header(column: str) -> str:
    return HEADERS.get(column, column)


def _tables(tables: Table | Iterable[Table]) -> list[Table]:
    return [tables] if isinstance(tables, Table) else list(tables)


def cell_text(value: Any, pm: str = "±", digits: int = 2) -> str:
    if value is None:
        return DASH
    if isinstance(value, Stat):
        if value.mean is None:
            return DASH
        text = f"{value.mean:.{digits}f}"
        return f"{text} {pm} {value.std:.{digits}f}" if value.std is not None else text
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _row_texts(table: Table, row: dict[str, Any], pm: str, escape=lambda s: s) -> list[str]:
    out = []
    for col in table.columns:
        text = escape(cell_text(row.get(col), pm))
        if col == "method" and row.get("flag"):
            text += row["flag"]
        out.append(text)
    return out


def markdown(tables: Table | Iterable[Table]) -> str:
    """Each table as ``### title``, its caption in italics, the grid, then its notes."""
    parts = []
    for t in _tables(tables):
        lines = [f"### {t.title}", "", f"*{t.caption}*", "",
                 "| " + " | ".join(_header(c) for c in t.columns) + " |",
                 "|" + "|".join("---" if c in ("dataset", "method") else "---:" for c in t.columns) + "|"]
        lines += ["| " + " | ".join(_row_texts(t, row, "±")) + " |" for row in t.rows]
        lines += [""] + [f"- {note}" for note in t.notes] if t.notes else []
        parts.append("\n".join(lines).rstrip() + "\n")
    return "\n".join(parts)


def csv(table: Table) -> str:
    """One table as CSV: text columns as they are, each Stat as mean/std/n columns."""
    stat_cols = [c for c in table.columns if any(isinstance(r.get(c), Stat) for r in table.rows)]
    header: list[str] = []
    for c in table.columns:
        header += [f"{c}_mean", f"{c}_std", f"{c}_n"] if c in stat_cols else [c]
    header.append("flag")
    buf = io.StringIO()
    writer = _csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in table.rows:
        out: list[Any] = []
        for c in table.columns:
            v = row.get(c)
            if c in stat_cols:
                out += [v.mean, v.std, v.n] if isinstance(v, Stat) else ["", "", ""]
            else:
                out.append("" if v is None else v)
        writer.writerow(["" if x is None else x for x in out] + [row.get("flag", "")])
    return buf.getvalue()


def _tex(text: str) -> str:
    return "".join(TEX_ESCAPES.get(ch, ch) for ch in text).replace("±", r"$\pm$").replace("—", "--").replace(
        "†", r"$^\dagger$")


def latex(tables: Table | Iterable[Table]) -> str:
    """booktabs tables (``\\usepackage{booktabs}``), a rule between dataset blocks."""
    parts = []
    for t in _tables(tables):
        align = "".join("l" if c in ("dataset", "method") else "r" for c in t.columns)
        lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{_tex(t.title)}. {_tex(t.caption)}}}",
                 rf"\label{{tab:{t.key}}}", rf"\begin{{tabular}}{{{align}}}", r"\toprule",
                 " & ".join(_tex(_header(c)) for c in t.columns) + r" \\", r"\midrule"]
        previous = None
        for row in t.rows:
            block = row.get("dataset")
            if previous is not None and block != previous:
                lines.append(r"\midrule")
            previous = block
            texts = _row_texts(t, row, "±")
            lines.append(" & ".join(_tex(x) for x in texts) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def missing_markdown(missing: list[dict[str, Any]], unfinished: list[dict[str, Any]]) -> str:
    """The runs a table lacks, and sweep entries with no metrics: never averaged over silently."""
    if not missing and not unfinished:
        return ""
    lines = ["### Missing runs", ""]
    for m in missing:
        shots = f", {m['shots']} shots" if m.get("shots") is not None else ""
        lines.append(f"- {m['table']}: {m['method']} on {m['dataset']}{shots}: seeds {', '.join(map(str, m['missing_seeds']))}")
    for u in unfinished:
        why = f": {u['error']}" if u.get("error") else ""
        lines.append(f"- {u['sweep']}/{u['run']}: no metrics.json (sweep.json status: {u['status']}{why}); log: {u['log']}")
    return "\n".join(lines) + "\n"
