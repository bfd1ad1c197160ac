"""Zero-shot and CoOp end to end on the shared engine."""
from __future__ import annotations

import math
import shutil

import pytest
import torch
import torch.nn.functional as F

from dvpt.config import build_config
from dvpt.config.schema import OptimConfig
from dvpt.engine.runner import run_training
from dvpt.engine.trainer import learning_rate
from dvpt.methods import Batch, get_method


def test_zeroshot_logits_equal_by_hand(tiny):
    names = ["red", "green", "blue"]
    cls = get_method("zeroshot")
    method = cls(tiny, names, ["a photo of a {}.", "a {} square."], cls.Options())
    images = torch.randn(4, 3, tiny.image_size, tiny.image_size)
    logits = method.logits(Batch(labels=torch.zeros(4, dtype=torch.long), images=images))
    img = F.normalize(tiny.encode_image(images), dim=-1)
    txt = F.normalize(tiny.encode_text([f"a photo of a {n}." for n in names]), dim=-1)
    torch.testing.assert_close(logits, tiny.logit_scale * img @ txt.t(), rtol=0, atol=1e-5)
    assert sum(p.numel() for p in method.parameters()) == 0


def test_learning_rate_schedule_matches_coop():
    cfg = OptimConfig(lr=0.002, epochs=10, warmup_epochs=1, warmup_lr=1e-5)
    assert learning_rate(cfg, 0) == 1e-5
    assert learning_rate(cfg, 1) == pytest.approx(0.002)
    assert learning_rate(cfg, 6) == pytest.approx(0.001 * (1 + math.cos(math.pi * 5 / 10)))


def _coop_cfg(root, epochs=6, protocol="all", seed=1, **options):
    return build_config(
        method="coop",
        flags={"backbone": "tiny-random", "protocol": protocol, "seed": seed, "cache": {"views": 2},
               "data": {"dataset": "folder", "root": str(root), "shots": 8}, "options": options,
               "optim": {"epochs": epochs, "batch_size": 8, "lr": 0.02, "warmup_epochs": 1}},
    )


def test_coop_learns_and_leaves_backbone_untouched(colours_root, tiny, tmp_path):
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    # A random-weight text tower gives class names no meaning, so CoOp's class-specific
    # context (its CSC variant) is what can fit this task; shared context is tested elsewhere.
    metrics = run_training(_coop_cfg(colours_root, class_specific=True), tmp_path / "run")
    history = metrics["history"]
    chance = 100 / 6
    assert history[-1]["loss"] < history[0]["loss"] - 0.5
    assert history[-1]["acc"] > chance + 50
    assert metrics["accuracy"] > chance + 50
    after = tiny.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    for name in ("config.yaml", "env.json", "metrics.json", "log.txt", "checkpoint/learnable.safetensors"):
        assert (tmp_path / "run" / name).is_file(), name


def test_checkpoint_round_trip_reproduces_logits(colours_root, tiny, tmp_path):
    from dvpt.engine.checkpoint import load_learnable, save_learnable

    cls = get_method("coop")
    method = cls(tiny, ["red", "green"], ["a photo of a {}."], cls.Options())
    with torch.no_grad():
        method.prompt_learner.ctx.add_(torch.randn_like(method.prompt_learner.ctx))
    save_learnable(method, tmp_path / "m.safetensors", {"note": "x"})
    fresh = cls(tiny, ["red", "green"], ["a photo of a {}."], cls.Options())
    meta = load_learnable(fresh, tmp_path / "m.safetensors")
    assert meta == {"note": "x"}
    feats = torch.randn(5, tiny.embed_dim)
    batch = Batch(labels=torch.zeros(5, dtype=torch.long), features=feats)
    assert torch.equal(method.logits(batch), fresh.logits(batch))


def test_killed_run_resumes_to_the_same_result(colours_root, tmp_path):
    reference = run_training(_coop_cfg(colours_root, epochs=4), tmp_path / "straight")

    class Killed(Exception):
        pass

    def kill_after_two(epoch: int) -> None:
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        run_training(_coop_cfg(colours_root, epochs=4), tmp_path / "killed", callbacks=[kill_after_two])
    assert not (tmp_path / "killed" / "metrics.json").exists()
    from dvpt.engine.checkpoint import load_trainer_state

    assert not (tmp_path / "killed" / "checkpoint" / "trainer_state.pt").exists()  # one file, no pickle
    assert load_trainer_state(tmp_path / "killed" / "checkpoint")["epoch"] == 2
    resumed = run_training(_coop_cfg(colours_root, epochs=4), tmp_path / "killed")
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3, 4]
    assert resumed["accuracy"] == reference["accuracy"]
    assert resumed["history"][-1]["loss"] == pytest.approx(reference["history"][-1]["loss"], rel=1e-6)
    from safetensors.torch import load_file

    a = load_file(tmp_path / "straight" / "checkpoint" / "learnable.safetensors")
    b = load_file(tmp_path / "killed" / "checkpoint" / "learnable.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_failed_checkpoint_write_keeps_the_previous_epoch(colours_root, tmp_path, monkeypatch):
    """A fault while writing epoch 3's checkpoint leaves epoch 2's whole; the resumed run matches."""
    from dvpt.engine import checkpoint as ckpt_mod
    from dvpt.engine.checkpoint import load_trainer_state

    reference = run_training(_coop_cfg(colours_root, epochs=4), tmp_path / "straight")
    real_save_file = ckpt_mod.save_file
    calls = {"n": 0}

    def failing_save_file(tensors, filename, metadata=None):
        calls["n"] += 1
        if calls["n"] == 3:
            with open(filename, "wb") as fh:  # half a file, then the disk fills
                fh.write(b"\x00" * 10)
            raise OSError(28, "No space left on device")
        real_save_file(tensors, filename, metadata=metadata)

    monkeypatch.setattr(ckpt_mod, "save_file", failing_save_file)
    with pytest.raises(OSError):
        run_training(_coop_cfg(colours_root, epochs=4), tmp_path / "full")
    monkeypatch.setattr(ckpt_mod, "save_file", real_save_file)
    assert load_trainer_state(tmp_path / "full" / "checkpoint")["epoch"] == 2
    assert not list((tmp_path / "full" / "checkpoint").glob(".*.tmp"))
    resumed = run_training(_coop_cfg(colours_root, epochs=4), tmp_path / "full")
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3, 4]
    assert resumed["accuracy"] == reference["accuracy"]
    from safetensors.torch import load_file

    a = load_file(tmp_path / "straight" / "checkpoint" / "learnable.safetensors")
    b = load_file(tmp_path / "full" / "checkpoint" / "learnable.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_pickled_trainer_state_is_refused_never_loaded(colours_root, tmp_path):
    """A planted pickle payload in the old trainer_state.pt name never runs; resume says why."""
    import pickle

    from dvpt.engine.checkpoint import load_trainer_state
    from dvpt.errors import DvptError

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    class Killed(Exception):
        pass

    def kill_after_one(epoch: int) -> None:
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        run_training(_coop_cfg(colours_root, epochs=2), tmp_path / "run", callbacks=[kill_after_one])
    ckpt = tmp_path / "run" / "checkpoint"
    (ckpt / "trainer_state.pt").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(DvptError, match="trainer_state.pt is a pickled trainer state"):
        load_trainer_state(ckpt)
    with pytest.raises(DvptError, match="never loaded"):
        run_training(_coop_cfg(colours_root, epochs=2), tmp_path / "run")
    assert not marker.exists()


def test_flipped_checkpoint_bytes_are_caught(colours_root, tmp_path):
    from dvpt.engine.checkpoint import load_trainer_state
    from dvpt.errors import DvptError

    run_training(_coop_cfg(colours_root, epochs=1), tmp_path / "run")
    path = tmp_path / "run" / "checkpoint" / "learnable.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # last bytes are tensor data, after the JSON header
    path.write_bytes(bytes(data))
    with pytest.raises(DvptError, match="do not match the stored digest"):
        load_trainer_state(tmp_path / "run" / "checkpoint")


def test_finished_folder_refuses_another_config(colours_root, tmp_path):
    from dvpt.errors import DvptError

    first = run_training(_coop_cfg(colours_root, epochs=1), tmp_path / "run")
    before = (tmp_path / "run" / "metrics.json").read_bytes()
    assert run_training(_coop_cfg(colours_root, epochs=1), tmp_path / "run")["accuracy"] == first["accuracy"]
    with pytest.raises(DvptError, match="holds a finished run with another config"):
        run_training(_coop_cfg(colours_root, epochs=2), tmp_path / "run")
    assert (tmp_path / "run" / "metrics.json").read_bytes() == before


def test_failed_run_keeps_the_users_empty_folder(colours_root, tmp_path, monkeypatch):
    """A run failing before its first checkpoint removes only a folder it created itself."""
    from dvpt.engine import trainer as trainer_mod

    class Boom(Exception):
        pass

    def fail(*args, **kwargs):
        raise Boom

    monkeypatch.setattr(trainer_mod.Trainer, "_run_epoch", fail)
    mine = tmp_path / "mine"
    mine.mkdir()
    with pytest.raises(Boom):
        run_training(_coop_cfg(colours_root, epochs=1), mine)
    assert mine.is_dir()
    with pytest.raises(Boom):
        run_training(_coop_cfg(colours_root, epochs=1), tmp_path / "made")
    assert not (tmp_path / "made").exists()


def test_non_finite_loss_stops_training_naming_the_epoch(colours_root, tmp_path, monkeypatch):
    from dvpt.engine import trainer as trainer_mod
    from dvpt.errors import DvptError

    real = trainer_mod.Trainer._run_epoch

    def diverge(self, ctx, optimizer, scaler):  # the engine hands _run_epoch a StepContext
        out = real(self, ctx, optimizer, scaler)
        return out | {"loss": float("nan")} if ctx.epoch == 1 else out

    monkeypatch.setattr(trainer_mod.Trainer, "_run_epoch", diverge)
    with pytest.raises(DvptError, match="diverged in epoch 2: loss is not finite; lower the learning rate"):
        run_training(_coop_cfg(colours_root, epochs=3), tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_base2novel_writes_b_n_hm(colours_root, tmp_path):
    m = run_training(_coop_cfg(colours_root, epochs=2, protocol="base2novel"), tmp_path / "b2n")
    assert set(m["evaluations"][0]["classes"]) == {"blue", "cyan", "green"}  # first half of sorted labels
    assert set(m["evaluations"][1]["classes"]) == {"purple", "red", "yellow"}
    assert m["hm"] == pytest.approx(2 * m["base"] * m["novel"] / (m["base"] + m["novel"]))
    assert 0 <= m["base"] <= 100 and 0 <= m["novel"] <= 100


def test_same_seed_same_result_other_seed_differs(colours_root, tmp_path):
    a = run_training(_coop_cfg(colours_root, epochs=2), tmp_path / "a")
    b = run_training(_coop_cfg(colours_root, epochs=2), tmp_path / "b")
    c = run_training(_coop_cfg(colours_root, epochs=2, seed=2), tmp_path / "c")
    assert a["history"] == b["history"]
    assert a["history"] != c["history"]
