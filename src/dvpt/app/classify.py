"""What the app computes, without Gradio: prompts by name, checked inputs, ``dvpt predict``'s document.

Every number shown in the page comes from ``commands.predict.predict_paths`` and
``prediction_document``, so the page, the ``classify`` endpoint and ``dvpt predict --format
json`` agree exactly on the same image, classes and prompt.
"""
from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Sequence

from PIL import Image, UnidentifiedImageError

from ..commands.predict import predict_paths, prediction_document
from ..errors import DvptError
from ..inference.api import TunedPrompt, check_classnames, load_prompt

#: about the size where Pillow starts warning of a decompression bomb; refused before decoding
MAX_PIXELS = 90_000_000
#: more names than anyone reads in a page; also bounds the text encoder's work per request
MAX_CLASSES = 1000
ZERO_SHOT = "zero-shot"


def parse_classes(text: str, tuned: Sequence[str] = ()) -> list[str]:
    """Comma- or line-separated names: stripped, non-empty, at most ``MAX_CLASSES``, unique
    unless they are the prompt's ``tuned`` list itself (``check_classnames``)."""
    names = [n.strip() for n in re.split(r"[,\n]", text or "") if n.strip()]
    if not names:
        raise DvptError("no class names: type at least two, separated by commas or new lines")
    if len(names) > MAX_CLASSES:
        raise DvptError(f"{len(names)} class names given; at most {MAX_CLASSES} per request")
    return names if names == list(tuned) else check_classnames(names)


def check_image(path: str | Path) -> None:
    """Refuse a non-image or an image over ``MAX_PIXELS`` from its header, before decoding it."""
    name = Path(path).name
    try:
        with Image.open(path) as img:
            width, height = img.size
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DvptError(f"{name} is not an image Pillow can read ({type(exc).__name__}); upload a PNG or JPEG") from None
    if width * height > MAX_PIXELS:
        raise DvptError(f"{name} is {width}x{height} = {width * height / 1e6:.0f} Mpixel, over the "
                        f"{MAX_PIXELS / 1e6:.0f} Mpixel limit; downscale it first")


def zero_shot_prompt(backbone: str, device: str = "cpu") -> TunedPrompt:
    """The backbone's zero-shot classifier ("a photo of a {}.") as a prompt with no trained classes."""
    from ..backbones import load_backbone
    from ..inference.prompt_file import PromptMeta
    from ..methods.zeroshot import ZeroShotCLIP, ZeroShotOptions

    model = load_backbone(backbone, device)
    templates = ["a photo of a {}."]
    method = ZeroShotCLIP(model, ["object"], templates, ZeroShotOptions())
    meta = PromptMeta(method="zeroshot", options={}, backbone=backbone, backbone_identity=model.identity(),
                      classnames=[], templates=templates)
    return TunedPrompt(method, meta)


class PromptBook:
    """Loaded prompts by display name; one lock each, since a prompt's class list is state."""

    def __init__(self, backbone: str = "micro", device: str = "cpu") -> None:
        self.backbone_name = backbone
        self.device = device
        self.prompts: dict[str, TunedPrompt] = {ZERO_SHOT: zero_shot_prompt(backbone, device)}
        self.sources: dict[str, str] = {ZERO_SHOT: ZERO_SHOT}
        self.locks: dict[str, threading.Lock] = {ZERO_SHOT: threading.Lock()}

    def add(self, path: str | Path) -> str:
        """Load a ``.dvpt`` file (a bad one raises a one-line ``DvptError``); returns its name here."""
        prompt = load_prompt(path, device=self.device)
        name = Path(path).stem
        while name in self.prompts and self.sources[name] != str(path):
            name += "'"
        self.prompts[name], self.sources[name], self.locks[name] = prompt, str(path), threading.Lock()
        return name

    @property
    def names(self) -> list[str]:
        return list(self.prompts)

    def classify(self, images: Sequence[str | Path], classes_text: str, prompt_name: str, top_k: int = 5) -> dict:
        """``dvpt predict --format json``'s document for these images, plus base/novel per class."""
        if prompt_name not in self.prompts:
            raise DvptError(f"unknown prompt {prompt_name!r}; loaded: {', '.join(self.prompts)}")
        if not images:
            raise DvptError("no image: upload one or pick one from the gallery")
        for image in images:
            check_image(image)
        prompt = self.prompts[prompt_name]
        names = parse_classes(classes_text, prompt.classnames)
        with self.locks[prompt_name]:
            names = prompt.use_classes(names)
            results, skipped = predict_paths(prompt, [Path(p) for p in images], names, 64, False)
            if skipped:
                raise DvptError("; ".join(f"{Path(p).name}: {e}" for p, e in skipped))
            doc = prediction_document(prompt, names, results, skipped, min(top_k, len(names)),
                                      self.sources[prompt_name])
        base = set(prompt.classnames)
        doc["base"] = [n for n in names if n in base]
        doc["novel"] = [n for n in names if n not in base]
        return doc


def emoji_gallery(dataset: str = "emoji-animals", count: int = 12) -> tuple[list[str], list[str]]:
    """Test renderings of ``count`` classes spread over an emoji dataset, and those class names.

    Rendered into the cache on first use, so the page has images to try with no download.
    """
    from ..data.emoji import load_emoji

    splits = load_emoji(dataset)
    first: dict[int, str] = {}
    for item in splits.test:
        first.setdefault(item.label, item.path)
    labels = sorted(first)
    step = max(1, len(labels) // count)
    chosen = labels[::step][:count]
    return [first[y] for y in chosen], [splits.classnames[y] for y in chosen]
