"""benchmarks/gpu_checks.py, the end-to-end GPU checks, run here on the CPU with the same plan.

On a GPU it compares CUDA runs with a CPU fp32 reference; here the "device" is the CPU, so
every comparison must be exact, and a perturbed run must be caught (the check can fail).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def script():
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_checks.py"
    spec = importlib.util.spec_from_file_location("gpu_checks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cpu_plan_matches_its_reference_exactly(script, capsys) -> None:
    assert script.main(["--device", "cpu", "--methods", "coop,zeroshot", "--epochs", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| coop") or line.startswith("| zeroshot")]
    assert len(rows) == 4  # reference + one run per method
    rows_data, failures = script.run(["coop"], "cpu", ["fp32"], 1)
    reference, run = rows_data
    assert failures == [] and run["loss_rel_diff"] == 0.0 and run["prompt_logit_gap_vs_cpu"] == 0.0
    assert run["hm"] == reference["hm"] and run["loss"] > 0


def test_a_loss_off_the_reference_is_a_failure(script, monkeypatch) -> None:
    train_one = script.train_one

    def drifting(method, device, precision, data, out, epochs):
        row = train_one(method, device, precision, data, out, epochs)
        if out.name.endswith("-fp32") and row["loss"] is not None:
            row["loss"] *= 1.01  # a 1% drift: over the fp32 limit
        return row

    monkeypatch.setattr(script, "train_one", drifting)
    _, failures = script.run(["coop"], "cpu", ["fp32"], 1)
    assert len(failures) == 1 and "final training loss" in failures[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_refuses_without_cuda(script, capsys) -> None:
    assert script.main([]) == 2
    assert "no CUDA device" in capsys.readouterr().err
