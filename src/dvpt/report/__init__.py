"""Paper-style tables and figures from run folders (``metrics.json`` + ``config.yaml`` only).

For a script: ``tables.base2novel_table(records)`` -> ``Table`` and
``render.markdown(table)``, with records as dicts ``dataset, method, seed, base, novel, hm``;
``build_report(dirs)`` / ``write_report(report, out)`` do what ``dvpt report`` does.
"""
from . import render, tables
from .build import Report, build_report, write_report
from .records import collect
from .stats import Stat, harmonic_mean
from .tables import Table, base2novel_table, fewshot_table, transfer_table

__all__ = ["Report", "Stat", "Table", "base2novel_table", "build_report", "collect", "fewshot_table",
           "harmonic_mean", "render", "tables", "transfer_table", "write_report"]
