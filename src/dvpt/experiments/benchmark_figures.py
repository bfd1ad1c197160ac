"""Figures of ``dvpt benchmark`` from its JSON lines alone (PNG, matplotlib's Agg canvas).

Written next to the doc by ``dvpt report DIR --update-doc FILE`` (``<FILE's folder>/figures``),
so the figures and the tables always come from the same result files.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..engine.io import atomic_write
from .benchmark_tables import bootstrap_ci

BASE_NOVEL = "benchmark-base-novel.png"
CURVE = "benchmark-budget-curve.png"
FEWSHOT = "benchmark-fewshot.png"


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    # no timestamp or version in the file: the same results give the same bytes
    return atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=120, metadata={"Software": None}))


def base_novel_figure(records: list[dict[str, Any]], path: Path) -> Path:
    """Mean base and novel accuracy per method with 95% bootstrap intervals over the runs."""
    methods = list(dict.fromkeys(r["method"] for r in records))
    fig = Figure(figsize=(max(4.5, 0.9 * len(methods) + 1.5), 3.4))
    ax = fig.add_subplot()
    for offset, metric, colour in ((-0.2, "base", "#4c72b0"), (0.2, "novel", "#dd8452")):
        means, errors = [], [[], []]
        for method in methods:
            mean, lo, hi = bootstrap_ci([r[metric] for r in records if r["method"] == method])
            means.append(mean)
            errors[0].append(mean - lo)
            errors[1].append(hi - mean)
        ax.bar([i + offset for i in range(len(methods))], means, width=0.4, yerr=errors, capsize=3,
               color=colour, label=metric)
    low = min(r[m] for r in records for m in ("base", "novel"))
    ax.set_ylim(max(0.0, low - 8), None)
    ax.set_xticks(range(len(methods)), methods, rotation=30)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"base-to-novel, {len(records)} runs, 95% intervals")
    ax.legend()
    return _save(fig, path)


def curve_figure(records: list[dict[str, Any]], path: Path) -> Path:
    """Base, novel and HM against epochs, one line per method (mean over seeds)."""
    fig = Figure(figsize=(9.0, 3.0))
    methods = list(dict.fromkeys(r["method"] for r in records))
    for index, metric in enumerate(("base", "novel", "hm"), 1):
        ax = fig.add_subplot(1, 3, index)
        for method in methods:
            epochs = sorted({r["epochs"] for r in records if r["method"] == method})
            values = [statistics.fmean(r[metric] for r in records if r["method"] == method and r["epochs"] == e)
                      for e in epochs]
            if len(epochs) == 1:  # a reference that does not train (zero-shot): a level line
                ax.axhline(values[0], linestyle="--", color="grey", label=method)
            else:
                ax.plot(epochs, values, marker="o", label=method)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("epochs")
        ax.set_title(metric)
    fig.axes[0].set_ylabel("accuracy (%)")
    fig.axes[0].legend()
    return _save(fig, path)


def fewshot_figure(records: list[dict[str, Any]], path: Path) -> Path:
    """Accuracy against shots, one line per method (mean over the (dataset, seed) runs, 95% intervals).

    Zero-shot trains on nothing: a level line at its mean.
    """
    fig = Figure(figsize=(5.0, 3.4))
    ax = fig.add_subplot()
    for method in dict.fromkeys(r["method"] for r in records):
        shots = sorted({int(r["shots"]) for r in records if r["method"] == method})
        if shots == [0]:
            ax.axhline(statistics.fmean(r["accuracy"] for r in records if r["method"] == method),
                       linestyle="--", color="grey", label=method)
            continue
        cis = [bootstrap_ci([r["accuracy"] for r in records if r["method"] == method and int(r["shots"]) == k])
               for k in shots]
        ax.errorbar(shots, [c[0] for c in cis], yerr=[[c[0] - c[1] for c in cis], [c[2] - c[0] for c in cis]],
                    marker="o", capsize=3, label=method)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("shots per class")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"few-shot, all classes, {len(records)} runs, 95% intervals")
    ax.legend(fontsize="small")
    return _save(fig, path)


def write_figures(results: dict[str, list[dict[str, Any]]], folder: Path) -> list[Path]:
    """Every figure the result files allow, into ``folder``."""
    files = []
    if results.get("base2novel"):
        files.append(base_novel_figure(results["base2novel"], folder / BASE_NOVEL))
    if results.get("budget-curve"):
        files.append(curve_figure(results["budget-curve"], folder / CURVE))
    if results.get("fewshot"):
        files.append(fewshot_figure(results["fewshot"], folder / FEWSHOT))
    return files
