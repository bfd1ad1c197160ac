"""``kill -9`` of a real ``dvpt train`` process, then a resume: the final prompt is bit-identical.

The training process kills itself with SIGKILL at a chosen point, so the test does not
depend on timing: right after epoch N's checkpoint is in place, after its temporary file is
complete but before the rename, or in the middle of writing it (half a temporary file). Resuming with the same command must end with exactly
the tensors of an uninterrupted run, take over the dead process's stale lock, and leave no
temporary file behind.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import make_colour_folder

ARGS = ["train", "--method", "coop", "--backbone", "tiny-random", "--dataset", "folder", "--protocol", "all",
        "--shots", "4", "--epochs", "4", "--batch-size", "4", "--seed", "3", "--threads", "1"]
# --threads 1: the killed process, the resumed run and the reference compute alike (matmul
# blocking, hence the last bits, can depend on the thread count)

#: runs ``dvpt train`` with the checkpoint writing of epoch N wrapped to SIGKILL the process
KILLER = """
import os, signal, sys
from dvpt.engine import checkpoint, trainer
from dvpt.cli import main

mode, at = sys.argv[1], int(sys.argv[2])
real_save_file, real_save, calls = checkpoint.save_file, trainer.Trainer._save, [0]

def save_file(tensors, filename, metadata=None):  # writes the temporary file, before the rename
    calls[0] += 1
    if calls[0] == at and mode == "mid-write":
        with open(filename, "wb") as fh:
            fh.write(b"\\x00" * 64)  # half a file
            fh.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    real_save_file(tensors, filename, metadata=metadata)
    if calls[0] == at and mode == "before-rename":
        os.kill(os.getpid(), signal.SIGKILL)

def save(self, optimizer, epoch, history, finalized):
    real_save(self, optimizer, epoch, history, finalized)
    if epoch == at and mode == "after-save":
        os.kill(os.getpid(), signal.SIGKILL)

checkpoint.save_file = save_file
trainer.Trainer._save = save
sys.exit(main(sys.argv[3:]))
"""


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.parametrize("mode,at", [("after-save", 2), ("before-rename", 2), ("mid-write", 3)])
def test_resume_after_kill_9_is_bit_identical(mode: str, at: int, tmp_path: Path) -> None:
    from dvpt.cli import main
    from dvpt.engine.checkpoint import load_trainer_state

    data = make_colour_folder(tmp_path / "data", per_class=6, size=24)
    argv = [*ARGS, "--root", str(data)]
    assert main([*argv, "-o", str(tmp_path / "straight")]) == 0

    run = tmp_path / "killed"
    env = os.environ | {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run([sys.executable, "-c", KILLER, mode, str(at), *argv, "-o", str(run)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not (run / "metrics.json").exists()
    assert (run / ".dvpt.lock").exists()  # the dead process's lock, left behind
    saved = at if mode == "after-save" else at - 1
    assert load_trainer_state(run / "checkpoint")["epoch"] == saved

    assert main([*argv, "-o", str(run)]) == 0  # the same command resumes
    a = load_file(tmp_path / "straight" / "checkpoint" / "learnable.safetensors")
    b = load_file(run / "checkpoint" / "learnable.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (run / ".dvpt.lock").exists()
    assert not [p.name for p in (run / "checkpoint").iterdir() if p.name.endswith(".tmp")]
