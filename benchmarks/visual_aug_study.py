"""dvpt's visual augmentation: selection on the tuning data, ablation on reported data.

Both studies are ordinary benchmark runs (``experiments.benchmark.run_config``: dvpt's
preset, the shared offline budget of presets/offline.yaml, presets/benchmark.yaml's backbone,
shots, domain and test images), each row adding ``options.<key>=<value>`` overrides; one JSON
line per finished run goes to ``<out>/<study>.jsonl`` (a benchmark record plus ``row``).
Re-running skips rows that already have their line, so an interrupted study resumes.

``select`` (tuning data only: emoji-travel, seeds 1-3, never reported): each ``visual_aug``
variant with the rest of dvpt's defaults. Search budget: one configuration per variant, its
preset values, the same as every baseline gets under the benchmark's rule (its preset plus
the shared budget, no search). Selection rule, fixed before the runs: the variant with the
highest mean HM over the tuning runs becomes the default.

``ablation`` (reported groups; a reduced set, see docs/results.md): zero-shot, CE only
(= CoOp), each component added alone, and the default with each component removed.

    python benchmarks/visual_aug_study.py select -o runs/visual-aug
    python benchmarks/visual_aug_study.py ablation -o runs/visual-aug --datasets emoji-activities,emoji-food

``--budget rule`` runs either study under the benchmark's rule instead (presets/benchmark.yaml
``rule``: its batch, epochs and precision, dvpt's lr = its anchor times the scale chosen on the
tuning data, ``--scales-from`` a ``dvpt benchmark --tuning --lr-grid`` file), so the ablation
is comparable run by run with ``dvpt benchmark``'s base-to-novel lines.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from dvpt.experiments.benchmark import _append, load_plan, read_results, record_of, run_config, with_scales_from
from dvpt.engine.runner import run_training

AUGS = ("none", "proto", "mixup", "feature", "protoview")
#: the budget both studies ran under (presets/offline.yaml's: SGD, 5 epochs of batch 64 at lr 0.05,
#: no warm-up, fp32 on the CPU), pinned so that the committed lines stay reproducible when the
#: benchmark's own rule changes
BUDGET = ["optim.epochs=5", "optim.batch_size=64", "optim.lr=0.05", "optim.warmup_epochs=0", "precision=auto"]
PLAIN = {"mi": "none", "visual_aug": "none", "infer": "soft"}

SELECT: dict[str, dict[str, str]] = {f"visual_aug={aug}": {"visual_aug": aug} for aug in AUGS}


def ablation_rows(default_aug: str) -> dict[str, dict[str, str]]:
    """CE only, + each component alone, full, and full minus each component (duplicates dropped)."""
    rows: dict[str, dict[str, str]] = {
        "zero-shot": {"method": "zeroshot"},
        "CE only (= CoOp)": PLAIN,
        "+MI infonce": PLAIN | {"mi": "infonce"},
        "+MI iic": PLAIN | {"mi": "iic"},
        **{f"+aug {aug}": PLAIN | {"visual_aug": aug} for aug in AUGS if aug != "none"},
        "+ensemble inference": PLAIN | {"infer": "ensemble"},
        "full (defaults)": {"visual_aug": default_aug},
        "full - MI": {"visual_aug": default_aug, "mi": "none"},
        "full - aug": {"visual_aug": "none"},
        "full - ensemble": {"visual_aug": default_aug, "infer": "soft"},
    }
    seen: set[tuple] = set()
    unique = {}
    for name, options in rows.items():
        key = tuple(sorted(({"visual_aug": "proto", "mi": "infonce", "infer": "ensemble"} | options).items()))
        if key not in seen:
            seen.add(key)
            unique[name] = options
    return unique


def run_study(study: str, rows: dict[str, dict[str, str]], datasets: list[str], seeds: list[int],
              tuning: bool, output: Path, budget: str = "offline", scales_from: Path | None = None) -> None:
    """Every (seed, dataset, row) without a line, seed-major so a partial study stays balanced.

    ``budget="offline"`` pins the shared offline budget (``BUDGET``) the committed lines ran
    under; ``"rule"`` keeps the benchmark rule's batch, epochs, precision and lr.
    """
    plan = load_plan(tuning=tuning, methods=["dvpt"], seeds=seeds, datasets=datasets)
    if scales_from is not None:
        plan = with_scales_from(plan, scales_from)
    pinned = BUDGET if budget == "offline" else []
    results = output / f"{study}.jsonl"
    done = {(r["row"], r["dataset"], int(r["seed"])) for r in read_results(results)}
    for seed in plan.seeds:
        for dataset in plan.datasets:
            for row, options in rows.items():
                if (row, dataset, seed) in done:
                    continue
                method = options.get("method", "dvpt")
                overrides = [f"options.{k}={v}" for k, v in options.items() if k != "method"]
                sub = type(plan)(**{**plan.__dict__, "budget": [*plan.budget, *pinned, *overrides]})
                cfg = run_config(sub, method, dataset, seed, output)
                slug = "".join(ch if ch.isalnum() else "-" for ch in row)
                metrics = run_training(cfg, output / "runs" / study / dataset / slug / f"seed{seed}")
                _append(results, {**record_of(cfg, metrics, plan), "row": row})
                logging.info("%s %s seed %d %s: base %.2f novel %.2f hm %.2f", study, dataset, seed, row,
                             metrics["base"], metrics["novel"], metrics["hm"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", choices=["select", "ablation"])
    parser.add_argument("--output", "-o", required=True, type=Path)
    parser.add_argument("--datasets", default=None, help="comma-separated (default: tuning group for select)")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--default-aug", default="proto", choices=AUGS, help="the default's visual_aug (ablation)")
    parser.add_argument("--budget", default="offline", choices=["offline", "rule"],
                        help="offline: the pinned 5-epoch budget of the committed lines; rule: presets/benchmark.yaml's")
    parser.add_argument("--scales-from", type=Path, default=None, dest="scales_from",
                        help="with --budget rule: the lr scales chosen in this tuning.jsonl")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    seeds = [int(s) for s in args.seeds.split(",")]
    datasets = args.datasets.split(",") if args.datasets else None
    if args.study == "select":
        run_study("visual-aug-select", SELECT, datasets, seeds, tuning=True, output=args.output,
                  budget=args.budget, scales_from=args.scales_from)
    else:
        if not datasets:
            parser.error("ablation needs --datasets (reported groups)")
        run_study("ablation", ablation_rows(args.default_aug), datasets, seeds, tuning=False, output=args.output,
                  budget=args.budget, scales_from=args.scales_from)


if __name__ == "__main__":
    main()
