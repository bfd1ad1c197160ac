"""The one training loop every method shares.

Per epoch: set the learning rate (constant warm-up, then cosine), iterate batches, ask the
method for its named losses, let the method's ``backward_and_step`` hook apply them, then
``on_epoch_end`` and a checkpoint. Each call gets a ``StepContext`` (epoch, step, the epoch's
random stream) built here from the run seed. A run folder with a checkpoint resumes after its
last finished epoch; randomness depends on (seed, epoch) only, so a resumed run equals an
uninterrupted one.
"""
from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch

from ..config.schema import OptimConfig
from ..errors import DvptError
from ..methods.base import PromptMethod, StepContext
from .checkpoint import LEARNABLE, load_learnable, load_trainer_state, save_learnable
from .device import autocast, grad_scaler
from .progress import progress

log = logging.getLogger(__name__)


class Batches(Protocol):
    def __len__(self) -> int: ...
    def epoch(self, epoch: int): ...


def learning_rate(cfg: OptimConfig, epoch: int) -> float:
    """LR of 0-based ``epoch``: ``warmup_lr`` during warm-up, then cosine (T_max = epochs)."""
    if epoch < cfg.warmup_epochs:
        return cfg.warmup_lr
    if cfg.scheduler == "constant":
        return cfg.lr
    step = epoch - cfg.warmup_epochs
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * step / max(1, cfg.epochs)))


def build_optimizer(cfg: OptimConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """SGD with momentum or AdamW (``optim.optimizer`` is checked when the config is built)."""
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


@dataclass
class Trainer:
    method: PromptMethod
    batches: Batches
    optim: OptimConfig
    device: torch.device
    #: the run seed: the methods' random stream of each epoch derives from it (``StepContext``)
    seed: int
    precision: str = "fp32"
    checkpoint_dir: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    #: called after each finished (and saved) epoch with its 1-based number
    epoch_callbacks: list[Callable[[int], None]] = field(default_factory=list)

    def trainable(self) -> list[torch.nn.Parameter]:
        return [p for p in self.method.parameters() if p.requires_grad]

    def fit(self) -> list[dict[str, float]]:
        """Train for ``optim.epochs``; returns per-epoch mean losses (the history)."""
        params = self.trainable()
        if not params or self.optim.epochs <= 0:
            log.info("%s has nothing to train", self.method.name)
            self.method.finalize(0)
            return []
        optimizer = build_optimizer(self.optim, params)
        scaler = grad_scaler(self.device, self.precision)
        start, history, finalized = self._resume(optimizer)
        if finalized:
            return history
        for epoch in range(start, self.optim.epochs):
            lr = learning_rate(self.optim, epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            ctx = StepContext.for_epoch(self.seed, epoch, self.optim.epochs)
            history.append(self._run_epoch(ctx, optimizer, scaler) | {"epoch": epoch + 1, "lr": lr})
            bad = sorted(k for k, v in history[-1].items() if not math.isfinite(v))
            if bad:  # stop before a NaN prompt is saved or evaluated as if it were a result
                raise DvptError(
                    f"training diverged in epoch {epoch + 1}: {', '.join(bad)} is not finite; lower the learning "
                    f"rate (now {lr:g}) or train in fp32 (precision {self.precision})"
                )
            log.info("epoch %d/%d %s", epoch + 1, self.optim.epochs,
                     " ".join(f"{k}={v:.4g}" for k, v in history[-1].items() if k not in ("epoch",)))
            self.method.on_epoch_end(ctx)
            self._save(optimizer, epoch + 1, history, finalized=False)
            for callback in self.epoch_callbacks:
                callback(epoch + 1)
        self.method.finalize(self.optim.epochs)
        self._save(optimizer, self.optim.epochs, history, finalized=True)
        return history

    def _run_epoch(self, ctx: StepContext, optimizer: torch.optim.Optimizer, scaler) -> dict[str, float]:
        self.method.train()
        sums: dict[str, float] = defaultdict(float)
        steps = 0
        for batch in progress(self.batches.epoch(ctx.epoch), desc=f"epoch {ctx.epoch + 1}/{self.optim.epochs}",
                              total=len(self.batches)):
            batch = batch.to(self.device)
            optimizer.zero_grad(set_to_none=True)
            with autocast(self.device, self.precision):
                losses = self.method.losses(batch, ctx.at_step(steps))
            self.method.backward_and_step(losses, optimizer, scaler)
            for key, value in losses.items():
                sums[key] += float(value.detach())
            steps += 1
        self.method.eval()
        return {k: v / max(1, steps) for k, v in sums.items()}

    # ---- checkpoints ------------------------------------------------------------------
    def _save(self, optimizer: torch.optim.Optimizer, epoch: int, history: list[dict[str, float]],
              finalized: bool) -> None:
        if self.checkpoint_dir is None:
            return
        # one file, one rename: weights and optimiser state always belong to the same epoch
        save_learnable(
            self.method, self.checkpoint_dir / LEARNABLE, self.metadata | {"epoch": epoch},
            trainer_state={"epoch": epoch, "optimizer": optimizer.state_dict(), "history": history,
                           "finalized": finalized},
        )

    def _resume(self, optimizer: torch.optim.Optimizer) -> tuple[int, list[dict[str, float]], bool]:
        """(first epoch to run, history so far, whether training already finished)."""
        if self.checkpoint_dir is None:
            return 0, [], False
        state = load_trainer_state(self.checkpoint_dir)
        if state is None:
            return 0, [], False
        load_learnable(self.method, self.checkpoint_dir / LEARNABLE)
        optimizer.load_state_dict(state["optimizer"])
        log.info("resuming from epoch %d (%s)", state["epoch"], self.checkpoint_dir)
        return int(state["epoch"]), list(state["history"]), bool(state.get("finalized"))
