"""The hand-crafted view: text features of templates filled with class names.

It never changes for a given backbone, class list, template set and autocast precision, so it
is computed once and kept (keyed by the backbone's identity and the autocast dtype).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..backbones.base import Backbone


def readable(name: str) -> str:
    """Class names are written with underscores in split files; prompts use spaces."""
    return name.replace("_", " ")


def fill(template: str, classname: str) -> str:
    return template.format(readable(classname))


def method_template(templates: Sequence[str], table: dict[str, str], override: str = "") -> str:
    """A method's hand-crafted template: ``override``, else the dataset's first template as
    rewritten by the method's own table (KgCoOp and ProGrad each changed a few of CoOp's)."""
    if override:
        return override
    first = templates[0] if templates else "a photo of a {}."
    return table.get(first, first)


_CACHE: dict[tuple, Tensor] = {}


@torch.no_grad()
def handcrafted_features(
    backbone: Backbone,
    classnames: Sequence[str],
    templates: Sequence[str],
    chunk: int = 256,
) -> Tensor:
    """[C, E] unit-norm text features; with several templates, the normalised mean of the
    per-template unit features (CLIP's prompt ensembling in feature space)."""
    device = backbone.device
    # the autocast dtype is part of the key: an fp32 teacher must not read fp16 features; so is
    # the weights' dtype (fp16-weights, and its fp32 teacher in ``Backbone.fp32_weights``)
    amp = str(torch.get_autocast_dtype(device.type)) if torch.is_autocast_enabled(device.type) else "fp32"
    amp += f"/{backbone.dtype}"
    key = (id(backbone), backbone.identity(), tuple(classnames), tuple(templates), str(device), amp)
    if key not in _CACHE:
        per_template = []
        for template in templates:
            texts = [fill(template, c) for c in classnames]
            feats = torch.cat([backbone.encode_text(texts[i : i + chunk]) for i in range(0, len(texts), chunk)])
            per_template.append(F.normalize(feats.float(), dim=-1))
        _CACHE[key] = F.normalize(torch.stack(per_template).mean(0), dim=-1)
    return _CACHE[key]


def clear_cache() -> None:
    _CACHE.clear()
