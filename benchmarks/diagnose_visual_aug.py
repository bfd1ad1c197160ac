"""Why ``visual_aug=proto`` hurts novel classes: two measurements on the tuning data.

For one benchmark run (dvpt's preset + the shared offline budget, presets/benchmark.yaml's
data; tuning group by default, never reported), this trains dvpt base-to-novel and records:

1. **Gradient conflict, over training.** At every step (every N-th with ``--every``) the loss is
   ``L = CE + lambda_mi L_mi + lambda_aug L_aug``; the script takes the gradient of each
   weighted term separately with respect to the learnable context ``v`` (and to every
   trainable parameter) and logs ``cos(grad CE, grad lambda_mi L_mi)`` (and with ``L_aug``),
   averaged per epoch, with the share of steps where the cosine is negative (the terms pull
   against each other). The terms are captured by wrapping the method's own ``mi_loss`` and
   the prototype network's ``alignment`` on the instance, so the training itself is the
   ordinary one (same draws, same update).
2. **How far the shift moves prompts, and what it costs.** After training, for each class:
   the shift norm ``|h(e_c)|`` relative to the context's ``mean_m |v_m|``, and the movement of
   the soft prompt ``1 - cos(t^s_c(shifted), t^s_c(unshifted))``; base classes are shifted by
   their visual prototype, novel classes by their text proxy (what inference does). Then the
   accuracy of each half with the shift on (the method as trained) and switched off at test
   time (``h = 0``), and across novel classes the correlation between a class's movement and
   its accuracy change.

One JSON line per run (``--out``, appended):

    python benchmarks/diagnose_visual_aug.py --seeds 1,2 --out docs/results/diagnosis.jsonl
    python benchmarks/diagnose_visual_aug.py --seeds 1 --set options.visual_aug=none --out ...
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dvpt.data.sampling import subsample_classes
from dvpt.engine.session import Session
from dvpt.experiments.benchmark import _append, load_plan, run_config
from dvpt.report.stats import harmonic_mean

#: the offline budget the study ran under (benchmarks/visual_aug_study.py)
BUDGET = ["optim.epochs=5", "optim.batch_size=64", "optim.lr=0.05", "optim.warmup_epochs=0", "precision=auto"]

log = logging.getLogger("diagnose")


def _flat_grad(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)])


def _cos(a: torch.Tensor, b: torch.Tensor) -> float | None:
    if float(a.norm()) == 0.0 or float(b.norm()) == 0.0:
        return None
    return float(F.cosine_similarity(a, b, dim=0))


class GradientProbe:
    """Wraps ``method.losses`` to log the cosine between each weighted term's gradient and CE's."""

    def __init__(self, method, every: int = 1) -> None:
        self.method = method
        #: measure every ``every``-th step (each measurement costs a backward pass per term)
        self.every = max(1, every)
        self.steps = 0
        self.captured: dict[str, torch.Tensor] = {}
        self.per_epoch: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        self._wrap()

    def _wrap(self) -> None:
        method, captured = self.method, self.captured
        mi_loss, losses = method.mi_loss, method.losses

        def mi_probe(*args, **kwargs):
            captured["mi"] = out = mi_loss(*args, **kwargs)
            return out

        method.mi_loss = mi_probe
        if method.proto is not None:
            alignment = method.proto.alignment

            def align_probe(*args, **kwargs):
                captured["aug"] = out = alignment(*args, **kwargs)
                return out

            method.proto.alignment = align_probe

        def losses_probe(batch, ctx):
            captured.clear()
            terms = losses(batch, ctx)
            self._measure(terms["loss"], ctx.epoch + 1)
            return terms

        method.losses = losses_probe

    def _measure(self, total: torch.Tensor, epoch: int) -> None:
        self.steps += 1
        if (self.steps - 1) % self.every:
            return
        opts = self.method.options
        weighted = {}
        if "mi" in self.captured and opts.mi != "none":
            weighted["mi"] = opts.lambda_mi * self.captured["mi"]
        if "aug" in self.captured:
            weighted["aug"] = opts.lambda_aug * self.captured["aug"]
        ce = total - sum(weighted.values()) if weighted else total
        every = [p for p in self.method.parameters() if p.requires_grad]
        # the context's slice of the flat gradient: one backward pass per term serves both scopes
        start = 0
        for p in every:
            if p is self.method.prompt_learner.ctx:
                break
            start += p.numel()
        ctx = slice(start, start + self.method.prompt_learner.ctx.numel())
        g_ce = _flat_grad(ce, every)
        for name, term in weighted.items():
            g = _flat_grad(term, every)
            for scope, part in (("ctx", ctx), ("all", slice(None))):
                cos = _cos(g_ce[part], g[part])
                if cos is not None:
                    self.per_epoch[epoch][f"cos_ce_{name}_{scope}"].append(cos)
                    ratio = float(g[part].norm() / g_ce[part].norm().clamp_min(1e-12))
                    self.per_epoch[epoch][f"norm_ratio_{name}_{scope}"].append(ratio)

    def summary(self) -> list[dict[str, Any]]:
        rows = []
        for epoch in sorted(self.per_epoch):
            row: dict[str, Any] = {"epoch": epoch}
            for key, values in sorted(self.per_epoch[epoch].items()):
                row[key] = round(statistics.fmean(values), 4)
                if key.startswith("cos_"):
                    row[key.replace("cos_", "negative_share_")] = round(sum(v < 0 for v in values) / len(values), 3)
            rows.append(row)
        return rows


@torch.no_grad()
def shift_effect(session: Session, method, base, novel, templates) -> dict[str, Any]:
    """Shift size, prompt movement and accuracy with the shift on vs off, per half."""
    out: dict[str, Any] = {}
    v_norm = method.prompt_learner.ctx.detach().float().norm(dim=-1).mean()
    for half, split in (("base", base), ("novel", novel)):
        method.set_classnames(split.classnames, templates)
        proto = method.proto
        hand = method.hand_features()
        emb = proto.eval_embeddings(method.classnames, hand, method.options.proto_eval == "bank")
        shift = proto(emb, method.shift_limit())
        shifted = method.soft_features(shift)
        plain = F.normalize(method.prompt_learner(method.prompt_learner.context(torch.zeros_like(shift))).float(), dim=-1)
        move = 1 - (shifted * plain).sum(-1)
        row: dict[str, Any] = {
            "shift_over_context": round(float(shift.norm(dim=-1).mean() / v_norm), 4),
            "movement_1_minus_cos": round(float(move.mean()), 5),
        }
        infer = method.options.infer
        for view in dict.fromkeys((infer, "soft")):  # the method's own inference, and the soft view alone
            method.options.infer = view
            try:
                on = session.evaluate(method, split.test)
                method.proto = None  # switched off at test time: the learned context alone (h = 0)
                off = session.evaluate(method, split.test)
            finally:
                method.proto, method.options.infer = proto, infer
            tag = "" if view == infer else f"{view}_"
            row[f"{tag}acc_shift_on"], row[f"{tag}acc_shift_off"] = round(on.accuracy, 2), round(off.accuracy, 2)
            delta = torch.tensor(on.per_class_accuracy) - torch.tensor(off.per_class_accuracy)
            corr = torch.corrcoef(torch.stack([move.cpu(), delta]))[0, 1]
            row[f"{tag}corr_movement_vs_acc_change"] = round(float(corr), 3)
        out[half] = row
    out["hm_shift_on"] = round(harmonic_mean(out["base"]["acc_shift_on"], out["novel"]["acc_shift_on"]), 2)
    out["hm_shift_off"] = round(harmonic_mean(out["base"]["acc_shift_off"], out["novel"]["acc_shift_off"]), 2)
    return out


def diagnose(dataset: str | None, seed: int, overrides: list[str], tuning: bool, cache: Path,
             every: int = 1) -> dict[str, Any]:
    plan = load_plan(tuning=tuning, methods=["dvpt"], seeds=[seed], datasets=[dataset] if dataset else None)
    plan.budget = [*plan.budget, *BUDGET, *overrides]
    dataset = plan.datasets[0]
    cfg = run_config(plan, "dvpt", dataset, seed, cache)
    session = Session(cfg)
    full = session.load_dataset()
    sampled = session.few_shot(full)
    base, novel = subsample_classes(sampled, "base"), subsample_classes(sampled, "novel")
    method = session.build_method(base.classnames, full.templates)
    probe = GradientProbe(method, every)
    session.train(method, base.train)
    record: dict[str, Any] = {
        "dataset": dataset, "seed": seed, "tuning": tuning, "overrides": overrides,
        "options": {k: getattr(method.options, k) for k in ("mi", "lambda_mi", "visual_aug", "lambda_aug", "infer")},
        "probe_every": every, "gradients": probe.summary(),
    }
    if method.proto is not None:
        record["shift"] = shift_effect(session, method, base, novel, full.templates)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=None, help="default: the benchmark's tuning group")
    parser.add_argument("--seeds", default="1")
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="key.path=value override")
    parser.add_argument("--reported", action="store_true", help="use the reported plan (never for selection)")
    parser.add_argument("--cache", type=Path, default=Path("runs/diagnose"), help="feature cache folder")
    parser.add_argument("--every", type=int, default=1, help="measure the gradients every N-th step")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines file, appended")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for seed in [int(s) for s in args.seeds.split(",")]:
        record = diagnose(args.dataset, seed, args.overrides, not args.reported, args.cache, args.every)
        _append(args.out, record)
        print(json.dumps(record))


if __name__ == "__main__":
    main()
