"""Checkpoints hold only what the method owns (safetensors), never the frozen backbone.

``learnable.safetensors``: the method's state dict (parameters and persistent buffers),
with the resolved config in its metadata. ``trainer_state.pt``: optimiser state and epoch
counter, so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import DvptError
from .io import atomic_write

LEARNABLE = "learnable.safetensors"
TRAINER_STATE = "trainer_state.pt"


def save_learnable(module: nn.Module, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    # always a non-empty header: safetensors cannot read back an empty metadata dict
    meta = {"format": json.dumps("dvpt-learnable")} | {k: json.dumps(v) for k, v in (metadata or {}).items()}
    return atomic_write(path, lambda p: save_file(tensors, str(p), metadata=meta))


def load_learnable(module: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load tensors into ``module`` (strict: every key must match) and return the metadata."""
    path = Path(path)
    if not path.is_file():
        raise DvptError(f"checkpoint not found: {path}")
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types
        raise DvptError(f"checkpoint {path} is corrupt or not a safetensors file: {exc}") from None
    device = next(iter(module.state_dict().values()), torch.empty(0)).device
    missing, unexpected = module.load_state_dict({k: v.to(device) for k, v in tensors.items()}, strict=False)
    if missing or unexpected:
        raise DvptError(
            f"checkpoint {path} does not match the method: missing {sorted(missing)}, unexpected {sorted(unexpected)}"
        )
    return read_learnable_metadata(path)


def read_learnable_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON metadata saved with a learnable checkpoint (method, classnames, epoch, ...)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as handle:
            meta = handle.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types
        raise DvptError(f"checkpoint {path} is corrupt or not a safetensors file: {exc}") from None
    return {k: json.loads(v) for k, v in meta.items() if k != "format"}


def save_trainer_state(path: str | Path, state: dict[str, Any]) -> Path:
    return atomic_write(path, lambda p: torch.save(state, p))


def load_trainer_state(path: str | Path) -> dict[str, Any] | None:
    path = Path(path)
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)
