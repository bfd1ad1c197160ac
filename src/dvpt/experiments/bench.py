"""Speed and memory of prompt tuning: the naive image path against the frozen-feature cache,
and the cost of the text tower as the class count grows.

Each configuration runs in a fresh child process (forked from a parent that only imported
the libraries, or ``python -m dvpt.experiments.bench CASE_JSON`` where fork is missing), so its peak
memory is its own: the CPU resident-set high-water mark (``getrusage``), or
``torch.cuda.max_memory_allocated`` on a GPU. Nothing here is a test: figures depend on the
machine and on its load, so the report names both.

Three kinds of case:
  epoch      one 16-shot CoOp epoch from PNG files, naive (image tower every step) or
             cached (K views computed once; their one-off cost is reported apart); the
             fidelity case is the naive one in the paper specs' precision (``--fidelity``);
  text       one forward + backward of the text tower over C class prompts (our fast path);
             for CoCoOp, over the C prompts of each of B images (a prefix shared per image);
  iteration  one training step at the reference shapes: batch 32 of 224x224 images through
             ViT-B/16 (naive) or 32 cached features (cached), the text tower over C prompts, SGD.
"""
from __future__ import annotations

import json
import logging
import os
import random
import resource
import string
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

log = logging.getLogger(__name__)

MICRO_WEIGHTS = Path(__file__).resolve().parent / "assets" / "micro.safetensors"


@dataclass
class Case:
    kind: str  # epoch | text | iteration
    backbone: str
    classes: int
    path: str = "cached"  # epoch: naive | cached
    shots: int = 16
    batch_size: int = 32
    n_ctx: int = 16
    views: int = 1
    threads: int = 2
    precision: str = "fp32"
    device: str = "cpu"
    repeats: int = 2
    #: text options (``dvpt.backbones.text_path.TextOptions`` fields)
    text: dict = field(default_factory=dict)
    #: text cases: run the text tower as the reference code does (77 tokens, plain loop)
    reference_text: bool = False
    #: text cases: coop (all classes once per step) or cocoop (every class per image, for
    #: ``batch_size`` images: its context is shifted per image)
    method: str = "coop"
    image_dir: str | None = None
    #: epoch cases: the paper specs' fidelity mode (no cache, their precision where it runs)
    fidelity: bool = False


def class_names(count: int, seed: int = 0) -> list[str]:
    """Distinct 5-letter names: with the byte-level tokenizer of the random-weight CLIPs each
    is 5 tokens + the period, about what CLIP's BPE gives real class names."""
    rng = random.Random(seed)
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < count:
        name = "".join(rng.choice(string.ascii_lowercase) for _ in range(5))
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def write_images(folder: Path, classes: int, shots: int, size: int) -> Path:
    """``classes`` x ``shots`` noise PNGs (content does not matter for speed)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        for s in range(shots):
            path = folder / f"c{c:04d}" / f"{s:02d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
    return folder


def _items(folder: Path, classes: int, shots: int):
    from ..data.base import Datum

    names = class_names(classes)
    return [Datum(str(folder / f"c{c:04d}" / f"{s:02d}.png"), c, names[c]) for c in range(classes) for s in range(shots)]


# ---- the worker side (runs inside the subprocess) ------------------------------------------
def _peak_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_case(case: Case) -> dict:
    """Measure one case in this process; returns seconds and memory."""
    import torch

    from ..backbones import load_backbone
    from ..engine.device import HALF_WEIGHTS, autocast
    from ..methods.coop import CoOp, CoOpOptions
    from ..prompts.text_encoding import TextOptions

    torch.set_num_threads(case.threads)
    os.environ.setdefault("DVPT_NO_PROGRESS", "1")
    device = torch.device(case.device)
    half = case.precision == HALF_WEIGHTS
    backbone = load_backbone(case.backbone, str(device), half=half)
    torch.manual_seed(0)
    names, templates = class_names(case.classes), ["a photo of a {}."]
    if case.method == "cocoop":
        from ..methods.cocoop import CoCoOp, CoCoOpOptions

        method = CoCoOp(backbone, names, templates, CoCoOpOptions(n_ctx=case.n_ctx, ctx_init="")).to(device)
    else:
        method = CoOp(backbone, names, templates, CoOpOptions(n_ctx=case.n_ctx, ctx_init="")).to(device)
    method.set_text_options(TextOptions(**case.text))
    if half:
        method.cast_fp16_parts()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if case.reference_text:  # the reference trainer's text pass, wherever the method asks for text features
        method.prompt_learner.forward = _padded_77(method.prompt_learner)
    result = {"rss_before_mb": _rss_mb()}
    with autocast(device, case.precision):
        if case.kind == "epoch":
            result |= _epoch(case, backbone, method, device)
        elif case.kind == "text":
            result |= _text(case, method, device)
        elif case.kind == "iteration":
            result |= _iteration(case, backbone, method, device)
        else:
            raise ValueError(f"unknown case kind {case.kind!r}")
    result["peak_mb"] = _peak_mb(device)
    result["prompt_tokens"] = int(method.prompt_learner.tokens.lengths.max())
    return result


def _timed(fn, repeats: int, device, warm_up=None) -> float:
    """Median seconds of ``fn`` over ``repeats`` runs, after one untimed ``warm_up`` (default:
    a run of ``fn``) that pays one-off costs (allocator, lazy initialisation)."""
    (warm_up or fn)()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _sgd_step(method, batch, optimizer, scaler=None) -> None:
    """One training step as the trainer takes it (fp16 on CUDA gets its loss scaler), in the
    context of the first step of a seed-0 run: what a method draws costs the same at any step."""
    from ..methods.base import StepContext

    optimizer.zero_grad(set_to_none=True)
    method.backward_and_step(method.losses(batch, StepContext.for_epoch(0, 0, 1)), optimizer, scaler)


def _epoch(case: Case, backbone, method, device) -> dict:
    import torch

    from ..engine.cache import FeatureStore
    from ..engine.device import grad_scaler
    from ..engine.features import FeatureBatches, ImageBatches

    items = _items(Path(case.image_dir), case.classes, case.shots)
    labels = torch.tensor([d.label for d in items])
    out: dict = {"images": len(items)}
    if case.path == "naive":
        batches = ImageBatches(items, backbone.train_transform(), case.batch_size, seed=1)
    else:
        start = time.perf_counter()
        features = FeatureStore(backbone, case.precision).train_views(items, case.views, seed=1)
        out["cache_build_s"] = time.perf_counter() - start
        batches = FeatureBatches(features, labels, case.batch_size, seed=1)
    optimizer = torch.optim.SGD(method.parameters(), lr=0.002, momentum=0.9)
    scaler = grad_scaler(device, case.precision)

    def epoch() -> None:
        method.train()
        for batch in batches.epoch(0):
            _sgd_step(method, batch.to(device), optimizer, scaler)

    def one_step() -> None:
        method.train()
        _sgd_step(method, next(iter(batches.epoch(1))).to(device), optimizer, scaler)

    out["steps"] = len(batches)
    out["seconds"] = _timed(epoch, max(1, case.repeats - 1), device, warm_up=one_step)
    return out


def _text(case: Case, method, device) -> dict:
    import torch

    if case.method == "cocoop":  # the text side of a CoCoOp step: C prompts per image
        batch = _synthetic_batch(case, method.backbone, device, images=False)

        def step() -> None:
            method.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(method.logits(batch).float(), batch.labels).backward()
    else:
        learner = method.prompt_learner
        weights = torch.randn(case.classes, method.backbone.embed_dim, device=device)

        def step() -> None:
            learner.ctx.grad = None
            (learner().float() * weights).sum().backward()

    return {"seconds": _timed(step, case.repeats, device)}


def _padded_77(learner):
    """The reference code's text pass: every prompt padded to the tower's full length."""
    import torch

    from ..backbones.base import Tokens

    backbone, tokens = learner.backbone, learner.tokens
    pad = backbone.max_text_length - tokens.ids.shape[1]
    pad_ids = torch.full((len(tokens), pad), int(tokens.ids[0, -1]), dtype=torch.long)
    full = Tokens(torch.cat([tokens.ids, pad_ids], 1), torch.cat([tokens.attention_mask, torch.zeros_like(pad_ids)], 1))
    pad_embeddings = backbone.embed_tokens(pad_ids).to(learner.ctx.device)

    def run():
        embeddings = torch.cat([learner.embeddings(), pad_embeddings], dim=1)
        return backbone.encode_text_plain(embeddings, full.to(embeddings.device))

    return run


def _synthetic_batch(case: Case, backbone, device, images: bool):
    """A seeded batch of ``case.batch_size`` labels with random images (the naive path) or
    random half-precision features (what the cache hands the method)."""
    import torch

    from ..methods.base import Batch

    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, case.classes, (case.batch_size,), generator=generator)
    if images:
        pixels = torch.randn(case.batch_size, 3, backbone.image_size, backbone.image_size, generator=generator)
        return Batch(labels=labels, images=pixels).to(device)
    features = torch.randn(case.batch_size, backbone.embed_dim, generator=generator).half()
    return Batch(labels=labels, features=features).to(device)


def _iteration(case: Case, backbone, method, device) -> dict:
    import torch

    from ..engine.device import grad_scaler

    batch = _synthetic_batch(case, backbone, device, images=case.path == "naive")
    optimizer = torch.optim.SGD(method.parameters(), lr=0.002, momentum=0.9)
    scaler = grad_scaler(device, case.precision)
    method.train()
    return {"seconds": _timed(lambda: _sgd_step(method, batch, optimizer, scaler), case.repeats, device)}


# ---- the parent side -------------------------------------------------------------------------
def _child(case: Case, conn) -> None:
    try:
        conn.send(run_case(case))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which shows it
        conn.send({"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"})
    finally:
        conn.close()


def preload() -> None:
    """Import the heavy libraries once in the parent: each forked measurement then starts in
    milliseconds, with a baseline memory equal to a fresh process's after its imports."""
    import torch  # noqa: F401
    import transformers  # noqa: F401

    from .. import methods  # noqa: F401
    from ..backbones import hf_clip  # noqa: F401
    from ..engine import cache, features  # noqa: F401


def measure(case: Case, timeout: float = 1800) -> dict:
    """Run ``case`` in a fresh child process; a failure (e.g. out of memory) is reported.

    On Linux the child is forked from a parent that imported torch but ran nothing (no
    thread pools yet); elsewhere it is a new interpreter (``python -m dvpt.experiments.bench CASE``).
    """
    import multiprocessing as mp

    started = time.perf_counter()
    if "fork" not in mp.get_all_start_methods() or case.device.startswith("cuda"):
        return _measure_subprocess(case, timeout)  # a forked child cannot use CUDA safely
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(case, child), daemon=True)
    proc.start()
    child.close()
    result = parent.recv() if parent.poll(timeout) else None
    proc.join(10)
    wall = time.perf_counter() - started
    if result is None:
        if proc.is_alive():
            proc.kill()
            return asdict(case) | {"error": f"timed out after {timeout:.0f} s"}
        return asdict(case) | {"error": f"killed (exit code {proc.exitcode}; out of memory?)", "wall_s": wall}
    return asdict(case) | result | {"wall_s": wall}


def _measure_subprocess(case: Case, timeout: float) -> dict:
    env = dict(os.environ, DVPT_NO_PROGRESS="1", OMP_NUM_THREADS=str(case.threads))
    cmd = [sys.executable, "-m", "dvpt.experiments.bench", json.dumps(asdict(case))]
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return asdict(case) | {"error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - started
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
        why = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return asdict(case) | {"error": why, "wall_s": wall}
    return asdict(case) | json.loads(lines[-1]) | {"wall_s": wall}


#: the class counts of ``--reference-shapes``; the emulated reference trainer stops at 400
REFERENCE_CLASSES = (10, 100, 400, 1000)
REFERENCE_MAX_CLASSES = 400


def micro_available() -> bool:
    return MICRO_WEIGHTS.is_file()


def plan(quick: bool = False, reference_shapes: bool = False, device: str = "cpu", threads: int = 2,
         image_dir: str | None = None, precision: str = "fp32", backbones: Sequence[str] = (),
         classes: Sequence[int] = ()) -> list[Case]:
    """The cases of a ``dvpt bench`` run (see docs/performance.md).

    ``backbones``: run every case once per backbone instead of on the plan's own, the
    backbones one after another for each case, so their figures are taken side by side under
    the same load. ``classes``: keep only the text and iteration cases at these class counts.
    """
    cases = _cases(quick, reference_shapes, device, threads, image_dir)
    for case in cases:
        if not reference_shapes:  # the reference figures are fp32
            case.precision = precision
    if classes:
        cases = [c for c in cases if c.kind == "epoch" or c.classes in set(classes)]
    if backbones:
        cases = [replace(case, backbone=name, text=dict(case.text)) for case in cases for name in backbones]
    return cases


#: registered backbones whose images are small; every other one gets 224x224 epoch images
SMALL_IMAGES = ("micro", "tiny-random", "openclip-tiny-random")


def image_size(backbone: str) -> int:
    """The size of the noise PNGs an epoch case decodes: about the backbone's input size."""
    return 64 if backbone in SMALL_IMAGES else 224


def _cases(quick: bool, reference_shapes: bool, device: str, threads: int, image_dir: str | None) -> list[Case]:
    if reference_shapes:  # the reference trainer's figures were taken at exactly these shapes
        common = dict(n_ctx=16, threads=threads, device=device)
        cases = [Case("iteration", "vit-b16-random", c, path, **common)
                 for path in ("naive", "cached") for c in REFERENCE_CLASSES]
        # the reference trainer emulated in the same run: image tower every step, text padded to
        # 77 tokens with no shared prefix; not at 1000 classes, where it needs > 20 GiB
        return cases + [Case("iteration", "vit-b16-random", c, "naive", reference_text=True, **common)
                        for c in REFERENCE_CLASSES if c <= REFERENCE_MAX_CLASSES]
    small = "micro" if micro_available() else "tiny-random"
    classes = 20 if quick else 76  # 76: the base half of emoji-animals (152 concepts)
    cases = [Case("epoch", small, classes, path, views=2 if quick else 8, threads=threads, device=device,
                  n_ctx=4, image_dir=image_dir) for path in ("naive", "cached")]
    cases += [Case("text", small, c, n_ctx=4, threads=threads, device=device) for c in (10, 100, 1000)]
    if not quick:
        cases += [Case("epoch", "vit-b16-random", 10, path, views=1, threads=threads, device=device, repeats=1,
                       image_dir=image_dir) for path in ("naive", "cached")]
        cases += [Case("text", "vit-b16-random", c, threads=threads, device=device) for c in (10, 100, 1000)]
        cases += [Case("text", "vit-b16-random", 100, threads=threads, device=device, reference_text=True)]
        cases += [Case("text", "vit-b16-random", 1000, threads=threads, device=device, text={"chunk": 100}),
                  Case("text", "vit-b16-random", 1000, threads=threads, device=device, text={"checkpoint": True})]
        # CoCoOp: 4 images x 100 classes, with and without the prefix shared per image
        cases += [Case("text", "vit-b16-random", 100, method="cocoop", batch_size=4, n_ctx=4, threads=threads,
                       device=device, text={"share_prefix": share}) for share in (False, True)]
    return cases


def fidelity_precision(device: str) -> str:
    """The paper specs' precision on CUDA, the official pure fp16 (``fp16-weights``); fp32 on
    the CPU, where a paper sweep does not run and the documented CPU figures are fp32."""
    return "fp16-weights" if device.startswith("cuda") else "fp32"


def fidelity_plan(device: str = "cpu", threads: int = 2, image_dir: str | None = None, classes: int = 10,
                  repeats: int = 2) -> list[Case]:
    """``dvpt bench --fidelity``: one 16-shot CoOp epoch of ViT-B/16 (random weights, 224x224
    PNGs, 16 context tokens, batch 32) twice in one run: the everyday default (cached
    features, fp32) and the paper specs' fidelity mode (no cache: load, crop, flip and encode
    every image at every step, with fp16 weights on CUDA)."""
    common = dict(views=1, threads=threads, device=device, repeats=repeats, image_dir=image_dir)
    return [Case("epoch", "vit-b16-random", classes, "cached", precision="fp32", **common),
            Case("epoch", "vit-b16-random", classes, "naive", precision=fidelity_precision(device), fidelity=True,
                 **common)]


def fidelity_cost(results: Sequence[dict]) -> str | None:
    """"fidelity cost: Rx per epoch (...)": the fidelity epoch over the cached fp32 one of the
    same backbone and class count, from one run."""
    ok = [r for r in results if r["kind"] == "epoch" and "error" not in r]
    for fid in (r for r in ok if r.get("fidelity")):
        for base in ok:
            if (base["path"] == "cached" and base.get("precision", "fp32") == "fp32"
                    and (base["backbone"], base["classes"]) == (fid["backbone"], fid["classes"])):
                return (f"fidelity cost: {fid['seconds'] / base['seconds']:.1f}x per epoch "
                        f"({fid['seconds']:.2f} s/epoch without cache in {fid['precision']} against "
                        f"{base['seconds']:.2f} s/epoch cached in fp32; {fid['backbone']}, {fid['classes']} classes "
                        f"x {fid['shots']} shots, {fid['steps']} steps of {fid['batch_size']}; {fid['seconds'] / fid['steps']:.3f} "
                        f"against {base['seconds'] / base['steps']:.3f} s/step; the cache's one-off "
                        f"{base['cache_build_s']:.1f} s for {base['views']} view(s) not included)")
    return None


def run_plan(cases: Sequence[Case], on_result=None) -> list[dict]:
    """Measure each case (images for the epoch cases are written to a temporary folder)."""
    preload()
    results = []
    with tempfile.TemporaryDirectory(prefix="dvpt-bench-") as tmp:
        made: dict[tuple, str] = {}
        for case in cases:
            if case.kind == "epoch" and case.image_dir is None:
                size = image_size(case.backbone)
                key = (case.classes, case.shots, size)
                if key not in made:
                    made[key] = str(write_images(Path(tmp) / f"{case.classes}-{case.shots}-{size}", *key))
                case.image_dir = made[key]
            result = measure(case)
            results.append(result)
            if on_result:
                on_result(result)
    return results


def describe(result: dict) -> str:
    path = "reference" if result.get("reference_text") and result["kind"] != "text" else result["path"]
    if result.get("fidelity"):
        path = "fidelity (no cache)"
    text = (f"CoCoOp text fwd+bwd, {result['batch_size']} images" if result.get("method") == "cocoop"
            else "text fwd+bwd")
    return {"epoch": f"16-shot CoOp epoch, {path}", "text": text,
            "iteration": f"train iteration, batch {result['batch_size']}, {path}"}[result["kind"]]


def table(results: Sequence[dict]) -> str:
    """A markdown table of the results."""
    rows = ["| backbone | case | classes | prompt tokens | seconds | peak memory (MB) | notes |",
            "|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            rows.append(f"| {r['backbone']} | {describe(r)} | {r['classes']} | | failed | | {r['error']} |")
            continue
        notes = [f"text.{k}={v}" for k, v in r.get("text", {}).items()]
        if r.get("reference_text"):
            notes.append("as the reference code: padded to 77 tokens, no prefix sharing")
        if r.get("precision", "fp32") != "fp32":
            notes.insert(0, r["precision"])
        if r["kind"] == "epoch":
            notes.append(f"{r['steps']} steps of {r['batch_size']}")
            if r["path"] == "cached":
                notes.append(f"one-off cache of {r['views']} view(s): {r['cache_build_s']:.1f} s")
        unit = "s/epoch" if r["kind"] == "epoch" else ("s/iter" if r["kind"] == "iteration" else "s/step")
        rows.append(f"| {r['backbone']} | {describe(r)} | {r['classes']} | {r['prompt_tokens']} | "
                    f"{r['seconds']:.3f} {unit} | {r['peak_mb']:.0f} | {'; '.join(notes)} |")
    return "\n".join(rows)


def epoch_pair(results: Sequence[dict]) -> tuple[dict, dict] | None:
    """The (naive, cached) epoch results of the first backbone that has both."""
    epochs = [r for r in results if r["kind"] == "epoch" and "error" not in r]
    for r in epochs:
        if r["path"] == "naive":
            cached = [c for c in epochs if c["path"] == "cached" and c["backbone"] == r["backbone"]]
            if cached:
                return r, cached[0]
    return None


def speedup(results: Sequence[dict]) -> float | None:
    """Naive / cached seconds per epoch of the first backbone that has both."""
    pair = epoch_pair(results)
    return pair[0]["seconds"] / pair[1]["seconds"] if pair else None


def where_the_epoch_goes(results: Sequence[dict]) -> str | None:
    """The naive epoch split into what the cache removes (loading, augmenting, encoding the
    images) and what it keeps (the text tower at every step), so a small speedup is explained."""
    pair = epoch_pair(results)
    if not pair:
        return None
    naive, cached = pair
    image_side = max(0.0, naive["seconds"] - cached["seconds"])
    return (f"{naive['backbone']} epoch: image side {image_side:.2f} s ({1000 * image_side / naive['images']:.1f} ms "
            f"per image; what the cache removes), text side {cached['seconds']:.2f} s ({cached['steps']} steps of "
            f"{cached['seconds'] / cached['steps']:.3f} s over {cached['classes']} classes; what it keeps)")


def backbone_ratios(results: Sequence[dict]) -> list[str]:
    """Lines "<case>, C classes: A x s, B y s (B/A r)" for each case measured on more than one
    backbone in the run (``--backbone A --backbone B``); the first backbone is the baseline."""
    groups: dict[tuple, dict[str, float]] = {}
    for r in results:
        if "error" in r:
            continue
        key = (describe(r), r["classes"], json.dumps(r.get("text", {}), sort_keys=True), bool(r.get("reference_text")))
        groups.setdefault(key, {})[r["backbone"]] = r["seconds"]
    lines = []
    for (what, classes, text, reference), seconds in groups.items():
        if len(seconds) < 2:
            continue
        (base, base_s), *others = seconds.items()
        label = what + (", padded to 77 tokens" if reference else "") + (f", text {text}" if text != "{}" else "")
        parts = [f"{base} {base_s:.3f} s"] + [f"{name} {sec:.3f} s ({sec / base_s:.2f}x)" for name, sec in others]
        lines.append(f"{label}, {classes} classes: " + ", ".join(parts))
    return lines


def reference_ratios(results: Sequence[dict]) -> list[str]:
    """Lines "C classes: reference X s/iter, naive Y (Zx), cached W (Vx)" for the iteration
    cases measured side by side in one ``--reference-shapes`` run; one set per backbone, each
    line led by the backbone's name when the run measured several."""
    rows: dict[tuple[str, int], dict[str, float]] = {}
    for r in results:
        if r["kind"] == "iteration" and "error" not in r:
            key = "reference" if r.get("reference_text") else r["path"]
            rows.setdefault((r["backbone"], r["classes"]), {})[key] = r["seconds"]
    several = len({backbone for backbone, _ in rows}) > 1
    lines = []
    for (backbone, classes), row in sorted(rows.items(), key=lambda item: (item[0][1], item[0][0])):
        if "reference" not in row:
            continue
        parts = [f"{backbone + ', ' if several else ''}{classes} classes: reference {row['reference']:.2f} s/iter"]
        parts += [f"{path} {row[path]:.2f} ({row['reference'] / row[path]:.1f}x fewer s)"
                  for path in ("naive", "cached") if path in row]
        lines.append(", ".join(parts))
    return lines


def worker(argv: Sequence[str]) -> int:
    case = Case(**json.loads(argv[0]))
    print(json.dumps(run_case(case)), flush=True)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(worker(sys.argv[1:]))
