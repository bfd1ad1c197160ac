"""Using a tuned prompt from Python: export a run, load the file, classify images.

    prompt = dvpt.load_prompt("cats.dvpt")
    probs = prompt.classify(["a.png", "b.png"], classnames=["lynx", "ocelot"])

The method is rebuilt from its registered class around the frozen backbone named in the file,
so ``classify`` goes through the method's own ``classifier``/``logits`` path: the logits equal
what the run's evaluation computed (same scale, same code), and class names never seen in
training work wherever the method supports them (``set_classnames``).
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from PIL import Image
from torch import Tensor

from ..backbones import Backbone, load_backbone
from ..config.loader import from_dict
from ..data.base import repeated_names
from ..data.loading import draft_side, open_image
from ..engine.checkpoint import LEARNABLE, load_trainer_state
from ..engine.device import autocast, resolve_device
from ..errors import DvptError
from ..methods import get_method
from ..methods.base import Batch, PromptMethod
from ..prompts.text_encoding import TextOptions
from .prompt_file import PromptFileError, PromptMeta, read_prompt_file, write_prompt_file
from ..registry import UnknownNameError
from ..version import __version__

log = logging.getLogger(__name__)

ImageLike = Image.Image | str | Path
Images = Tensor | ImageLike | Sequence[ImageLike]


class TunedPrompt:
    """A method with its tuned state, on its backbone, ready to classify images."""

    def __init__(self, method: PromptMethod, meta: PromptMeta, precision: str = "fp32", batch_size: int = 100) -> None:
        self.method = method.eval()
        self.meta = meta
        self.precision = precision
        self.batch_size = batch_size
        self._classifier: tuple[tuple[str, ...], Tensor | None] | None = None
        self._transform = None

    @property
    def backbone(self) -> Backbone:
        return self.method.backbone

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    @property
    def classnames(self) -> list[str]:
        """The classes the prompt was tuned on: what every call uses unless given others."""
        return list(self.meta.classnames)

    def use_classes(self, classnames: Sequence[str] | None = None) -> list[str]:
        """Point the method at ``classnames`` (``None``: the tuned ones); returns the list in use.

        The tuned list may repeat a name (a dataset's own list, e.g. ImageNet's two "crane"
        classes: one class per position); a list given here must not, unless it is the tuned
        list itself (``check_classnames``).
        """
        if classnames is None or [str(c).strip() for c in classnames] == self.classnames:
            names = self.classnames
        else:
            names = check_classnames(classnames)
        if names != self.method.classnames:
            self.method.set_classnames(names, self.meta.templates)
        return names

    @torch.no_grad()
    def _class_features(self) -> Tensor | None:
        """The method's image-independent classifier, computed once per class list."""
        key = tuple(self.method.classnames)
        if self._classifier is None or self._classifier[0] != key:
            with autocast(self.device, self.precision):
                self._classifier = (key, self.method.classifier_or_none())
        return self._classifier[1]

    def text_features(self, classnames: Sequence[str] | None = None) -> Tensor:
        """Unit-norm class text features [C, E] of the tuned prompts.

        For a method that ensembles views (dvpt's ``infer: ensemble``) the classifier is a
        weighted sum of unit features; this returns its direction.
        """
        self.use_classes(classnames)
        features = self._class_features()
        if features is None:
            raise DvptError(f"method {self.meta.method!r} conditions its text features on each image; "
                            "there is no image-independent text classifier to return")
        features = features.float().clone()
        norms = features.norm(dim=-1, keepdim=True)
        if torch.allclose(norms, torch.ones_like(norms), atol=1e-5):
            return features  # already unit-norm: returned bit for bit as the method scores them
        return features / norms

    def transform(self, image: ImageLike) -> Tensor:
        """A PIL image or a path -> the backbone's eval tensor (a bad file raises ``DataError``)."""
        if self._transform is None:
            self._transform = self.backbone.eval_transform()
        if isinstance(image, Image.Image):
            return self._transform(image.convert("RGB"))
        return self._transform(open_image(str(image), draft_side(self._transform)))

    def _as_batch(self, images: Images) -> Tensor:
        if isinstance(images, Tensor):
            if images.dim() == 3:
                images = images.unsqueeze(0)
            if images.dim() != 4:
                raise DvptError(f"an image tensor must be [B, 3, H, W] (already transformed), got {list(images.shape)}")
            return images
        if isinstance(images, (Image.Image, str, Path)):
            images = [images]
        return torch.stack([self.transform(image) for image in images])

    @torch.no_grad()
    def logits(self, images: Images, classnames: Sequence[str] | None = None) -> Tensor:
        """[B, C] logits on CPU, by the method's own ``logits`` (the scale evaluation uses)."""
        self.use_classes(classnames)
        classifier = self._class_features()
        batch = self._as_batch(images)
        out = []
        for start in range(0, len(batch), self.batch_size):
            part = batch[start : start + self.batch_size]
            labels = torch.zeros(len(part), dtype=torch.long)
            with autocast(self.device, self.precision):
                batch_part = Batch(labels=labels, images=part).to(self.device)
                out.append(self.method.logits(batch_part, classifier).float().cpu())
        return torch.cat(out) if out else torch.empty(0, len(self.method.classnames))

    def classify(self, images: Images, classnames: Sequence[str] | None = None) -> Tensor:
        """[B, C] class probabilities (softmax of ``logits``); columns follow ``classnames``."""
        return self.logits(images, classnames).softmax(dim=-1)

    def __repr__(self) -> str:
        return (f"TunedPrompt(method={self.meta.method!r}, backbone={self.meta.backbone!r}, "
                f"classes={len(self.meta.classnames)})")


def check_classnames(classnames: Iterable[str]) -> list[str]:
    """Non-empty, stripped, unique class names.

    Why unique: in a list someone types, a repeat is a slip that would split one class's
    probability between two identical columns. A dataset's own repeated names reach
    ``use_classes`` as the tuned list, which is accepted as it is.
    """
    classnames = list(classnames)
    names = [str(c).strip() for c in classnames]
    if not names or any(not n for n in names):
        raise DvptError(f"class names must be non-empty strings, got {classnames!r}")
    repeated = repeated_names(names)
    if repeated:
        where = "; ".join(f"{n!r} at positions {', '.join(str(i + 1) for i in at)}" for n, at in repeated.items())
        raise DvptError(f"class names must be unique; repeated: {', '.join(repeated)} ({where}); "
                        "give each class its own name (e.g. 'crane bird', 'construction crane')")
    return names


# ---- loading ----------------------------------------------------------------------------
def load_prompt(
    path: str | Path,
    backbone: str | Backbone | None = None,
    device: str | None = None,
    precision: str = "fp32",
    check_backbone: bool = True,
    text_options: TextOptions = TextOptions(),
) -> TunedPrompt:
    """Load a ``.dvpt`` prompt file onto the backbone it names (or ``backbone``).

    ``text_options`` (chunks, prefix sharing) bound memory when encoding many class names;
    they never change the numbers.

    The backbone must be the one the prompt was tuned on (same ``identity()``): context
    vectors only mean something in the embedding space they were learned in. Pass
    ``check_backbone=False`` to use a prompt on a backbone whose identity changed for a
    harmless reason (e.g. the same weights in another folder).
    """
    loaded = read_prompt_file(path)
    meta = loaded.meta
    try:
        method_cls = get_method(meta.method)
    except UnknownNameError as exc:
        raise PromptFileError(
            f"prompt file {path} needs method {meta.method!r}, which this dvpt lacks ({exc})"
        ) from None
    options = from_dict(method_cls.Options, meta.options, "options")
    if isinstance(backbone, Backbone):
        model = backbone
    else:
        checkpoint = None if backbone else meta.backbone_checkpoint
        model = load_backbone(backbone or meta.backbone, str(resolve_device(device or "auto")), checkpoint)
    if check_backbone:
        verify_backbone(path, meta, model)
    with torch.random.fork_rng(devices=[]):  # a random initialisation is overwritten; keep the caller's RNG
        method = method_cls(model, meta.classnames, meta.templates, options)
    method.set_text_options(text_options).to(model.device)
    load_state(method, loaded.tensors, path)
    method.load_inference_state(meta.inference_state)
    return TunedPrompt(method, meta, precision)


def verify_backbone(path: str | Path, meta: PromptMeta, backbone: Backbone) -> None:
    identity = backbone.identity()
    if identity != meta.backbone_identity:
        raise PromptFileError(
            f"prompt file {path} was tuned on backbone {meta.backbone!r} (identity {meta.backbone_identity}) "
            f"but the backbone given, {backbone.name!r}, has identity {identity}: other weights or shapes. "
            f"Load it on {meta.backbone!r} (--backbone / backbone=, or the same weights), or retrain on this backbone"
        )


def load_state(method: PromptMethod, tensors: dict[str, Tensor], path: str | Path) -> None:
    """Strict load: every tensor the method owns must be in the file, and nothing else (but
    the method's ``retired_keys``, state an older version exported)."""
    own = method.state_dict()
    tensors = {k: v for k, v in tensors.items() if k not in method.retired_keys}
    missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    wrong = sorted(k for k in set(own) & set(tensors) if own[k].shape != tensors[k].shape)
    if missing or unexpected or wrong:
        raise PromptFileError(
            f"prompt file {path} does not match method {method.name!r} as built here: missing {missing}, "
            f"unexpected {unexpected}, wrong shape {wrong}; export it again with this dvpt version"
        )
    device = method.backbone.device
    method.load_state_dict({k: v.to(device) for k, v in tensors.items()}, strict=True)


# ---- exporting --------------------------------------------------------------------------
def export_prompt(run_dir: str | Path, output: str | Path, partial: bool = False) -> Path:
    """Rebuild a run's method from its config and checkpoint, and write a ``.dvpt`` file."""
    from ..engine.restore import load_run_config, restore_method
    from ..engine.session import Session

    run_dir = Path(run_dir)
    cfg = dataclasses.replace(load_run_config(run_dir), device="cpu", precision="fp32", threads=None)
    if (run_dir / "checkpoint" / LEARNABLE).is_file():
        _check_finished(run_dir, partial)
    session, method, ckpt_meta = restore_method(run_dir, Session(cfg))
    backbone = session.backbone
    meta = PromptMeta(
        method=cfg.method,
        options=dataclasses.asdict(session.options),
        backbone=cfg.backbone,
        backbone_checkpoint=str(Path(cfg.backbone_checkpoint).resolve()) if cfg.backbone_checkpoint else None,
        backbone_identity=backbone.identity(),
        classnames=list(method.classnames),
        templates=list(method.templates),
        inference_state=method.inference_state(),
        source={"run": str(run_dir.resolve()), "dataset": cfg.data.dataset, "domain": cfg.data.options.get("domain"),
                "protocol": cfg.protocol, "seed": cfg.seed, "shots": cfg.data.shots, "epoch": ckpt_meta.get("epoch")},
        dvpt_version=__version__,
    )
    path = write_prompt_file(output, method.state_dict(), meta)
    log.debug("exported %s (%s on %s, %d classes) to %s", run_dir, cfg.method, cfg.backbone, len(method.classnames), path)
    return path


def _check_finished(run_dir: Path, partial: bool) -> None:
    """A checkpoint from an interrupted run misses the method's ``finalize`` (e.g. weight averaging)."""
    state = load_trainer_state(run_dir / "checkpoint")
    if state is not None and not state.get("finalized") and not partial:
        raise DvptError(
            f"{run_dir} did not finish training (stopped after epoch {state.get('epoch')}); resume it with "
            f"`dvpt train ... -o {run_dir}`, or export the last epoch anyway with --partial"
        )
