"""Figures from tables (PNG, matplotlib's Agg canvas: no display, no global pyplot state).

- HM per method (bar chart of the ``Average`` rows of a base-to-novel table);
- base vs novel scatter (per-dataset points faint, the average of each method bold);
- few-shot curves: average accuracy against shots, when a table has more than one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..engine.io import atomic_write
from .stats import Stat
from .tables import Table


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    return atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=150))


def _mean(value: Any) -> float | None:
    return value.mean if isinstance(value, Stat) else None


def _averages(table: Table) -> list[dict[str, Any]]:
    return [r for r in table.rows if r.get("dataset") == "Average" and _mean(r.get("hm")) is not None]


def hm_bar(table: Table, path: Path) -> Path | None:
    rows = _averages(table)
    if not rows:
        return None
    fig = Figure(figsize=(max(4.0, 0.8 * len(rows) + 1.5), 3.2))
    ax = fig.add_subplot()
    names, values = [r["method"] for r in rows], [r["hm"].mean for r in rows]
    bars = ax.bar(names, values, color="#4C72B0")
    ax.bar_label(bars, labels=[f"{v:.1f}" for v in values], fontsize=8)
    ax.set_ylabel("average HM (%)")
    ax.set_ylim(0, min(100.0, max(values) * 1.15 + 1))
    ax.set_title(table.title, fontsize=9)
    ax.tick_params(axis="x", labelrotation=30)
    return _save(fig, path)


def base_novel_scatter(table: Table, path: Path) -> Path | None:
    rows = [r for r in table.rows if _mean(r.get("base")) is not None and _mean(r.get("novel")) is not None]
    if not rows:
        return None
    fig = Figure(figsize=(4.8, 4.2))
    ax = fig.add_subplot()
    methods = list(dict.fromkeys(r["method"] for r in rows))
    colours = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    for r in rows:
        average = r["dataset"] == "Average"
        ax.scatter(r["base"].mean, r["novel"].mean, color=colours[r["method"]], alpha=1.0 if average else 0.25,
                   s=60 if average else 14, marker="*" if average else "o",
                   label=r["method"] if average else None, edgecolors="black" if average else "none")
    values = [v for r in rows for v in (r["base"].mean, r["novel"].mean)]
    pad = max(1.0, 0.05 * (max(values) - min(values)))
    lo, hi = max(0.0, min(values) - pad), min(100.0, max(values) + pad)
    ax.plot([lo, hi], [lo, hi], color="grey", linewidth=0.6, linestyle="--")  # base = novel
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("base accuracy (%)")
    ax.set_ylabel("novel accuracy (%)")
    ax.set_title(f"{table.title}\n(stars: averages; dots: datasets; dashed: base = novel)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def fewshot_curves(table: Table, path: Path) -> Path | None:
    shot_cols = [c for c in table.columns if c.endswith(" shots")]
    rows = [r for r in table.rows if r.get("dataset") == "Average"]
    if len(shot_cols) < 2 or not rows:
        return None
    shots = [int(c.split()[0]) for c in shot_cols]
    fig = Figure(figsize=(4.8, 3.6))
    ax = fig.add_subplot()
    drawn = False
    for r in rows:
        points = [(k, r[c].mean) for k, c in zip(shots, shot_cols) if _mean(r.get(c)) is not None]
        if points:
            ax.plot(*zip(*points), marker="o", label=r["method"])
            drawn = True
    if not drawn:
        return None
    ax.set_xscale("log", base=2)
    ax.set_xticks(shots, [str(k) for k in shots])
    ax.set_xlabel("shots per class")
    ax.set_ylabel("average accuracy (%)")
    ax.set_title(table.title, fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)


def figures(tables: list[Table], folder: Path) -> list[Path]:
    """Every figure the tables allow, into ``folder``; returns the files written."""
    out = []
    for t in tables:
        for name, draw in (("hm", hm_bar), ("base-novel", base_novel_scatter), ("curves", fewshot_curves)):
            written = draw(t, folder / f"{t.key}-{name}.png")
            if written:
                out.append(written)
    return out
