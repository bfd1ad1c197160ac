"""Hand-crafted prompt templates of the CoOp family, in one place.

Why one module: zero-shot CLIP, KgCoOp's consistency target, ProGrad's teacher and
PromptSRC's frozen text target all read templates; keeping them here means a dataset reader
only names its key and every method sees the same strings.

* ``CUSTOM_TEMPLATES``: one template per dataset, as CoOp's zero-shot CLIP uses them (the
  first entry of every ``DatasetSplits.templates``).
* ``ENSEMBLE_TEMPLATES``: the 7 "select" ImageNet templates that CoOp's ensembling zero-shot
  variant averages (with the custom one added for non-ImageNet datasets).
* ``CLIP_IMAGENET_TEMPLATES``: the 80 templates of CLIP's ImageNet prompt-engineering study.
* ``IMAGENET_TEMPLATES``: the 60-template subset PromptSRC averages as its frozen text target
  ("a photo of a {}." first, then CLIP's list in order up to "itap of the {}.").
"""
from __future__ import annotations

CUSTOM_TEMPLATES: dict[str, str] = {
    "oxford_pets": "a photo of a {}, a type of pet.",
    "oxford_flowers": "a photo of a {}, a type of flower.",
    "fgvc_aircraft": "a photo of a {}, a type of aircraft.",
    "dtd": "{} texture.",
    "eurosat": "a centered satellite photo of {}.",
    "stanford_cars": "a photo of a {}.",
    "food101": "a photo of {}, a type of food.",
    "sun397": "a photo of a {}.",
    "caltech101": "a photo of a {}.",
    "ucf101": "a photo of a person doing {}.",
    "imagenet": "a photo of a {}.",
    "imagenet_sketch": "a photo of a {}.",
    "imagenetv2": "a photo of a {}.",
    "imagenet_a": "a photo of a {}.",
    "imagenet_r": "a photo of a {}.",
}

DEFAULT_TEMPLATE = "a photo of a {}."

ENSEMBLE_TEMPLATES: tuple[str, ...] = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)

CLIP_IMAGENET_TEMPLATES: tuple[str, ...] = (
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
)

IMAGENET_TEMPLATES: tuple[str, ...] = (DEFAULT_TEMPLATE,) + tuple(
    t for t in CLIP_IMAGENET_TEMPLATES[:60] if t != DEFAULT_TEMPLATE
)


def dataset_templates(key: str) -> tuple[str, ...]:
    """``(custom template, *ENSEMBLE_TEMPLATES)`` for a dataset key of ``CUSTOM_TEMPLATES``.

    Unknown keys get the plain "a photo of a {}." first, so a new dataset works untouched.
    """
    return (CUSTOM_TEMPLATES.get(key, DEFAULT_TEMPLATE), *ENSEMBLE_TEMPLATES)
