"""The engine's ``StepContext``: what a method's losses and epoch hooks know about where training stands.

The digests below pin the learnable tensors and accuracies of short ``dvpt train`` runs of
every method that learns, so moving the methods' epoch counting and random stream into the
context (and any later change to the method API) cannot shift a published number: the same
draws in the same order, bit for bit.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch

from dvpt.cli import main
from dvpt.engine.checkpoint import load_learnable, load_trainer_state, save_learnable
from dvpt.engine.restore import restore_method
from dvpt.inference.api import load_state
from dvpt.methods import get_method
from dvpt.methods.base import StepContext, method_generator

from conftest import make_colour_folder

#: sha256 of the trainable parameters after ``dvpt train`` (ARGS + the case's flags), and the
#: run's (base, novel, hm), recorded with the code before ``StepContext`` existed (DVPT then
#: kept ``epochs_done``, its seed and its own generator; PromptSRC counted GPA epochs itself;
#: evaluation took its batch size and precision as arguments; the text path took
#: ``shared_prefix``/``prefix_groups``): main at 5c522c1, this machine, one thread. The dvpt
#: feature, proto and mixup cases each fail when a method's random stream moves (checked:
#: seeding it with epoch + 7 changes all three digests); promptsrc pins the GPA weights read
#: from the epoch; dvpt with both terms off is CoOp, bit for bit.
DIGESTS = {
    "coop": (["--method", "coop"], "a165ce700ce4faeafec3d08deb15777993a720d03a1c9c140f5eee2d46548ff3",
             (66.66667175292969, 33.333335876464844, 44.44444783528646)),
    "kgcoop": (["--method", "kgcoop"], "01a9fc198a4d273bd885d09ab1b92e9d427fa06273322e8c47ea076453bdd667",
               (66.66667175292969, 33.333335876464844, 44.44444783528646)),
    "prograd": (["--method", "prograd"], "eead6560fa5782510a9f7ac0e841dded51e022db284436f30d9cebed5b8dc6c0",
                (66.66667175292969, 16.666667938232422, 26.666668701171876)),
    "maple": (["--method", "maple"], "31acce5cc33d27d87012f8b54870d15204a196c69c0292cee0bbaeaca28cd714",
              (66.66667175292969, 33.333335876464844, 44.44444783528646)),
    "cocoop": (["--method", "cocoop"], "f8e356bd7bc1369ffa93b68e2e7b0d786eb5eeba8b9c91d1dba52743864dcdcb",
               (33.333335876464844, 66.66667175292969, 44.44444783528646)),
    "dvpt-feature": (["--method", "dvpt"], "cfebe182e191ca950ffe7cd210c8092547a68fc379cd12bea3884fc8f3783609",
                     (33.333335876464844, 33.333335876464844, 33.333335876464844)),
    "dvpt-proto": (["--method", "dvpt", "--set", "options.visual_aug=proto"],
                   "232c39218039fd6e31e514d05c711385991d51add737101639ac38f0d9070c6c",
                   (33.333335876464844, 33.333335876464844, 33.333335876464844)),
    "dvpt-mixup": (["--method", "dvpt", "--set", "options.visual_aug=mixup"],
                   "2230f3f860110139b0bf510796a8c112fb6cc2560fe0d1723a66e551290e9a08",
                   (33.333335876464844, 33.333335876464844, 33.333335876464844)),
    "dvpt-protoview-iic": (["--method", "dvpt", "--set", "options.visual_aug=protoview", "--set", "options.mi=iic"],
                           "5ebc26e8462e1d9505f54f1171dcdd13462a146dbdfdfe376f41a899f9a96e81",
                           (33.333335876464844, 33.333335876464844, 33.333335876464844)),
    "dvpt-none": (["--method", "dvpt", "--set", "options.visual_aug=none", "--set", "options.mi=none"],
                  "a165ce700ce4faeafec3d08deb15777993a720d03a1c9c140f5eee2d46548ff3",
                  (33.333335876464844, 33.333335876464844, 33.333335876464844)),
    "promptsrc": (["--method", "promptsrc"], "34ae77ed45016a7121ba85ec65d764a154279cf2bc52ed71417181284e3b75f7",
                  (66.66667175292969, 33.333335876464844, 44.44444783528646)),
}
ARGS = ["train", "--backbone", "tiny-random", "--dataset", "folder", "--protocol", "base2novel", "--shots", "4",
        "--epochs", "2", "--batch-size", "4", "--seed", "3", "--threads", "1"]


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # --threads 1 must not leak into later test files


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_colour_folder(tmp_path_factory.mktemp("colours"), per_class=6, size=24)


def parameter_digest(method: torch.nn.Module) -> str:
    """sha256 over the names, dtypes, shapes and bytes of the trainable parameters."""
    h = hashlib.sha256()
    for name, p in sorted(method.named_parameters()):
        if p.requires_grad:
            t = p.detach().cpu().contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("case", sorted(DIGESTS))
def test_training_and_evaluation_are_bit_identical_to_before_the_context(case, data, tmp_path):
    flags, expected, accuracies = DIGESTS[case]
    run = tmp_path / case
    assert main([*ARGS, *flags, "--root", str(data), "-o", str(run)]) == 0
    _, trained, _ = restore_method(run)
    assert parameter_digest(trained) == expected
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["base"], metrics["novel"], metrics["hm"]) == accuracies


def test_a_resumed_dvpt_run_draws_what_an_uninterrupted_one_draws(data, tmp_path, monkeypatch):
    """Killed after epoch 1, resumed: the feature draws of epoch 2 come from the context."""
    from dvpt.engine import trainer as trainer_mod

    argv = [*ARGS, "--method", "dvpt", "--root", str(data)]  # the dvpt-feature case
    real_save = trainer_mod.Trainer._save

    def save_then_die(self, optimizer, epoch, history, finalized):
        real_save(self, optimizer, epoch, history, finalized)
        if epoch == 1 and not finalized:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer_mod.Trainer, "_save", save_then_die)
    assert main([*argv, "-o", str(tmp_path / "run")]) != 0  # dvpt train: interrupted
    assert load_trainer_state(tmp_path / "run" / "checkpoint")["epoch"] == 1
    monkeypatch.setattr(trainer_mod.Trainer, "_save", real_save)
    assert main([*argv, "-o", str(tmp_path / "run")]) == 0
    _, trained, _ = restore_method(tmp_path / "run")
    assert parameter_digest(trained) == DIGESTS["dvpt-feature"][1]


def test_context_stream_is_the_methods_stream_of_seed_and_epoch():
    ctx = StepContext.for_epoch(3, 1, 5)
    assert (ctx.seed, ctx.epoch, ctx.epochs, ctx.step) == (3, 1, 5, 0)
    reference = torch.Generator().manual_seed(3 * 1_000_003 + 1)  # the formula DVPT seeded itself with
    assert torch.equal(torch.rand(4, generator=ctx.generator), torch.rand(4, generator=reference))
    later = ctx.at_step(2)  # the same epoch: the same stream, continued
    assert later.step == 2 and later.generator is ctx.generator
    assert torch.equal(torch.rand(4, generator=later.generator), torch.rand(4, generator=reference))
    other = torch.rand(4, generator=method_generator(3, 2))
    assert not torch.equal(torch.rand(4, generator=method_generator(3, 1)), other)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.epoch = 2  # type: ignore[misc]


def test_trainer_hands_every_step_its_context(tiny):
    """Epochs 0..E-1, steps 0..S-1 within each, one stream per epoch shared by its steps and
    its on_epoch_end, the run seed passed through."""
    from dvpt.config.schema import OptimConfig
    from dvpt.engine.features import FeatureBatches
    from dvpt.engine.trainer import Trainer
    from dvpt.methods.coop import CoOpOptions

    torch.manual_seed(0)
    method = get_method("coop")(tiny, ["red", "green", "blue"], [], CoOpOptions())
    seen: list[tuple[str, int, int, int, int, int]] = []
    real_losses = method.losses

    def losses(batch, ctx):
        seen.append(("step", ctx.seed, ctx.epoch, ctx.epochs, ctx.step, id(ctx.generator)))
        return real_losses(batch, ctx)

    method.losses = losses
    method.on_epoch_end = lambda ctx: seen.append(("end", ctx.seed, ctx.epoch, ctx.epochs, ctx.step,
                                                   id(ctx.generator)))
    feats = torch.randn(1, 6, tiny.embed_dim)
    batches = FeatureBatches(feats, torch.arange(6) % 3, batch_size=2, seed=7)
    Trainer(method, batches, OptimConfig(epochs=2, batch_size=2, lr=0.01, warmup_epochs=0),
            torch.device("cpu"), seed=7).fit()
    assert [s[:5] for s in seen] == [
        ("step", 7, 0, 2, 0), ("step", 7, 0, 2, 1), ("step", 7, 0, 2, 2), ("end", 7, 0, 2, 0),
        ("step", 7, 1, 2, 0), ("step", 7, 1, 2, 1), ("step", 7, 1, 2, 2), ("end", 7, 1, 2, 0),
    ]
    assert len({s[5] for s in seen[:4]}) == 1 and len({s[5] for s in seen[4:]}) == 1


@pytest.mark.parametrize("name,retired", [("dvpt", "epochs_done"), ("promptsrc", "gpa.epochs_done")])
def test_checkpoints_and_prompt_files_with_a_retired_counter_still_load(name, retired, tiny, tmp_path):
    """Older versions saved the epoch counters the context replaced; their files still load."""
    from dvpt.config.loader import from_dict, method_preset

    cls = get_method(name)
    options = from_dict(cls.Options, method_preset(name).get("options", {}), "options")
    torch.manual_seed(0)
    method = cls(tiny, ["red", "green", "blue"], ["a photo of a {}."], options)
    assert retired in cls.retired_keys and retired not in method.state_dict()
    with torch.no_grad():
        for p in method.parameters():
            p.add_(0.01 * torch.randn_like(p))
    old = dict(method.state_dict()) | {retired: torch.tensor(2)}
    path = tmp_path / "old.safetensors"
    old_module = torch.nn.Module()
    old_module.state_dict = lambda: old  # type: ignore[method-assign]
    save_learnable(old_module, path)
    torch.manual_seed(1)
    fresh = cls(tiny, ["red", "green", "blue"], ["a photo of a {}."], options)
    load_learnable(fresh, path)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in method.state_dict().items())
    torch.manual_seed(1)
    exported = cls(tiny, ["red", "green", "blue"], ["a photo of a {}."], options)
    load_state(exported, old, path)
    assert all(torch.equal(exported.state_dict()[k], v) for k, v in method.state_dict().items())
