"""Backbones: frozen vision-language models behind one interface (see ``base.Backbone``)."""
from __future__ import annotations

from ..registry import BACKBONES
from .base import Backbone, Tokens
from . import hf_clip  # noqa: F401  (registers tiny-random, vit-b16-random)

__all__ = ["Backbone", "Tokens", "load_backbone", "BACKBONES"]

_cache: dict[tuple[str, str, str | None, bool], Backbone] = {}


def _register_optional() -> None:
    try:
        from . import micro  # noqa: F401  (registers micro)
    except ImportError:  # pragma: no cover - micro ships with the package
        pass
    try:
        from . import open_clip  # noqa: F401  (registers openclip-tiny-random; needs the [openclip] extra)
    except ImportError:
        pass


_register_optional()


def load_backbone(name: str, device: str | None = None, checkpoint: str | None = None,
                  half: bool = False) -> Backbone:
    """A frozen backbone by registered name (``micro``, ``tiny-random``), hub id, folder or
    ``openclip:<model>[/<tag>]``; ``checkpoint``: a local weights file for an ``openclip:`` name;
    ``half``: its weights cast as the official fp16 code has them (``Backbone.half_weights``).

    Backbones are shared within a process: they are frozen, so every method may use the
    same instance (a half one is an instance of its own).
    """
    from ..errors import BackboneError

    device = device or "cpu"
    key = (name, device, checkpoint, half)
    if checkpoint and not name.startswith("openclip:"):
        raise BackboneError(
            f"backbone_checkpoint={checkpoint!r} applies to openclip:<model> backbones, not {name!r}; for a "
            "transformers CLIP pass its folder as --backbone DIR, or use --backbone openclip:<model>")
    if key not in _cache:
        if name in BACKBONES:
            backbone = BACKBONES.get(name)()
        elif name.startswith("openclip:"):
            try:
                from .open_clip import load_open_clip
            except ImportError:
                raise BackboneError(
                    f"--backbone {name!r} needs open_clip: pip install -e \".[openclip]\"") from None
            backbone = load_open_clip(name, checkpoint)
        else:
            backbone = hf_clip.load_hf_clip(name)
        backbone = backbone.freeze().to(device)
        _cache[key] = backbone.half_weights() if half else backbone
    return _cache[key]
