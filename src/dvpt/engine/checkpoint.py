"""Checkpoints hold only what the method owns (safetensors), never the frozen backbone.

``learnable.safetensors`` is the whole checkpoint, written atomically as one unit: the
method's state dict (parameters and persistent buffers), the resolved config in its
metadata, and -- for a run folder -- the trainer state (optimiser tensors under the
``trainer_state.`` prefix, epoch, history and ``finalized`` as JSON metadata). One file
means the weights and the optimiser can never come from different epochs, and safetensors
+ JSON means reading a run folder can never execute code (a pickled ``trainer_state.pt``
of older versions is refused, not loaded).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import DvptError
from .io import atomic_write

LEARNABLE = "learnable.safetensors"
LEGACY_TRAINER_STATE = "trainer_state.pt"
TRAINER_PREFIX = "trainer_state."
_TRAINER_META = "trainer_state"
_DIGEST_META = "tensor_digest"


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes: flipped bytes are caught on load."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _encode(value: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    """JSON skeleton of a nested optimiser state; tensors moved into ``tensors`` by name."""
    if isinstance(value, torch.Tensor):
        name = TRAINER_PREFIX + path
        tensors[name] = value.detach().cpu().contiguous().clone()
        return {"__tensor__": name}
    if isinstance(value, dict):
        return {"__dict__": [[k, _encode(v, tensors, f"{path}.{k}")] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [_encode(v, tensors, f"{path}.{i}") for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint ({path})")


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, dict) and "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if isinstance(value, dict) and "__dict__" in value:
        return {k: _decode(v, tensors) for k, v in value["__dict__"]}
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    return value


def save_learnable(module: nn.Module, path: str | Path, metadata: dict[str, Any] | None = None,
                   trainer_state: dict[str, Any] | None = None) -> Path:
    """One atomic file: the module's tensors (+ the trainer state when given) and a digest."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    # always a non-empty header: safetensors cannot read back an empty metadata dict
    meta = {"format": json.dumps("dvpt-learnable")} | {k: json.dumps(v) for k, v in (metadata or {}).items()}
    if trainer_state is not None:
        meta[_TRAINER_META] = json.dumps(_encode(trainer_state, tensors, "state"))
    meta[_DIGEST_META] = json.dumps(tensor_digest(tensors))
    return atomic_write(path, lambda p: save_file(tensors, str(p), metadata=meta))


def _json_or_none(text: str) -> Any:
    """A stored JSON value, or None when it is not JSON (then it cannot match any digest)."""
    try:
        return json.loads(text)
    except ValueError:
        return None


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    if not path.is_file():
        raise DvptError(f"checkpoint not found: {path}")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as handle:
            raw = handle.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types
        raise DvptError(f"checkpoint {path} is corrupt or not a safetensors file: {exc}") from None
    stored = raw.get(_DIGEST_META)
    if stored is not None and _json_or_none(stored) != tensor_digest(tensors):
        raise DvptError(f"checkpoint {path} is corrupt: its tensors do not match the stored digest; "
                        "retrain or restore the file")
    return tensors, raw


def load_learnable(module: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load tensors into ``module`` (strict: every key must match, but for the module's
    ``retired_keys``, state older versions saved) and return the metadata."""
    path = Path(path)
    tensors, _ = _read(path)
    retired = getattr(module, "retired_keys", frozenset())
    own = {k: v for k, v in tensors.items() if not k.startswith(TRAINER_PREFIX) and k not in retired}
    device = next(iter(module.state_dict().values()), torch.empty(0)).device
    missing, unexpected = module.load_state_dict({k: v.to(device) for k, v in own.items()}, strict=False)
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
        return {k: json.loads(v) for k, v in meta.items() if k not in ("format", _TRAINER_META, _DIGEST_META)}
    except DvptError:
        raise
    except Exception as exc:  # noqa: BLE001 - safetensors and json raise several types
        raise DvptError(f"checkpoint {path} is corrupt or not a safetensors file: {exc}") from None


def load_trainer_state(checkpoint_dir: str | Path) -> dict[str, Any] | None:
    """The trainer state stored in ``checkpoint_dir/learnable.safetensors``; None before the first save.

    A pickled ``trainer_state.pt`` (older versions) is refused: unpickling runs code.
    """
    checkpoint_dir = Path(checkpoint_dir)
    legacy = checkpoint_dir / LEGACY_TRAINER_STATE
    if legacy.exists():
        raise DvptError(f"{legacy} is a pickled trainer state of an older dvpt, which is never loaded (it could run "
                        f"code); delete it to resume from {checkpoint_dir / LEARNABLE}, or start a new run folder")
    path = checkpoint_dir / LEARNABLE
    if not path.exists():
        return None
    tensors, raw = _read(path)
    if _TRAINER_META not in raw:
        return None
    try:
        state = _decode(json.loads(raw[_TRAINER_META]), tensors)
    except (KeyError, ValueError, TypeError) as exc:
        raise DvptError(f"checkpoint {path} has an unreadable trainer state ({exc}); start a new run folder") from None
    if not isinstance(state, dict) or "epoch" not in state or "optimizer" not in state:
        raise DvptError(f"checkpoint {path} has an incomplete trainer state; start a new run folder")
    return state
