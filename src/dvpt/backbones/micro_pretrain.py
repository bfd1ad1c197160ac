"""Pretraining of ``micro``'s image tower, and its zero-shot report on the emoji benchmark.

The image tower learns to put a rendering of an emoji next to MiniLM's embedding of the
emoji's name (e.g. "an emoji of grinning face, a smiley."): cross-entropy over every
concept of the benchmark (both domains share a name's class), logits = temperature x cosine,
the temperature learned as in CLIP. Like CLIP, ``micro`` sees (nearly) every concept; the
benchmark's difficulty comes from harder renderings inside what pretraining saw and from
many similar classes, not from a rendering shift.

Images come from a pool rendered once per run (``pool`` images per concept and domain, the
full difficulty range [0, 1], a random stream of its own) and are re-augmented every step
with the random resized crop and flip of ``micro.train_transform``. The text side is frozen:
MiniLM features of each concept under a few templates are computed once, and each step
draws one template for the whole classifier.

``python -m dvpt.backbones.micro_pretrain --zero-shot-report`` prints micro's zero-shot
accuracy on every benchmark dataset (first template, test split, base and all classes).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data import emoji
from ..files import atomic_write, write_json
from . import micro

log = logging.getLogger(__name__)


@dataclass
class PretrainConfig:
    """One pretraining run (saved in ``micro.json``)."""

    seed: int = 0
    minutes: float = 10.0
    steps: int | None = None
    threads: int = 2
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 50
    pool: int = 12
    full_view: float = 0.5  # share of images seen uncropped (the eval view)
    templates: tuple[int, ...] = (0, 1, 2)  # indices into each dataset's templates
    vision: micro.VisionConfig = field(default_factory=micro.VisionConfig)


@dataclass
class Vocabulary:
    """Every pretraining concept: class names and, per (domain, entry), its class index."""

    names: list[str]
    dataset_of: list[str]
    items: list[tuple[str, emoji.EmojiEntry, int]]  # (domain, entry, class)


def build_vocabulary() -> Vocabulary:
    names: list[str] = []
    dataset_of: list[str] = []
    index: dict[str, int] = {}
    items = []
    for dataset, domain, entry in emoji.all_concepts():
        name = emoji.classname(entry)
        if name not in index:
            index[name] = len(names)
            names.append(name)
            dataset_of.append(dataset)
        items.append((domain, entry, index[name]))
    return Vocabulary(names, dataset_of, items)


def text_targets(text: micro.MiniLMText, vocab: Vocabulary, templates: Sequence[int]) -> Tensor:
    """Normalised MiniLM features [len(templates), classes, 384] of every concept's prompt."""
    out = []
    for t in templates:
        prompts = [emoji.DATASETS[d].templates[t].format(n) for n, d in zip(vocab.names, vocab.dataset_of)]
        out.append(F.normalize(text.encode_text(prompts), dim=-1))
    return torch.stack(out)


def cached_text_targets(text: micro.MiniLMText, vocab: Vocabulary, templates: Sequence[int]) -> Tensor:
    """``text_targets``, kept in the cache: MiniLM is frozen, so they never change for a vocabulary."""
    prompts = [emoji.DATASETS[d].templates[t] for t in templates for d in vocab.dataset_of]
    key = hashlib.sha256(json.dumps([vocab.names, prompts]).encode()).hexdigest()[:16]
    # safetensors, not a pickle: a cache file planted by someone else can never run code
    path = emoji.cache_root(None) / "micro" / f"text-targets-{key}.safetensors"
    if path.is_file():
        from safetensors.torch import load_file

        try:
            return load_file(str(path))["targets"]
        except Exception:  # noqa: BLE001 - a corrupt cache is recomputed, never trusted
            log.warning("text-target cache %s is unreadable; recomputing it", path)
    targets = text_targets(text, vocab, templates)
    from safetensors.torch import save_file

    atomic_write(path, lambda p: save_file({"targets": targets.contiguous()}, str(p)))
    return targets


def render_pool(vocab: Vocabulary, per_concept: int, seed: int) -> tuple[Tensor, Tensor]:
    """uint8 images [N, 3, 64, 64] and labels [N] over the full difficulty range."""
    recipe = emoji.RenderRecipe(seed=seed, difficulty=emoji.Difficulty(0.0, 1.0))
    images, labels = [], []
    for domain in emoji.DOMAINS:
        items = [(e, c) for d, e, c in vocab.items if d == domain]
        for start in range(0, len(items), 128):
            chunk = items[start : start + 128]
            images.append(emoji.render_images([e for e, _ in chunk], domain, "pretrain", per_concept, recipe))
            labels.append(torch.tensor([c for _, c in chunk]).repeat_interleave(per_concept))
    return torch.cat(images), torch.cat(labels)


def normalise(images: Tensor) -> Tensor:
    mean = torch.tensor(micro.MEAN)[:, None, None]
    std = torch.tensor(micro.STD)[:, None, None]
    return (images - mean) / std


def eval_view(images: Tensor, size: int) -> Tensor:
    """uint8 renderings -> the eval transform's tensors (antialiased resize of a square)."""
    x = F.interpolate(images.float() / 255, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return normalise(x)


def augment(images: Tensor, size: int, full_view: float, generator: torch.Generator) -> Tensor:
    """Batched random resized crop (scales ``micro.CROP_SCALE``) + flip; some images stay whole."""
    b = images.shape[0]
    x = images.float() / 255
    lo, hi = micro.CROP_SCALE
    area = lo + (hi - lo) * torch.rand(b, generator=generator)
    ratio = torch.exp((torch.rand(b, generator=generator) * 2 - 1) * math.log(4 / 3))
    w = torch.sqrt(area * ratio).clamp(max=1.0)
    h = torch.sqrt(area / ratio).clamp(max=1.0)
    whole = torch.rand(b, generator=generator) < full_view
    w, h = torch.where(whole, 1.0, w), torch.where(whole, 1.0, h)
    cx = (torch.rand(b, generator=generator) * 2 - 1) * (1 - w)
    cy = (torch.rand(b, generator=generator) * 2 - 1) * (1 - h)
    flip = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
    zero = torch.zeros(b)
    theta = torch.stack([torch.stack([w * flip, zero, cx], 1), torch.stack([zero, h, cy], 1)], 1)
    small = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)  # the eval view
    grid = F.affine_grid(theta, [b, 3, size, size], align_corners=False)
    return normalise(F.grid_sample(small, grid, mode="bilinear", padding_mode="border", align_corners=False))


def _progress(step: int, config: PretrainConfig, train_start: float, deadline: float) -> float:
    """Fraction of the run done: by steps when ``steps`` is set (reproducible), else by time."""
    if config.steps:
        return step / config.steps
    return (time.time() - train_start) / max(1e-6, deadline - train_start)


def _lr(step: int, progress: float, config: PretrainConfig) -> float:
    """Linear warm-up, then cosine decay over the run's progress."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train(config: PretrainConfig, out_dir: Path) -> dict:
    """Train the image tower; write ``micro.safetensors`` + ``micro.json`` into ``out_dir``."""
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    start = time.time()
    text = micro.load_text_tower()
    vocab = build_vocabulary()
    targets = cached_text_targets(text, vocab, config.templates)
    log.info("%d concepts, %d (domain, concept) pairs; text targets in %.0fs", len(vocab.names), len(vocab.items), time.time() - start)
    images, labels = render_pool(vocab, config.pool, config.seed)
    log.info("rendered a pool of %d images in %.0fs", len(images), time.time() - start)
    model = micro.MicroVision(config.vision)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "position" not in n]
    rest = [p for n, p in model.named_parameters() if p.ndim < 2 or "position" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay}, {"params": rest, "weight_decay": 0.0}], lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed + 1)
    deadline = start + config.minutes * 60 - 20  # leave time for the closing zero-shot check
    train_start = time.time()
    model.train()
    hits, seen, step = 0.0, 0, 0
    while (progress := _progress(step, config, train_start, deadline)) < 1:
        idx = torch.randint(len(images), (config.batch_size,), generator=gen)
        x = augment(images[idx], config.vision.image_size, config.full_view, gen)
        t = int(torch.randint(len(targets), (1,), generator=gen))
        logits = model.log_scale.exp().clamp(max=micro.MAX_SCALE) * F.normalize(model(x), dim=-1) @ targets[t].T
        loss = F.cross_entropy(logits, labels[idx])
        for group in opt.param_groups:
            group["lr"] = _lr(step, progress, config)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        hits += float((logits.argmax(1) == labels[idx]).float().sum())
        seen += len(idx)
        step += 1
        if step % 50 == 0:
            log.info("step %d (%.0f%%) loss %.3f train-acc %.3f scale %.1f (%.0fs)", step, 100 * progress, loss.item(),
                     hits / seen, model.log_scale.exp().item(), time.time() - start)  # fmt: skip
            hits, seen = 0.0, 0
    model.eval()
    return save(model, config, step, time.time() - start, out_dir, quick_zero_shot(model, text))


@torch.no_grad()
def quick_zero_shot(
    model: micro.MicroVision, text: micro.MiniLMText, per_class: int = 4, recipe: emoji.RenderRecipe | None = None
) -> dict[str, float]:
    """Zero-shot accuracy on the base classes of each benchmark dataset, first template,
    on in-memory renderings of the test stream (the first ``per_class`` images of each class).
    Used to calibrate the benchmark's rendering difficulty without writing files."""
    recipe = recipe or emoji.RenderRecipe()
    out = {}
    for dataset, spec in emoji.DATASETS.items():
        for domain in spec.domains:
            entries = emoji.concepts(dataset, domain)
            base = entries[: math.ceil(len(entries) / 2)]
            out[f"{dataset}/{domain}"] = _accuracy(model, text, dataset, base, domain, recipe, per_class)
    return out


def _accuracy(model, text, dataset, entries, domain, recipe, per_class) -> float:
    classifier = F.normalize(text.encode_text([emoji.DATASETS[dataset].templates[0].format(emoji.classname(e)) for e in entries]), dim=-1)
    images = emoji.render_images(entries, domain, "test", per_class, recipe)
    feats = F.normalize(torch.cat([model(eval_view(images[i : i + 512], model.config.image_size)) for i in range(0, len(images), 512)]), dim=-1)
    labels = torch.arange(len(entries)).repeat_interleave(per_class)
    return round(float(((feats @ classifier.T).argmax(1) == labels).float().mean()), 4)


def save(model: micro.MicroVision, config: PretrainConfig, steps: int, seconds: float, out_dir: Path, accuracy: dict) -> dict:
    """Write weights and recipe atomically (weights first, so a recipe never names missing weights)."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    digest: dict[str, str] = {}

    def write_weights(tmp: Path) -> None:
        save_file(state, str(tmp))
        digest["fingerprint"] = hashlib.sha256(tmp.read_bytes()).hexdigest()[:16]

    atomic_write(out_dir / "micro.safetensors", write_weights)  # files.atomic_write: 0644, like the install
    fingerprint = digest["fingerprint"]
    meta = {
        "recipe": {k: v for k, v in asdict(config).items() if k != "vision"},
        "vision": asdict(config.vision),
        "steps": steps,
        "train_seconds": round(seconds),
        "torch": torch.__version__,
        "fingerprint": fingerprint,
        "benchmark_recipe": asdict(emoji.RenderRecipe()),
        "zero_shot_base_quick": accuracy,
    }
    write_json(out_dir / "micro.json", meta, indent=1)
    log.info("saved micro to %s: %s", out_dir, json.dumps(accuracy))
    return meta


# ---- the report on the rendered benchmark files ---------------------------------------------
@torch.no_grad()
def zero_shot_report(root: str | None = None, threads: int = 2) -> list[dict]:
    """Zero-shot accuracy of the shipped ``micro`` on every benchmark dataset (test split,
    first template), over the base classes (first half) and over all classes."""
    from ..data.loading import open_image

    torch.set_num_threads(threads)
    backbone = micro.load_micro().freeze()
    transform = backbone.eval_transform()
    rows = []
    for dataset, spec in emoji.DATASETS.items():
        for domain in spec.domains:
            splits = emoji.load_emoji(dataset, root, domain)
            prompts = [splits.templates[0].format(n) for n in splits.classnames]
            classifier = F.normalize(backbone.encode_text(prompts), dim=-1)
            images = torch.stack([transform(open_image(d.path)) for d in splits.test])
            feats = F.normalize(backbone.encode_image(images), dim=-1)
            labels = torch.tensor([d.label for d in splits.test])
            base = math.ceil(splits.num_classes / 2)
            on_base = labels < base
            pred_all = (feats @ classifier.T).argmax(1)
            pred_base = (feats[on_base] @ classifier[:base].T).argmax(1)
            rows.append({"dataset": dataset, "domain": domain, "classes": splits.num_classes, "base": base,
                         "chance_base": round(1 / base, 4),
                         "acc_base": round(float((pred_base == labels[on_base]).float().mean()), 4),
                         "acc_all": round(float((pred_all == labels).float().mean()), 4)})  # fmt: skip
            log.info("%s", rows[-1])
    return rows


def format_report(rows: list[dict]) -> str:
    head = "| dataset | domain | classes | base | chance (base) | zero-shot base | zero-shot all |\n|---|---|---|---|---|---|---|"
    lines = [f"| {r['dataset']} | {r['domain']} | {r['classes']} | {r['base']} | {100 * r['chance_base']:.1f} | "
             f"{100 * r['acc_base']:.1f} | {100 * r['acc_all']:.1f} |" for r in rows]  # fmt: skip
    return "\n".join([head, *lines])


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dvpt.backbones.micro_pretrain")
    parser.add_argument("--zero-shot-report", action="store_true", help="print micro's zero-shot table")
    parser.add_argument("--root", default=None, help="benchmark cache (default $DVPT_CACHE or ~/.cache/dvpt)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.zero_shot_report:
        print(format_report(zero_shot_report(args.root, args.threads)))
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
