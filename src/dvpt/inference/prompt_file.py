"""The portable prompt file (``.dvpt``): a tuned prompt that outlives its training code.

One safetensors file: the tensors are the method's learnable state (its ``state_dict``);
the header metadata holds, as JSON under the key ``dvpt``, everything needed to rebuild the
method around a frozen backbone and use it on new images and new class names:

    format_version   integer; a reader refuses files newer than it understands
    method, options  registered method name and its options (the method's dataclass)
    backbone         the backbone id it was tuned on, and ``backbone_identity``, the hash of
                     ``Backbone.identity()``: a prompt is only meaningful on that backbone
    classnames       the classes it was tuned on (the default class list at predict time)
    templates        the dataset's hand-crafted templates the method was built with
    inference_state  ``method.inference_state()``: JSON settings besides the tensors
    source           where it came from (run folder, dataset, protocol, seed, shots)

A second header key, ``tensor_digest``, holds the sha256 of the tensors (names, dtypes, shapes,
bytes): a file with flipped bytes is refused on load instead of predicting "nan%".
safetensors was chosen because it cannot execute code on load (unlike pickles), is readable
from any language, and carries string metadata in its header.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..engine.io import atomic_write
from ..errors import DvptError

FORMAT = "dvpt-prompt"
FORMAT_VERSION = 1
#: safetensors metadata keys: a marker (so foreign safetensors files are recognised) and the JSON
FORMAT_KEY = "format"
META_KEY = "dvpt"
DIGEST_KEY = "tensor_digest"
SUFFIX = ".dvpt"


class PromptFileError(DvptError):
    """A prompt file that is missing, corrupt, foreign, too new, or for another backbone."""


@dataclass
class PromptMeta:
    """What a prompt file says about itself besides its tensors."""

    method: str
    options: dict[str, Any]
    backbone: str
    backbone_identity: str
    classnames: list[str]
    templates: list[str]
    inference_state: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    dvpt_version: str = ""
    format_version: int = FORMAT_VERSION
    #: the local weights file an ``openclip:<model>`` backbone was loaded from, if any
    backbone_checkpoint: str | None = None


@dataclass
class PromptFile:
    tensors: dict[str, torch.Tensor]
    meta: PromptMeta


def classname_problem(classnames: Any) -> str | None:
    """Why ``classnames`` cannot be a prompt's class list (``None`` when it can).

    Refused where a prompt is written and where it is read: an empty list (it classifies
    nothing) and empty or non-text names. Repeated names are not refused here: CoOp's
    ImageNet class list names two classes "crane"; dataset readers refuse them in user data
    and ``--classes`` refuses them at predict time.
    """
    if not isinstance(classnames, list) or not classnames:
        return "its class list is empty"
    if any(not isinstance(c, str) or not c.strip() for c in classnames):
        return "its class list holds an empty or non-text name"
    return None


def write_prompt_file(path: str | Path, tensors: dict[str, torch.Tensor], meta: PromptMeta) -> Path:
    """Write atomically (a reader never sees half a prompt file), with a digest of the tensors."""
    from ..engine.checkpoint import tensor_digest

    problem = classname_problem(meta.classnames)
    if problem:
        raise PromptFileError(f"refusing to write prompt file {path}: {problem}; fix the dataset's class names")
    clean = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    header = {FORMAT_KEY: FORMAT, META_KEY: json.dumps(asdict(meta)), DIGEST_KEY: tensor_digest(clean)}
    return atomic_write(path, lambda p: save_file(clean, str(p), metadata=header))


def read_prompt_file(path: str | Path) -> PromptFile:
    """Read and validate a prompt file; every way it can be unusable is one ``PromptFileError``."""
    path = Path(path)
    if not path.is_file():
        raise PromptFileError(f"prompt file not found: {path} (create one with `dvpt export RUN_DIR -o {path.name}`)")
    try:
        with safe_open(str(path), "pt", device="cpu") as handle:
            header = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a bad file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PromptFileError(
            f"prompt file {path} is corrupt or not a safetensors file ({reason}); export it again"
        ) from None
    meta = _parse_meta(path, header)
    _check_digest(path, header, tensors)
    return PromptFile(tensors, meta)


def _check_digest(path: Path, header: dict[str, str], tensors: dict[str, torch.Tensor]) -> None:
    """Flipped bytes in the tensors are an error naming the file (files written before the
    digest existed carry none and are read as they are)."""
    from ..engine.checkpoint import tensor_digest

    stored = header.get(DIGEST_KEY)
    if stored is not None and stored != tensor_digest(tensors):
        raise PromptFileError(f"prompt file {path} is corrupt: its tensors do not match the stored digest; "
                              "export it again")


def _parse_meta(path: Path, header: dict[str, str]) -> PromptMeta:
    if header.get(FORMAT_KEY) != FORMAT or META_KEY not in header:
        raise PromptFileError(
            f"{path} is a safetensors file but not a dvpt prompt (no '{FORMAT}' metadata); "
            "create prompt files with `dvpt export RUN_DIR`"
        )
    try:
        raw = json.loads(header[META_KEY])
        version = int(raw.get("format_version", 0))
    except (ValueError, TypeError, AttributeError) as exc:
        raise PromptFileError(f"prompt file {path} has unreadable metadata ({exc}); export it again") from None
    if version > FORMAT_VERSION:
        from ..version import __version__

        raise PromptFileError(
            f"prompt file {path} has format version {version}, newer than this dvpt {__version__} reads "
            f"(up to {FORMAT_VERSION}); upgrade dvpt (`pip install -U dvpt`)"
        )
    known = set(PromptMeta.__dataclass_fields__)
    try:
        meta = PromptMeta(**{k: v for k, v in raw.items() if k in known})
    except TypeError as exc:
        raise PromptFileError(f"prompt file {path} lacks required metadata ({exc}); export it again") from None
    problem = classname_problem(meta.classnames)
    if problem:
        raise PromptFileError(f"prompt file {path} cannot be used: {problem}; export it again")
    return meta
