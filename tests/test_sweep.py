"""``dvpt sweep``: spec checks, the grid, retries, kill-and-resume, and the same sweep on Ray.

The runs are real (``tiny-random`` backbone, a folder of coloured squares); a sweep of four
of them is started as a process group, killed once the first run has finished, and started
again: only the runs without metrics run the second time.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from PIL import Image

from dvpt.errors import ConfigError
from dvpt.sweep import load_spec, run_sweep, spec_from_dict
from dvpt.sweep.worker import USER_ERROR, Outcome, Task, run_in_process

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}


@pytest.fixture(scope="module")
def squares(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DIR/<colour>/<i>.png: 4 classes x 10 images (the folder reader splits 50/20/30)."""
    root = tmp_path_factory.mktemp("squares")
    for name, rgb in COLOURS.items():
        (root / name).mkdir()
        for i in range(10):
            Image.new("RGB", (8, 8), tuple(min(255, max(0, c + 4 * i - 20)) for c in rgb)).save(root / name / f"{i}.png")
    return root


def tiny_spec(root: Path, **extra) -> dict:
    spec = {
        "name": "tiny",
        "methods": ["zeroshot", "coop"],
        "datasets": ["folder"],
        "seeds": [1, 2],
        "shots": 2,
        "protocol": "base2novel",
        "overrides": {"backbone": "tiny-random", "data": {"root": str(root)}, "eval_batch_size": 16,
                      "optim": {"epochs": 2, "batch_size": 4}},
    }
    spec.update(extra)
    return spec


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec))
    return path


RUNS = ["base2novel/folder/zeroshot/2shot-seed1", "base2novel/folder/zeroshot/2shot-seed2",
        "base2novel/folder/coop/2shot-seed1", "base2novel/folder/coop/2shot-seed2"]


# ---- the spec ----------------------------------------------------------------------------
def test_spec_grid_names_and_layers(tmp_path: Path) -> None:
    spec = spec_from_dict(tiny_spec(tmp_path, method_overrides={"coop": {"optim": {"epochs": 7}}},
                                    dataset_overrides={"folder": {"optim": {"epochs": 5, "lr": 0.01}}}))
    jobs = spec.jobs(["optim.lr=0.5", "optim.batch_size=2"])
    assert [j.name for j in jobs] == RUNS
    coop, zs = jobs[2].config, jobs[0].config
    # overrides < dataset_overrides < method_overrides < --set < grid values
    assert coop["optim"] == {"epochs": 7, "batch_size": 2, "lr": 0.5}
    assert zs["optim"] == {"epochs": 5, "batch_size": 2, "lr": 0.5}
    assert coop["seed"] == 1 and coop["data"] == {"root": str(tmp_path), "dataset": "folder", "shots": 2}
    domains = spec_from_dict(tiny_spec(tmp_path, domains=["line", "color"], methods="coop", seeds=1)).jobs()
    assert [j.name for j in domains] == ["base2novel/folder.line/coop/2shot-seed1", "base2novel/folder.color/coop/2shot-seed1"]
    assert domains[0].config["data"]["options"] == {"domain": "line"}


def test_rules_apply_per_method_and_dataset_in_order(tmp_path: Path) -> None:
    rules = [{"when": {"method": "coop", "dataset": "folder"}, "set": {"optim": {"epochs": 50, "lr": 0.1}}},
             {"when": {"method": ["coop"], "shots": 2}, "set": {"optim": {"lr": 0.2}}},
             {"when": {"method": "coop", "dataset": "other"}, "set": {"optim": {"epochs": 99}}}]
    spec = spec_from_dict(tiny_spec(tmp_path, method_overrides={"coop": {"optim": {"epochs": 7}}}, rules=rules))
    jobs = spec.jobs(["optim.batch_size=2"])
    coop, zs = jobs[2].config, jobs[0].config
    # the rule beats method_overrides, a later rule beats an earlier one, --set beats both
    assert coop["optim"] == {"epochs": 50, "lr": 0.2, "batch_size": 2}
    assert zs["optim"] == {"epochs": 2, "batch_size": 2}          # the shared overrides only
    assert spec.jobs(["optim.epochs=3"])[2].config["optim"]["epochs"] == 3


def test_paper_base2novel_trains_coop_50_epochs_on_imagenet_only() -> None:
    jobs = load_spec("paper_base2novel").jobs(["data.root=/data"])
    epochs = {(j.method, j.config["data"]["dataset"]): j.config.get("optim", {}).get("epochs") for j in jobs}
    assert epochs[("coop", "imagenet")] == 50
    assert epochs[("coop", "caltech101")] is None          # the preset's published 200
    assert epochs[("cocoop", "imagenet")] is None


@pytest.mark.parametrize("change, message", [
    ({"method": ["coop"]}, "unknown sweep key 'method'"),
    ({"seeds": [1, "two"]}, "'seeds' entries must be int"),
    ({"seeds": [1, 1]}, "lists a value twice"),
    ({"methods": []}, "missing 'methods'"),
    ({"overrides": {"optim": {"lrr": 1}}}, "unknown config key 'optim.lrr'"),
    ({"overrides": {"optim": {"epochs": "ten"}}}, "'optim.epochs' expects int"),
    ({"resources": {"gpus": 1}}, "unknown resources key 'gpus'"),
    ({"method_overrides": {"coop": 3}}, "method_overrides.coop must be a mapping"),
    ({"requires": ["data.options.domain"]}, "needs data.options.domain; pass it with --set"),
    ({"rules": [{"when": {"methd": "coop"}, "set": {}}]}, "rules[0].when: unknown axis 'methd'"),
    ({"rules": [{"when": {"method": "coop"}}]}, "rules[0] must be a mapping with exactly 'when' and 'set'"),
    ({"rules": [{"when": {"shots": "four"}, "set": {}}]}, "'when.shots' entries must be int"),
    ({"rules": [{"when": {"method": "coop"}, "set": {"optim": {"epoch": 5}}}]}, "unknown config key 'optim.epoch'"),
])
def test_spec_errors_name_the_key(tmp_path: Path, change: dict, message: str) -> None:
    path = write_spec(tmp_path / "bad.yaml", tiny_spec(tmp_path, **change))
    with pytest.raises(ConfigError, match="bad.yaml") as err:
        load_spec(path).jobs()
    assert message in str(err.value)


def test_unregistered_method_is_not_a_spec_error(tmp_path: Path) -> None:
    jobs = spec_from_dict(tiny_spec(tmp_path, methods=["coop", "notyet"])).jobs()
    assert [j.method for j in jobs] == ["coop", "coop", "notyet", "notyet"]


def test_shipped_specs_expand() -> None:
    paper = load_spec("paper_base2novel")
    with pytest.raises(ConfigError, match="needs data.root"):
        paper.jobs()
    jobs = paper.jobs(["data.root=/data"])
    assert len(jobs) == 11 * 8 * 3 and {j.config.get("protocol") for j in jobs} == {"base2novel"}
    assert jobs[0].config["backbone"] == "openai/clip-vit-base-patch16" and paper.resources["num_gpus"] == 1
    offline = load_spec("offline_base2novel").jobs()
    assert {j.config["backbone"] for j in offline} == {"micro"} and len({j.method for j in offline}) == 8
    assert {j.config["seed"] for j in offline} == {1, 2, 3}


# ---- one run, and the driver's bookkeeping -----------------------------------------------
def test_unknown_method_fails_with_its_message(tmp_path: Path, squares: Path) -> None:
    (job,) = spec_from_dict(tiny_spec(squares, methods="notyet", seeds=1)).jobs()
    config = write_spec(tmp_path / "run.yaml", job.config)
    outcome = run_in_process(Task(job.name, str(config), str(tmp_path / "run"), str(tmp_path / "run.log")))
    assert (outcome.returncode, outcome.finished, outcome.retryable) == (USER_ERROR, False, False)
    assert outcome.error.startswith("unknown method 'notyet'; known:")
    assert "unknown method 'notyet'" in (tmp_path / "run.log").read_text()
    assert not (tmp_path / "run").exists()


class FakePool:
    """Runs nothing: the first attempt of every run fails (exit 1), ``never`` always fails
    with a user error, the rest succeed on the second attempt by writing metrics.json."""

    backend = "fake"
    capacity = 2

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def submit(self, task: Task) -> Future:
        self.calls.append((task.name, task.attempt))
        future: Future = Future()
        if "never" in task.name:
            future.set_result(Outcome(task.name, USER_ERROR, False, "unknown method 'never'", 0.0))
        elif task.attempt == 1:
            future.set_result(Outcome(task.name, 1, False, "RuntimeError: boom", 0.0))
        else:
            Path(task.output).mkdir(parents=True)
            (Path(task.output) / "metrics.json").write_text(json.dumps({"hm": 50.0}))
            future.set_result(Outcome(task.name, 0, True, None, 0.0))
        return future

    def shutdown(self, interrupt: bool = False) -> None:
        pass


def test_failed_run_is_retried_once_and_user_errors_are_not(tmp_path: Path) -> None:
    spec = spec_from_dict(tiny_spec(tmp_path, methods=["coop", "never"], seeds=1))
    pool = FakePool()
    result = run_sweep(spec, spec.jobs(), tmp_path / "out", pool)
    ok, never = "base2novel/folder/coop/2shot-seed1", "base2novel/folder/never/2shot-seed1"
    assert sorted(pool.calls) == [(ok, 1), (ok, 2), (never, 1)]
    assert result.done == [ok] and list(result.failed) == [never]
    assert result.failed[never]["log"] == str((tmp_path / "out" / "logs" / f"{never}.log").resolve())
    index = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert index["runs"][ok]["status"] == "done" and index["runs"][ok]["attempts"] == 2
    assert index["runs"][ok]["metrics"] == {"hm": 50.0}
    assert index["runs"][never].items() >= {"status": "failed", "attempts": 1, "error": "unknown method 'never'"}.items()
    assert index["counts"] == {"pending": 0, "running": 0, "done": 1, "failed": 1, "interrupted": 0}
    assert yaml.safe_load((tmp_path / "out" / "configs" / f"{ok}.yaml").read_text())["method"] == "coop"


def test_one_sweep_at_a_time_per_folder(tmp_path: Path) -> None:
    """A sweep folder held by another live process is refused naming it, before anything is
    written; once that process is gone its lock is stale and taken over; while a sweep runs, a
    second one on the same folder is refused (the lock names this process)."""
    import socket

    from dvpt.engine.lock import boot_id, process_start
    from dvpt.errors import DvptError

    spec = spec_from_dict(tiny_spec(tmp_path, methods=["coop"], seeds=1))
    out = tmp_path / "out"
    lock = out / ".dvpt.lock"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        out.mkdir()
        lock.write_text(json.dumps({"pid": other.pid, "host": socket.gethostname(), "purpose": "sweep",
                                    "started": process_start(other.pid), "boot": boot_id()}))
        with pytest.raises(DvptError, match=rf"sweep folder {out.resolve()} is in use by process {other.pid} "
                                            rf"\(sweep\); wait for it to finish.*delete {lock.resolve()}"):
            run_sweep(spec, spec.jobs(), out, FakePool())
        assert [p.name for p in out.iterdir()] == [".dvpt.lock"]  # nothing started, no sweep.json
    finally:
        other.kill()
        other.wait()

    refused: list[str] = []

    class SecondSweepInside(FakePool):
        def submit(self, task: Task) -> Future:
            with pytest.raises(DvptError, match=f"in use by process {os.getpid()} .sweep.") as caught:
                run_sweep(spec, spec.jobs(), out, FakePool())
            refused.append(str(caught.value))
            return super().submit(task)

    result = run_sweep(spec, spec.jobs(), out, SecondSweepInside())
    assert result.ok and len(refused) == 2  # both attempts of the run saw the lock held
    assert not lock.exists()


def test_dead_worker_is_reported_and_replaced(tmp_path: Path) -> None:
    from dvpt.sweep import LocalPool
    from dvpt.sweep.worker import WORKER_DIED, WorkerProcess

    task = Task("x", str(tmp_path / "missing.yaml"), str(tmp_path / "run"), str(tmp_path / "x.log"))
    worker = WorkerProcess(threads=1)
    with ThreadPoolExecutor(1) as ex:
        pending = ex.submit(worker.run, task)
        time.sleep(0.3)  # the worker is importing torch for the task: kill it there
        os.kill(worker.process.pid, signal.SIGKILL)
        died = pending.result(timeout=60)
    assert (died.returncode, died.finished, died.retryable) == (WORKER_DIED, False, True)
    assert "worker process died" in died.error and "worker process died" in (tmp_path / "x.log").read_text()

    pool = LocalPool(1)
    try:
        first = pool.submit(task).result(timeout=120)
        assert first.returncode == USER_ERROR and "missing.yaml" in first.error
        old = pool._workers[0]
        os.kill(old.process.pid, signal.SIGKILL)
        old.process.join(10)
        second = pool.submit(task).result(timeout=120)
        assert second.returncode == USER_ERROR and pool._workers[0] is not old
    finally:
        pool.shutdown()


# ---- real sweeps -------------------------------------------------------------------------
def sweep_cmd(spec: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dvpt.cli", "sweep", str(spec), "-o", str(out), "--workers", "2", *extra]


def env() -> dict[str, str]:
    return dict(os.environ, DVPT_NO_PROGRESS="1")


def finished(out: Path) -> dict[str, float]:
    return {name: (out / name / "metrics.json").stat().st_mtime_ns for name in RUNS if (out / name / "metrics.json").is_file()}


def test_local_sweep_killed_and_resumed(tmp_path: Path, squares: Path) -> None:
    # coop trains long enough that it is still running when the first zero-shot run is done
    spec = write_spec(tmp_path / "tiny.yaml", tiny_spec(squares, method_overrides={"coop": {"optim": {"epochs": 400}}}))
    out = tmp_path / "out"
    proc = subprocess.Popen(sweep_cmd(spec, out), env=env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while not finished(out) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = finished(out)
    assert 1 <= len(before) < len(RUNS), f"expected a partial sweep, got {sorted(before)}"
    assert json.loads((out / "sweep.json").read_text())["counts"]["running"] >= 1

    again = subprocess.run(sweep_cmd(spec, out), env=env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    after = finished(out)
    assert sorted(after) == sorted(RUNS)
    assert {name: after[name] for name in before} == before  # finished runs were not touched
    index = json.loads((out / "sweep.json").read_text())
    skipped = sorted(n for n, r in index["runs"].items() if r.get("skipped"))
    assert skipped == sorted(before)
    assert index["counts"]["done"] == 4 and index["counts"]["failed"] == 0
    assert f"{len(before)} finished before, {4 - len(before)} done now, 0 failed" in again.stdout
    for name in before:  # each finished run was attempted once, in the first sweep
        assert (out / "logs" / f"{name}.log").read_text().count("attempt 1") == 1
    metrics = json.loads((out / RUNS[2] / "metrics.json").read_text())
    assert metrics["method"] == "coop" and 0 <= metrics["hm"] <= 100


def test_sweep_on_local_ray(tmp_path: Path, squares: Path) -> None:
    pytest.importorskip("ray", reason='Ray is not installed (pip install "dvpt[ray]")')
    spec = write_spec(tmp_path / "tiny.yaml", tiny_spec(squares))
    out = tmp_path / "out"
    done = subprocess.run(sweep_cmd(spec, out, "--ray", "local"), env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(finished(out)) == sorted(RUNS)
    index = json.loads((out / "sweep.json").read_text())
    assert index["backend"] == "ray" and index["counts"]["done"] == 4
    zs = [json.loads((out / n / "metrics.json").read_text()) for n in RUNS[:2]]
    assert [m["seed"] for m in zs] == [1, 2] and all(m["method"] == "zeroshot" for m in zs)
