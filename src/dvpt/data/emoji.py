"""The emoji benchmark: real glyphs with real names, rendered offline with seeded variation.

No standard dataset can be downloaded here, so the offline benchmark is made of what the
system packages hold: the glyphs of Noto Color Emoji (domain ``color``) and Symbola
(domain ``line``), and the names, groups and subgroups of Unicode's ``emoji-test.txt``.
One dataset per Unicode group (see ``DATASETS``).

Images are glyphs warped and composited by one batched tensor renderer (``render``): scale,
rotation, position, background colour and texture, ink colour (line), colour jitter (color),
blur, pixel noise and an occluding patch. How strong each effect is follows a per-image
*difficulty* in [0, 1]; ``micro`` is pretrained on the full range, the benchmark splits draw
from the harder part of it, so the benchmark stays inside what pretraining saw.

Every image has its own random stream, seeded from (seed, domain, split, class name, index):
train, val and test never share a stream, and an image never changes when another class is
added or dropped. Files are rendered once into the cache (``$DVPT_CACHE`` or
``~/.cache/dvpt``, under ``emoji/<version>/<domain>/<dataset>/``) with atomic writes; a
``manifest.json`` written last marks a complete render, which later loads reuse.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DataError
from ..files import atomic_write, read_json, write_json
from .base import DatasetSplits, Datum

log = logging.getLogger(__name__)

EMOJI_TEST = Path(os.environ.get("DVPT_EMOJI_TEST", "/usr/share/unicode/emoji/emoji-test.txt"))
FONTS = {
    "color": Path(os.environ.get("DVPT_EMOJI_COLOR_FONT", "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")),
    "line": Path(os.environ.get("DVPT_EMOJI_LINE_FONT", "/usr/share/fonts/truetype/ancient-scripts/Symbola_hint.ttf")),
}
DOMAINS = ("color", "line")
#: bump when the renderer changes what a given seed produces
RENDER_VERSION = 1
GLYPH_SIZE = 64
SKIN_TONES = range(0x1F3FB, 0x1F400)
GENDER_SIGNS = {0x2640, 0x2642}
#: MiniLM cosine above which two class prompts count as the same class
DUPLICATE_COSINE = 0.99


@dataclass(frozen=True)
class EmojiDataset:
    """One benchmark dataset: a Unicode group, its templates and its domains."""

    name: str
    group: str
    templates: tuple[str, ...]
    domains: tuple[str, ...] = DOMAINS
    description: str = ""


_ENSEMBLE = ("a rendering of {}.", "an icon of {}.", "a small picture of {}.", "a drawing of {}.")
DATASETS: dict[str, EmojiDataset] = {
    d.name: d
    for d in [
        EmojiDataset("emoji-animals", "Animals & Nature", ("an emoji of {}, an animal or plant.", "an emoji of {}.") + _ENSEMBLE),
        EmojiDataset("emoji-food", "Food & Drink", ("an emoji of {}, a type of food.", "an emoji of {}.") + _ENSEMBLE),
        EmojiDataset("emoji-travel", "Travel & Places", ("an emoji of {}, a place or vehicle.", "an emoji of {}.") + _ENSEMBLE),
        EmojiDataset("emoji-activities", "Activities", ("an emoji of {}, an activity.", "an emoji of {}.") + _ENSEMBLE),
        EmojiDataset("emoji-objects", "Objects", ("an emoji of {}, an object.", "an emoji of {}.") + _ENSEMBLE),
        EmojiDataset("emoji-smileys", "Smileys & Emotion", ("an emoji of {}, a smiley.", "an emoji of {}.") + _ENSEMBLE),
        EmojiDataset("emoji-people", "People & Body", ("an emoji of {}, a person or body part.", "an emoji of {}.") + _ENSEMBLE),
        EmojiDataset("emoji-symbols", "Symbols", ("an emoji of {}, a symbol.", "an emoji of {}.") + _ENSEMBLE),
        EmojiDataset("emoji-flags", "Flags", ("an emoji of the flag of {}.", "a flag of {}.") + _ENSEMBLE, ("color",)),
    ]
}


@dataclass(frozen=True)
class EmojiEntry:
    """One fully-qualified emoji of ``emoji-test.txt`` with its readable class name."""

    text: str
    name: str
    group: str
    subgroup: str

    @property
    def codepoints(self) -> tuple[int, ...]:
        return tuple(ord(c) for c in self.text)


# ---- names ------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def parse_emoji_test(path: Path = EMOJI_TEST) -> tuple[EmojiEntry, ...]:
    """Fully-qualified entries of ``emoji-test.txt``, in file order."""
    if not Path(path).is_file():
        raise DataError(f"emoji list not found: {path}; install it (`apt-get install unicode-data`) or set DVPT_EMOJI_TEST")
    entries, group, subgroup = [], "", ""
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif line and not line.startswith("#"):
            codes, rest = line.split(";", 1)
            status, comment = rest.split("#", 1)
            if status.strip() == "fully-qualified":
                name = re.sub(r"^\S+\s+E\d+\.\d+\s+", "", comment.strip())
                text = "".join(chr(int(c, 16)) for c in codes.split())
                entries.append(EmojiEntry(text, name, group, subgroup))
    return tuple(entries)


def _is_variant(entry: EmojiEntry, names: set[str]) -> bool:
    """Skin-tone variants always; gendered variants of a person when a neutral one exists."""
    cps = entry.codepoints
    if any(c in SKIN_TONES for c in cps):
        return True
    if entry.group != "People & Body":
        return False
    if GENDER_SIGNS & set(cps) and len(cps) > 1:
        return True
    for prefix in ("man ", "woman ", "men ", "women "):
        if entry.name.startswith(prefix):
            rest = entry.name[len(prefix):]
            if rest in names or f"person {rest}" in names or f"people {rest}" in names:
                return True
    return False


def classname(entry: EmojiEntry) -> str:
    """The class name shown to the text tower: the Unicode name, ``flag: `` dropped."""
    return entry.name[len("flag: "):] if entry.name.startswith("flag: ") else entry.name


def group_entries(dataset: str) -> list[EmojiEntry]:
    """Entries of the dataset's Unicode group, variants collapsed (before any font check)."""
    spec = _spec(dataset)
    entries = [e for e in parse_emoji_test() if e.group == spec.group]
    names = {e.name for e in entries}
    return [e for e in entries if not _is_variant(e, names)]


@functools.lru_cache(maxsize=1)
def duplicate_table() -> dict[str, list[str]]:
    """Shipped table: dataset -> class names dropped as near-duplicates (see ``find_duplicates``)."""
    path = Path(__file__).resolve().parent.parent / "assets" / "emoji_duplicates.json"
    if not path.is_file():
        return {}
    return read_json(path, "emoji duplicate table", error=DataError)


def find_duplicates(dataset: str, encode) -> list[str]:
    """Class names whose first-template prompt is within ``DUPLICATE_COSINE`` of an earlier one.

    MiniLM maps some names to (nearly) the same embedding, e.g. mirror-image arrows or family
    compositions; no text classifier can tell them apart, so the later one (file order) is
    dropped. ``encode(texts) -> [N, D]`` features; the result is shipped in
    ``assets/emoji_duplicates.json`` so loading a dataset never needs the text model.
    """
    names = [classname(e) for e in group_entries(dataset)]
    feats = F.normalize(encode([_spec(dataset).templates[0].format(n) for n in names]).float(), dim=-1)
    sims = feats @ feats.T
    kept: list[int] = []
    dropped: list[str] = []
    for i, name in enumerate(names):
        if kept and float(sims[i, kept].max()) > DUPLICATE_COSINE:
            dropped.append(name)
        else:
            kept.append(i)
    return dropped


def concepts(dataset: str, domain: str = "color") -> list[EmojiEntry]:
    """The classes of ``dataset`` in ``domain``: collapsed, de-duplicated, renderable."""
    spec = _spec(dataset)
    if domain not in spec.domains:
        raise DataError(f"{dataset} has no domain {domain!r}; choose one of {', '.join(spec.domains)}")
    dropped = set(duplicate_table().get(dataset, []))
    entries = [e for e in group_entries(dataset) if classname(e) not in dropped]
    return [e for e in entries if has_glyph(e.text, domain)]


def _spec(dataset: str) -> EmojiDataset:
    if dataset not in DATASETS:
        raise DataError(f"unknown emoji dataset {dataset!r}; known: {', '.join(DATASETS)}")
    return DATASETS[dataset]


# ---- glyphs -----------------------------------------------------------------------------
@functools.lru_cache(maxsize=2)
def _font(domain: str):
    from PIL import ImageFont

    path = FONTS[domain]
    if not path.is_file():
        package = "fonts-noto-color-emoji" if domain == "color" else "fonts-symbola"
        raise DataError(f"emoji font for domain {domain!r} not found: {path}; install `{package}`")
    # Noto Color Emoji is a bitmap font with one strike at size 109
    return ImageFont.truetype(str(path), 109 if domain == "color" else 96)


def _draw(text: str, domain: str):
    """The glyph as an RGBA image cropped to its ink, or None when nothing was drawn."""
    from PIL import Image, ImageDraw

    font = _font(domain)
    canvas = Image.new("RGBA", (3 * 128, 160), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((8, 8), text, font=font, embedded_color=domain == "color", fill=(0, 0, 0, 255))
    box = canvas.getbbox()
    return canvas.crop(box) if box else None


@functools.lru_cache(maxsize=2)
def _missing_glyph(domain: str) -> bytes:
    img = _draw("\U0010fffd", domain)
    return img.tobytes() if img else b""


@functools.lru_cache(maxsize=8192)
def has_glyph(text: str, domain: str) -> bool:
    """True when the font draws ``text`` as one glyph (no fallback box, no split sequence)."""
    base = text.replace("\ufe0f", "").replace("\ufe0e", "")
    if domain == "line" and len(base) != 1:
        return False  # Symbola has no ligatures: sequences would draw as several glyphs
    img = _draw(text if domain == "color" else base, domain)
    if img is None or img.tobytes() == _missing_glyph(domain):
        return False
    return domain == "line" or img.width <= 140


def glyph(text: str, domain: str, size: int = GLYPH_SIZE) -> Tensor:
    """The glyph centred in a ``size`` square, RGBA float [4, size, size] in [0, 1]."""
    return _glyph_bytes(text, domain, size).float() / 255.0


@functools.lru_cache(maxsize=4096)
def _glyph_bytes(text: str, domain: str, size: int) -> Tensor:
    """uint8 RGBA tile, kept per process (16 kB per glyph; floats would take four times that)."""
    from PIL import Image

    img = _draw(text if domain == "color" else text.replace("\ufe0f", ""), domain)
    if img is None:
        raise DataError(f"font of domain {domain!r} has no glyph for {text!r}")
    ratio = (size - 2) / max(img.size)
    img = img.resize((max(1, round(img.width * ratio)), max(1, round(img.height * ratio))), Image.LANCZOS)
    square = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    square.paste(img, ((size - img.width) // 2, (size - img.height) // 2))
    arr = torch.from_numpy(np.array(square, dtype=np.uint8)).permute(2, 0, 1).contiguous()
    if domain == "line":
        arr[:3] = 0  # ink colour is chosen per image
    return arr


# ---- rendering --------------------------------------------------------------------------
@dataclass(frozen=True)
class Difficulty:
    """A range of per-image difficulty; 0 = a clean centred glyph, 1 = the hardest rendering."""

    low: float = 0.0
    high: float = 1.0


def parse_difficulty(value: object) -> Difficulty:
    """``[low, high]`` with 0 <= low <= high <= 1, else a one-line error naming the value and the fix."""
    ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if not ok or not 0 <= value[0] <= value[1] <= 1:
        raise DataError(f"data.options.difficulty must be [low, high] with 0 <= low <= high <= 1, got {value!r}; "
                        "e.g. difficulty: [0.8, 1.0]")
    return Difficulty(float(value[0]), float(value[1]))


def sample_params(n: int, difficulty: Difficulty, generator: torch.Generator) -> dict[str, Tensor]:
    """Random rendering parameters for ``n`` images (all effects scale with difficulty)."""
    def u(*shape: int) -> Tensor:
        return torch.rand(n, *shape, generator=generator)

    d = difficulty.low + (difficulty.high - difficulty.low) * u()
    scale = 0.9 - 0.45 * d * u()
    return {
        "difficulty": d,
        "scale": scale,
        "angle": (u() * 2 - 1) * 0.7 * d,  # radians, up to ~40 degrees
        "shift": (u(2) * 2 - 1) * (1 - scale)[:, None],
        "background": u(3),
        "texture": torch.rand(n, 3, 4, 4, generator=generator) * 0.5 * d[:, None, None, None],
        "ink": u(3),
        "jitter": 1 + (u(3) * 2 - 1) * 0.3 * d[:, None],
        "blur": 1.2 * d * u(),
        "noise": 0.08 * d * u(),
        "occlude": (u() < 0.6 * d).float(),
        "patch": torch.cat([u(2), 0.2 + 0.25 * u(2)], dim=1),  # centre xy, width/height
        "patch_colour": u(3),
    }


def _warp(glyphs: Tensor, params: dict[str, Tensor], size: int) -> Tensor:
    """Place each glyph with its scale, rotation and shift (bilinear, transparent outside)."""
    cos, sin = torch.cos(params["angle"]), torch.sin(params["angle"])
    inv = 1.0 / params["scale"]
    theta = torch.stack(
        [
            torch.stack([cos * inv, -sin * inv, -params["shift"][:, 0] * inv], dim=1),
            torch.stack([sin * inv, cos * inv, -params["shift"][:, 1] * inv], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, [glyphs.shape[0], 4, size, size], align_corners=False)
    return F.grid_sample(glyphs, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _gaussian_blur(images: Tensor, sigma: Tensor) -> Tensor:
    """Per-image Gaussian blur (5x5 kernel; sigma 0 leaves the image unchanged)."""
    x = torch.arange(-2, 3, dtype=images.dtype)
    s = sigma.clamp_min(1e-3)[:, None]
    k1 = torch.exp(-(x[None] ** 2) / (2 * s**2))
    k1 = k1 / k1.sum(dim=1, keepdim=True)
    kernel = (k1[:, :, None] * k1[:, None, :]).repeat_interleave(3, dim=0)[:, None]
    b, c, h, w = images.shape
    out = F.conv2d(F.pad(images.reshape(1, b * c, h, w), (2, 2, 2, 2), mode="replicate"), kernel, groups=b * c)
    return out.reshape(b, c, h, w)


def _occlusion_mask(params: dict[str, Tensor], size: int) -> Tensor:
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    cx, cy, pw, ph = params["patch"].unbind(dim=1)
    in_x = (coords[None] - cx[:, None]).abs() < pw[:, None] / 2
    in_y = (coords[None] - cy[:, None]).abs() < ph[:, None] / 2
    mask = in_y[:, :, None] & in_x[:, None, :]
    return (mask.float() * params["occlude"][:, None, None])[:, None]


def render(glyphs: Tensor, params: dict[str, Tensor], size: int = 64, line: Tensor | None = None) -> Tensor:
    """Composite glyphs ([B, 4, G, G] RGBA) onto backgrounds: images [B, 3, size, size] in [0, 1].

    ``line`` ([B] bool) marks line-art glyphs, which take their ink colour from the params
    (far from the background, so the glyph stays visible); colour glyphs get a colour jitter.
    """
    b = glyphs.shape[0]
    line = torch.zeros(b, dtype=torch.bool) if line is None else line
    warped = _warp(glyphs, params, size)
    alpha, rgb = warped[:, 3:], warped[:, :3]
    background = params["background"][:, :, None, None]
    texture = F.interpolate(params["texture"], size=(size, size), mode="bilinear", align_corners=False)
    background = (background + texture - texture.mean(dim=(2, 3), keepdim=True)).clamp(0, 1)
    ink = (1 - params["background"]) * 0.8 + params["ink"] * 0.2
    fg = torch.where(line[:, None, None, None], ink[:, :, None, None].expand_as(rgb), (rgb * params["jitter"][:, :, None, None]).clamp(0, 1))
    images = fg * alpha + background * (1 - alpha)
    occ = _occlusion_mask(params, size)
    images = images * (1 - occ) + params["patch_colour"][:, :, None, None] * occ
    images = _gaussian_blur(images, params["blur"])
    return images


def to_uint8(images: Tensor) -> Tensor:
    return (images * 255).round().clamp(0, 255).to(torch.uint8)


# ---- the benchmark on disk ----------------------------------------------------------------
@dataclass(frozen=True)
class RenderRecipe:
    """Everything that determines the files of one rendered dataset (hashed into its folder)."""

    seed: int = 0
    size: int = 64
    counts: tuple[tuple[str, int], ...] = (("train", 20), ("val", 5), ("test", 10))
    difficulty: Difficulty = field(default_factory=lambda: Difficulty(0.6, 1.0))

    def key(self) -> str:
        blob = json.dumps({"v": RENDER_VERSION, **asdict(self)}, sort_keys=True)
        return f"v{RENDER_VERSION}-{hashlib.sha256(blob.encode()).hexdigest()[:8]}"


def image_seed(seed: int, domain: str, split: str, name: str, index: int) -> int:
    """The seed of one image's random stream: every (split, class, index) has its own."""
    blob = f"{seed}|{domain}|{split}|{name}|{index}".encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") & ((1 << 63) - 1)


def render_images(entries: Sequence[EmojiEntry], domain: str, split: str, count: int, recipe: RenderRecipe) -> Tensor:
    """``count`` images per entry, uint8 [len(entries) * count, 3, S, S], entry-major order."""
    params, noise_gens = [], []
    for entry in entries:
        for index in range(count):
            g = torch.Generator().manual_seed(image_seed(recipe.seed, domain, split, classname(entry), index))
            params.append(sample_params(1, recipe.difficulty, g))
            noise_gens.append(g)
    glyphs = torch.stack([glyph(e.text, domain) for e in entries]).repeat_interleave(count, dim=0)
    batch = {k: torch.cat([p[k] for p in params]) for k in params[0]}
    line = torch.full((len(glyphs),), domain == "line")
    images = render(glyphs, batch, recipe.size, line)
    noise = torch.cat([torch.randn(1, 3, recipe.size, recipe.size, generator=g) for g in noise_gens])
    images = (images + noise * batch["noise"][:, None, None, None]).clamp(0, 1)
    return to_uint8(images)


def cache_root(root: str | os.PathLike | None) -> Path:
    """Where rendered datasets live: ``root``, else ``$DVPT_CACHE``, else ``~/.cache/dvpt``."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get("DVPT_CACHE", Path.home() / ".cache" / "dvpt"))


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60]


def _write_png(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG", compress_level=1))


def _write_json(data: dict, path: Path) -> None:
    write_json(path, data, indent=1)


def dataset_dir(dataset: str, domain: str, root: str | os.PathLike | None, recipe: RenderRecipe) -> Path:
    return cache_root(root) / "emoji" / recipe.key() / domain / dataset


def _render_to_disk(dataset: str, domain: str, entries: list[EmojiEntry], folder: Path, recipe: RenderRecipe) -> dict:
    """Render every split of ``dataset`` into ``folder``; returns the manifest."""
    log.info("rendering %s (%s, %d classes) into %s", dataset, domain, len(entries), folder)
    splits: dict[str, list[list]] = {}
    for split, count in recipe.counts:
        rows: list[list] = []
        splits[split] = rows
        if count == 0:
            continue
        for start in range(0, len(entries), 64):
            chunk = entries[start : start + 64]
            images = render_images(chunk, domain, split, count, recipe).permute(0, 2, 3, 1).numpy()
            for i, entry in enumerate(chunk):
                label = start + i
                sub = folder / split / f"{label:04d}-{_slug(classname(entry))}"
                sub.mkdir(parents=True, exist_ok=True)
                for index in range(count):
                    path = sub / f"{index:03d}.png"
                    _write_png(images[i * count + index], path)
                    rows.append([str(path.relative_to(folder)), label])
    return {"dataset": dataset, "domain": domain, "recipe": asdict(recipe), "key": recipe.key(),
            "classnames": [classname(e) for e in entries], "emoji": [e.text for e in entries], "splits": splits}


def _manifest(dataset: str, domain: str, entries: list[EmojiEntry], folder: Path, recipe: RenderRecipe) -> dict:
    """The manifest of a complete render, rendering first when there is none (or a stale one)."""
    path = folder / "manifest.json"
    names = [classname(e) for e in entries]
    if path.is_file():
        try:
            manifest = read_json(path, "emoji manifest", error=DataError)
            if isinstance(manifest, dict) and manifest.get("classnames") == names:
                return manifest
        except DataError:
            pass
        log.warning("re-rendering %s: its manifest is stale or corrupt", folder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = _render_to_disk(dataset, domain, entries, folder, recipe)
    _write_json(manifest, path)
    return manifest


def load_emoji(
    dataset: str,
    root: str | os.PathLike | None = None,
    domain: str = "color",
    seed: int = 0,
    recipe: RenderRecipe | None = None,
    test_per_class: int | None = None,
    difficulty: Sequence[float] | None = None,
) -> DatasetSplits:
    """A benchmark dataset as ``DatasetSplits``, rendered into the cache on first use.

    ``test_per_class`` (``data.options.test_per_class``) renders more test images per class
    than the default 10, so that one image weighs less than a quarter of a point; train and
    val images are unchanged (the same per-image streams), only the test split grows.
    ``difficulty`` (``data.options.difficulty: [low, high]``) draws every image's difficulty
    from another range than the default [0.6, 1.0]: ``[0.8, 1.0]`` is a harder shift of the
    same classes and domain (domain generalisation). The range is part of the recipe, so it
    renders into its own cache folder.
    """
    recipe = recipe or RenderRecipe(seed=seed)
    if test_per_class is not None:
        if int(test_per_class) < 1:
            raise DataError(f"data.options.test_per_class must be a positive integer, got {test_per_class!r}")
        counts = tuple((split, int(test_per_class) if split == "test" else n) for split, n in recipe.counts)
        recipe = replace(recipe, counts=counts)
    if difficulty is not None:
        recipe = replace(recipe, difficulty=parse_difficulty(difficulty))
    entries = concepts(dataset, domain)
    folder = dataset_dir(dataset, domain, root, recipe)
    try:
        manifest = _manifest(dataset, domain, entries, folder, recipe)
    except OSError as exc:
        raise DataError(f"cannot write the emoji renderings to {folder}: {exc}; pass another --root or set DVPT_CACHE") from None
    names = manifest["classnames"]

    def items(split: str) -> list[Datum]:
        return [Datum(str(folder / p), int(y), names[int(y)], domain) for p, y in manifest["splits"][split]]

    return DatasetSplits(
        name=dataset,
        classnames=list(names),
        train=items("train"),
        val=items("val"),
        test=items("test"),
        templates=list(DATASETS[dataset].templates),
        root=str(folder),
        fingerprint=f"{dataset}/{domain}/{recipe.key()}",
    )


def check_emoji(dataset: str, root: Path | None) -> list[str]:
    """Problems that would stop the dataset from rendering (fonts, names, a writable cache)."""
    problems = []
    for domain in DATASETS[dataset].domains:
        try:
            _font(domain)
        except DataError as exc:
            problems.append(str(exc))
    try:
        parse_emoji_test()
    except DataError as exc:
        problems.append(str(exc))
    base = cache_root(root)
    probe = base if base.exists() else base.parent
    if not os.access(probe, os.W_OK):
        problems.append(f"emoji cache {base} is not writable; pass another root or set DVPT_CACHE")
    return problems


def all_concepts(datasets: Iterable[str] = tuple(DATASETS), domains: Iterable[str] = DOMAINS) -> list[tuple[str, str, EmojiEntry]]:
    """(dataset, domain, entry) for every class of every dataset: the pretraining vocabulary."""
    out = []
    for dataset in datasets:
        for domain in domains:
            if domain in DATASETS[dataset].domains:
                out.extend((dataset, domain, e) for e in concepts(dataset, domain))
    return out
