"""The frozen-feature cache: the cached path trains like the naive one, and the cache is
rebuilt exactly when something that shapes the features changed (encoder calls counted)."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dvpt.backbones import transforms
from dvpt.backbones.hf_clip import HFCLIPBackbone
from dvpt.config import build_config
from dvpt.config.schema import OptimConfig
from dvpt.data.base import Datum
from dvpt.engine.cache import FeatureStore
from dvpt.engine.features import FeatureBatches, ImageBatches, encode_items
from dvpt.engine.session import Session
from dvpt.engine.trainer import Trainer
from dvpt.methods.base import Batch
from dvpt.methods.coop import CoOp, CoOpOptions

from conftest import first_step

CLASSES = ["red", "green", "blue"]


@pytest.fixture(scope="module")
def backbone() -> HFCLIPBackbone:
    torch.set_num_threads(1)
    return HFCLIPBackbone.tiny_random()


@pytest.fixture()
def items(tmp_path: Path) -> list[Datum]:
    rng = np.random.default_rng(0)
    out = []
    for label, name in enumerate(CLASSES):
        for i in range(4):
            path = tmp_path / "img" / f"{name}{i}.png"
            path.parent.mkdir(exist_ok=True)
            pixels = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
            pixels[..., label] = 255 - i * 10  # a class colour, so training has signal
            Image.fromarray(pixels).save(path)
            out.append(Datum(str(path), label, name))
    return out


class Counter:
    """Counts images through the backbone's image tower."""

    def __init__(self, backbone, monkeypatch) -> None:
        self.images = 0
        original = backbone.encode_image

        def encode(images, deep_prompts=None):
            self.images += images.shape[0]
            return original(images, deep_prompts)

        monkeypatch.setattr(backbone, "encode_image", encode)


def coop(backbone) -> CoOp:
    torch.manual_seed(0)
    return CoOp(backbone, CLASSES, ["a photo of a {}."], CoOpOptions(n_ctx=4, ctx_init=""))


def labels_of(items) -> torch.Tensor:
    return torch.tensor([d.label for d in items])


# ---- cached path == naive path ------------------------------------------------------------
def test_same_loss_and_gradients(backbone, items):
    transform = backbone.eval_transform()  # deterministic: one view is exact
    naive = next(ImageBatches(items, transform, 6, seed=1).epoch(0))
    feats = FeatureStore(backbone).train_views(items, 1, seed=1, transform=transform)
    cached = next(FeatureBatches(feats, labels_of(items), 6, seed=1).epoch(0))
    assert torch.equal(naive.labels, cached.labels)  # same items in the same order
    results = []
    for batch in (naive, cached):
        method = coop(backbone)
        loss = method.losses(batch, first_step())["loss"]
        loss.backward()
        results.append((loss.detach(), method.prompt_learner.ctx.grad.clone()))
    (loss_a, grad_a), (loss_b, grad_b) = results
    # cached features are float16: agreement to half-precision tolerance
    torch.testing.assert_close(loss_b, loss_a, atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(grad_b, grad_a, atol=1e-3, rtol=1e-2)


def test_same_training_run(backbone, items):
    transform = backbone.eval_transform()
    optim = OptimConfig(epochs=3, batch_size=4, lr=0.05, warmup_epochs=0)
    feats = FeatureStore(backbone).train_views(items, 1, seed=3, transform=transform)
    runs = []
    for batches in (ImageBatches(items, transform, 4, seed=3), FeatureBatches(feats, labels_of(items), 4, seed=3)):
        method = coop(backbone)
        history = Trainer(method, batches, optim, torch.device("cpu"), seed=3).fit()
        runs.append((method.prompt_learner.ctx.detach().clone(), [h["loss"] for h in history]))
    (ctx_a, loss_a), (ctx_b, loss_b) = runs
    np.testing.assert_allclose(loss_b, loss_a, atol=3e-3, rtol=3e-3)
    torch.testing.assert_close(ctx_b, ctx_a, atol=1e-3, rtol=1e-2)
    assert loss_a[-1] < loss_a[0]  # it did train


def test_eval_features_equal_image_path(backbone, items):
    feats = FeatureStore(backbone).eval_features(items)
    direct = encode_items(backbone, items, backbone.eval_transform())
    assert feats.dtype == torch.float32
    torch.testing.assert_close(feats, direct, atol=0, rtol=0)
    images = torch.stack([backbone.eval_transform()(Image.open(d.path)) for d in items])
    method = coop(backbone)
    with torch.no_grad():
        a = method.logits(Batch(labels_of(items), images=images))
        b = method.logits(Batch(labels_of(items), features=feats))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_train_views_half_precision_and_seeded(backbone, items):
    store = FeatureStore(backbone)
    views = store.train_views(items, 3, seed=1)
    assert views.shape == (3, len(items), backbone.embed_dim) and views.dtype == torch.float16
    assert not torch.equal(views[0], views[1])  # augmentation differs per view
    again = FeatureStore(backbone).train_views(items, 3, seed=1)
    torch.testing.assert_close(again, views, atol=0, rtol=0)  # and is reproducible
    # built inside a caller's CPU bf16 autocast (dvpt bench does this): same features
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = FeatureStore(backbone).train_views(items, 3, seed=1)
    torch.testing.assert_close(under_autocast, views, atol=0, rtol=0)


# ---- reuse and invalidation -----------------------------------------------------------------
def test_reused_when_nothing_changed(backbone, items, tmp_path, monkeypatch):
    counter = Counter(backbone, monkeypatch)
    store = FeatureStore(backbone, cache_dir=tmp_path / "cache")
    first = store.train_views(items, 2, seed=1)
    assert counter.images == 2 * len(items)
    store.train_views(items, 2, seed=1)
    assert counter.images == 2 * len(items) and store.encoder_passes == 1  # memory hit
    fresh = FeatureStore(backbone, cache_dir=tmp_path / "cache")  # a later run
    again = fresh.train_views(items, 2, seed=1)
    assert counter.images == 2 * len(items) and fresh.disk_hits == 1
    torch.testing.assert_close(again, first, atol=0, rtol=0)
    fresh.eval_features(items)
    FeatureStore(backbone, cache_dir=tmp_path / "cache").eval_features(items)
    assert counter.images == 3 * len(items)
    assert not list((tmp_path / "cache").glob("*.tmp"))  # atomic writes leave no temp files


@pytest.mark.parametrize("change", ["backbone", "transform", "dataset", "shots", "views", "seed"])
def test_rebuilt_when_inputs_change(backbone, items, tmp_path, change, monkeypatch):
    cache = tmp_path / "cache"
    FeatureStore(backbone, cache_dir=cache).train_views(items, 2, seed=1)
    bb, kwargs, used = backbone, {"views": 2, "seed": 1}, items
    if change == "backbone":
        bb = HFCLIPBackbone.tiny_random(seed=5)
    elif change == "transform":
        kwargs["transform"] = transforms.train_transform(32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    elif change == "dataset":
        path = items[0].path
        Image.new("RGB", (40, 40), "white").save(path)  # same path, new content
        os.utime(path, ns=(10**18, 10**18))
    elif change == "shots":
        used = [d for d in items if not d.path.endswith("3.png")]  # 3 shots instead of 4
    elif change in ("views", "seed"):
        kwargs[change] = 3
    counter = Counter(bb, monkeypatch)
    store = FeatureStore(bb, cache_dir=cache)
    store.train_views(used, **kwargs)
    assert store.encoder_passes == 1 and store.disk_hits == 0 and counter.images > 0
    assert len(list(cache.glob("train-*.safetensors"))) == 2


def test_unreadable_or_foreign_file_is_recomputed(backbone, items, tmp_path):
    cache = tmp_path / "cache"
    want = FeatureStore(backbone, cache_dir=cache).eval_features(items)
    (path,) = cache.glob("eval-*.safetensors")
    path.write_bytes(b"not a safetensors file")
    store = FeatureStore(backbone, cache_dir=cache)
    torch.testing.assert_close(store.eval_features(items), want, atol=0, rtol=0)
    assert store.encoder_passes == 1
    from safetensors.torch import save_file

    save_file({"features": torch.zeros_like(want)}, str(path), metadata={"key": '{"other": 1}'})
    store = FeatureStore(backbone, cache_dir=cache)
    torch.testing.assert_close(store.eval_features(items), want, atol=0, rtol=0)
    assert store.encoder_passes == 1


# ---- session wiring -----------------------------------------------------------------------------
def session(tmp_path: Path, views: int) -> Session:
    cfg = build_config(flags={"method": "coop", "backbone": "tiny-random", "device": "cpu", "threads": 1,
                              "optim": {"epochs": 1, "batch_size": 4},
                              "cache": {"views": views, "dir": str(tmp_path / "cache")}})
    return Session(cfg)


@pytest.mark.parametrize("image_tower", [False, True])
def test_session_uses_cache_unless_method_needs_image_tower(items, tmp_path, monkeypatch, image_tower):
    s = session(tmp_path, views=2)
    counter = Counter(s.backbone, monkeypatch)
    method = s.build_method(CLASSES, ["a photo of a {}."])
    monkeypatch.setattr(method, "uses_image_tower", image_tower)
    s.train(method, items)
    if image_tower:  # maple/promptsrc: images through the tower at every step
        assert s.store.encoder_passes == 0 and counter.images == len(items)
    else:
        assert s.store.encoder_passes == 1 and counter.images == 2 * len(items)
        assert len(list((tmp_path / "cache").glob("train-*.safetensors"))) == 1


def test_session_text_options_from_config(tmp_path):
    s = session(tmp_path, views=1)
    s.cfg = replace(s.cfg, text=replace(s.cfg.text, chunk=2, checkpoint=True))
    from dvpt.prompts.text_encoding import TextOptions

    method = Session(s.cfg).build_method(CLASSES, ["a photo of a {}."])
    assert method.text_options == TextOptions(True, 2, True)
    assert all(m.text_options == method.text_options for m in method.modules() if hasattr(m, "text_options"))


# ---- dvpt bench's report (no timing here: fixed numbers in, text out) ---------------------------
def test_bench_report_and_speedup():
    from dvpt.experiments import bench

    names = bench.class_names(1000)
    assert len(set(names)) == 1000 and all(len(n) == 5 for n in names)
    common = {"backbone": "micro", "classes": 20, "batch_size": 32, "prompt_tokens": 9, "peak_mb": 500.0}
    results = [
        common | {"kind": "epoch", "path": "naive", "seconds": 6.0, "steps": 10},
        common | {"kind": "epoch", "path": "cached", "seconds": 0.5, "steps": 10, "views": 8, "cache_build_s": 3.0},
        common | {"kind": "text", "path": "cached", "classes": 1000, "error": "killed (out of memory?)"},
    ]
    assert bench.speedup(results) == pytest.approx(12.0)
    results[0]["images"] = results[1]["images"] = 200
    assert bench.where_the_epoch_goes(results) == (
        "micro epoch: image side 5.50 s (27.5 ms per image; what the cache removes), "
        "text side 0.50 s (10 steps of 0.050 s over 20 classes; what it keeps)")
    text = bench.table(results)
    assert "6.000 s/epoch" in text and "one-off cache of 8 view(s): 3.0 s" in text and "failed" in text
    quick = bench.plan(quick=True)
    assert {c.kind for c in quick} == {"epoch", "text"} and sorted(c.classes for c in quick if c.kind == "text") == [10, 100, 1000]
    ref = bench.plan(reference_shapes=True)
    assert [(c.path, c.classes, c.reference_text) for c in ref] == (
        [(p, c, False) for p in ("naive", "cached") for c in (10, 100, 400, 1000)]
        + [("naive", c, True) for c in (10, 100, 400)])
    assert all(c.backbone == "vit-b16-random" and c.n_ctx == 16 and c.batch_size == 32 and c.threads == 2
               and c.precision == "fp32" for c in ref)


def test_bench_reference_ratios_side_by_side():
    from dvpt.experiments import bench

    common = {"backbone": "vit-b16-random", "kind": "iteration", "batch_size": 32}
    results = [
        common | {"classes": 100, "path": "naive", "seconds": 6.0},
        common | {"classes": 100, "path": "cached", "seconds": 0.5},
        common | {"classes": 100, "path": "naive", "reference_text": True, "seconds": 12.0},
        common | {"classes": 1000, "path": "cached", "seconds": 3.0},  # no reference: no line
        common | {"classes": 10, "path": "naive", "reference_text": True, "error": "killed"},
    ]
    assert bench.reference_ratios(results) == [
        "100 classes: reference 12.00 s/iter, naive 6.00 (2.0x fewer s), cached 0.50 (24.0x fewer s)"]
    assert bench.describe(results[2]) == "train iteration, batch 32, reference"


def test_bench_reference_text_pass_equals_the_fast_path(tiny):
    """The emulated reference trainer computes the same text features (77 tokens, no sharing)."""
    from dvpt.experiments import bench
    from dvpt.methods.coop import CoOp, CoOpOptions

    torch.manual_seed(0)
    method = CoOp(tiny, bench.class_names(5), ["a photo of a {}."], CoOpOptions(n_ctx=4, ctx_init=""))
    learner = method.prompt_learner
    fast = learner()
    reference = bench._padded_77(learner)()
    assert learner.tokens.ids.shape[1] < tiny.max_text_length
    torch.testing.assert_close(reference, fast, atol=1e-5, rtol=1e-4)


def test_gpu_script_plans_every_path_and_refuses_without_cuda(capsys, monkeypatch):
    """benchmarks/gpu_vit_b16.py: naive, cached and emulated-reference iterations plus the text
    pass per precision; on a machine without CUDA it says so and exits 2 (nothing measured)."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_vit_b16.py"
    spec = importlib.util.spec_from_file_location("gpu_vit_b16", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    planned = script.cases([10, 100], ["bf16", "fp32"], repeats=3)
    kinds = {(c.precision, c.kind, c.path, c.reference_text, c.classes) for c in planned}
    assert len(planned) == len(kinds) == 2 * (2 * 3 + 2)
    assert ("bf16", "iteration", "naive", True, 100) in kinds and ("fp32", "text", "cached", False, 10) in kinds
    assert all(c.device == "cuda" and c.backbone == "vit-b16-random" and c.n_ctx == 16 for c in planned)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the refusal is checked on any machine
    assert script.main([]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_bench_measurements_run_in_a_child_process(tmp_path):
    """The code paths behind `dvpt bench` and the GPU script, on tiny inputs: a forked child
    (epoch, naive and cached) and a fresh interpreter (the reference iteration). Only the
    structure is checked; the seconds are whatever they are."""
    from dvpt.experiments import bench

    images = bench.write_images(tmp_path / "imgs", classes=3, shots=2, size=32)
    common = dict(backbone="tiny-random", classes=3, shots=2, batch_size=4, n_ctx=2, threads=1, repeats=1)
    naive = bench.measure(bench.Case("epoch", path="naive", image_dir=str(images), **common))
    cached = bench.measure(bench.Case("epoch", path="cached", views=2, image_dir=str(images), **common))
    reference = bench._measure_subprocess(bench.Case("iteration", path="naive", reference_text=True, **common), 300)
    cocoop = bench.measure(bench.Case("text", method="cocoop", **common))
    for result in (naive, cached, reference, cocoop):
        assert "error" not in result, result.get("error")
        assert result["seconds"] > 0 and result["peak_mb"] > 0 and result["prompt_tokens"] >= 2 + 2
    assert naive["images"] == cached["images"] == 6 and naive["steps"] == cached["steps"] == 1  # 6 // 4, last dropped
    assert "cache_build_s" in cached and "cache_build_s" not in naive
    assert bench.describe(reference) == "train iteration, batch 4, reference"
    assert bench.describe(cocoop) == "CoCoOp text fwd+bwd, 4 images"
    full = bench.plan()
    assert [(c.method, c.batch_size, c.classes, c.text) for c in full if c.method == "cocoop"] == [
        ("cocoop", 4, 100, {"share_prefix": False}), ("cocoop", 4, 100, {"share_prefix": True})]


def test_bench_backbones_side_by_side(tmp_path):
    """--backbone A --backbone B: every case once per backbone, A then B case by case (taken
    under the same load), --classes keeps the chosen counts, and each pair gets its ratio
    line. One real text case on openclip-tiny-random runs in a child (structure only)."""
    from dvpt.experiments import bench

    names = ["vit-b16-random", "openclip:ViT-B-16"]
    ref = bench.plan(reference_shapes=True, backbones=names, classes=[10, 100])
    assert [(c.backbone, c.classes, c.path, c.reference_text) for c in ref[:4]] == [
        ("vit-b16-random", 10, "naive", False), ("openclip:ViT-B-16", 10, "naive", False),
        ("vit-b16-random", 100, "naive", False), ("openclip:ViT-B-16", 100, "naive", False)]
    assert {c.classes for c in ref} == {10, 100} and len(ref) == 2 * 6
    assert bench.plan(reference_shapes=True, classes=[7]) == []
    assert bench.image_size("openclip:ViT-B-16") == 224 and bench.image_size("openclip-tiny-random") == 64
    common = {"kind": "text", "path": "cached", "classes": 100, "batch_size": 32, "prompt_tokens": 24, "peak_mb": 1.0}
    results = [common | {"backbone": "vit-b16-random", "seconds": 0.5},
               common | {"backbone": "openclip:ViT-B-16", "seconds": 0.6},
               common | {"backbone": "vit-b16-random", "seconds": 9.0, "reference_text": True},
               common | {"backbone": "openclip:ViT-B-16", "error": "killed"}]
    assert bench.backbone_ratios(results) == [
        "text fwd+bwd, 100 classes: vit-b16-random 0.500 s, openclip:ViT-B-16 0.600 s (1.20x)"]
    iterations = [{"kind": "iteration", "backbone": b, "classes": 10, "path": p, "reference_text": ref, "seconds": sec}
                  for b, scale in (("vit-b16-random", 1.0), ("openclip:ViT-B-16", 2.0))
                  for p, ref, sec in (("naive", False, 6.0 * scale), ("cached", False, 0.5 * scale),
                                      ("naive", True, 12.0 * scale))]
    assert bench.reference_ratios(iterations) == [
        "openclip:ViT-B-16, 10 classes: reference 24.00 s/iter, naive 12.00 (2.0x fewer s), cached 1.00 (24.0x fewer s)",
        "vit-b16-random, 10 classes: reference 12.00 s/iter, naive 6.00 (2.0x fewer s), cached 0.50 (24.0x fewer s)"]
    quick = bench.plan(quick=True, backbones=["openclip-tiny-random"], classes=[10])
    assert {c.backbone for c in quick} == {"openclip-tiny-random"} and [c.classes for c in quick if c.kind == "text"] == [10]
    text = next(c for c in quick if c.kind == "text")
    result = bench.measure(bench.replace(text, threads=1, repeats=1))
    assert "error" not in result, result.get("error")
    assert result["seconds"] > 0 and result["prompt_tokens"] > 4
