"""``dvpt bench --fidelity``: the plan (cached fp32 against no cache in the paper specs'
precision, one run) and the ratio line (fixed numbers in, text out; nothing is timed here)."""
from __future__ import annotations

from dvpt.experiments import bench


def test_fidelity_plan_pairs_the_cached_default_with_the_image_path() -> None:
    cpu = bench.fidelity_plan("cpu", threads=2)
    assert [(c.kind, c.path, c.precision, c.fidelity) for c in cpu] == [
        ("epoch", "cached", "fp32", False), ("epoch", "naive", "fp32", True)]  # documented CPU figures are fp32
    assert all(c.backbone == "vit-b16-random" and c.n_ctx == 16 and c.batch_size == 32 and c.shots == 16
               for c in cpu)
    gpu = bench.fidelity_plan("cuda")
    assert [(c.path, c.precision) for c in gpu] == [("cached", "fp32"), ("naive", "fp16-weights")]


def test_fidelity_cost_line_and_table() -> None:
    common = {"backbone": "vit-b16-random", "kind": "epoch", "classes": 10, "shots": 16, "batch_size": 32,
              "steps": 5, "prompt_tokens": 24, "peak_mb": 2000.0, "views": 1}
    results = [common | {"path": "cached", "precision": "fp32", "seconds": 0.5, "cache_build_s": 30.0},
               common | {"path": "naive", "precision": "fp16", "fidelity": True, "seconds": 20.0}]
    assert bench.fidelity_cost(results) == (
        "fidelity cost: 40.0x per epoch (20.00 s/epoch without cache in fp16 against 0.50 s/epoch cached in "
        "fp32; vit-b16-random, 10 classes x 16 shots, 5 steps of 32; 4.000 against 0.100 s/step; the cache's "
        "one-off 30.0 s for 1 view(s) not included)")
    assert "16-shot CoOp epoch, fidelity (no cache)" in bench.table(results)
    assert bench.fidelity_cost([results[0], results[1] | {"error": "killed"}]) is None
    assert bench.fidelity_cost([results[0] | {"classes": 100}, results[1]]) is None  # not the same shapes
