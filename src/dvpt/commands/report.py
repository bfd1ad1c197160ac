"""``dvpt report``: paper-style tables (markdown, CSV, LaTeX) and figures from run folders.

Reads only ``metrics.json`` and ``config.yaml`` (recursively) and any ``sweep.json``; runs
missing from a table are listed, never averaged over silently.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    if args.update_doc or args.update_readme:
        return _update_doc(args)
    from ..report import build_report, write_report
    from ..report.build import parse_formats

    formats = parse_formats(args.format)
    report = build_report(args.dirs, args.hm_of)
    out = Path(args.output or Path(args.dirs[0]) / "report")
    files = write_report(report, out, formats, plots=not args.no_plots)
    print(report.markdown())
    print(f"wrote {len(files)} files to {out}", file=sys.stderr)
    if report.missing or report.collection.unfinished:
        print(f"{len(report.missing) + len(report.collection.unfinished)} missing runs are listed above",
              file=sys.stderr)
    return 0


def _update_doc(args: argparse.Namespace) -> int:
    """Benchmark result files (``*.jsonl``) -> the marked tables of a markdown file (and its figures)."""
    from ..errors import DvptError
    from ..experiments.benchmark_figures import write_figures
    from ..experiments.benchmark_tables import (README_BEGIN, README_END, read_result_dir, render_readme,
                                                render_results, update_doc)

    if len(args.dirs) != 1:
        raise DvptError("--update-doc/--update-readme take one results folder (e.g. docs/results)")
    results = read_result_dir(Path(args.dirs[0]))
    if args.update_doc:
        block = render_results(results)
        changed = update_doc(Path(args.update_doc), block)
        figures = [] if args.no_plots else write_figures(results, Path(args.update_doc).parent / "figures")
        print(block)
        print(f"{args.update_doc}: {'updated' if changed else 'already up to date'}; "
              f"{len(figures)} figures written", file=sys.stderr)
    if args.update_readme:
        changed = update_doc(Path(args.update_readme), render_readme(results), README_BEGIN, README_END)
        print(f"{args.update_readme}: {'updated' if changed else 'already up to date'}", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("report", help="tables and figures from run folders", description=__doc__)
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="run folders or sweep folders (searched recursively)")
    parser.add_argument("--output", "-o", help="where tables and figures go (default: DIR/report)")
    parser.add_argument("--format", default="md,csv,tex", help="comma-separated: md, csv, tex (default: all)")
    parser.add_argument("--hm-of", default="means", choices=["means", "per-dataset"], dest="hm_of",
                        help="averaged HM: HM of the averaged base and novel (means; the literature's) "
                             "or the mean of per-dataset HMs")
    parser.add_argument("--update-doc", metavar="FILE",
                        help="DIR holds `dvpt benchmark` result files (*.jsonl): rewrite FILE's benchmark tables from them")
    parser.add_argument("--update-readme", metavar="FILE", dest="update_readme",
                        help="DIR holds `dvpt benchmark` result files: rewrite FILE's benchmark summary table from them")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    parser.set_defaults(func=run)
