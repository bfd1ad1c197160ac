"""Careless and hostile input against the ``dvpt`` command, one table row per case.

Every row runs the real command line (``dvpt.cli.main``, in-process for speed) on a small
colour-square dataset, a trained run folder and its exported prompt, after ``prepare`` has
damaged one of them. Each row asserts what docs/reliability.md promises:

* a non-zero exit with exactly one ``dvpt CMD: error:`` line that names the file or value,
* no traceback (an uncaught exception fails the row),
* every file the user owned (dataset, run folder, prompt, configs) byte-identical afterwards,
* no planted pickle payload executed (the payload would create a marker file).

Rows the package skips by design (an unreadable image in ``predict``) assert the skip is named.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import torch
from PIL import Image

from conftest import capture_evaluations, make_colour_folder

CLASSES = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 230, 20)}
TRAIN = ["--method", "coop", "--backbone", "tiny-random", "--dataset", "folder", "--shots", "2",
         "--epochs", "1", "--batch-size", "4", "--protocol", "all"]


# --------------------------------------------------------------------------- shared material

@dataclass
class World:
    """What a row may damage: copies made for this row only."""

    tmp: Path
    data: Path  # the dataset folder
    run: Path  # a finished run folder
    prompt: Path  # its exported prompt file
    image: Path  # one readable image
    marker: Path  # created if a planted payload ever runs
    owned: list[Path] = field(default_factory=list)  # what must stay byte-identical

    def train(self, *extra: str) -> list[str]:
        return ["train", *TRAIN, "--root", str(self.data), *extra]


class _Payload:
    """Unpickling this creates ``marker``: proof that a file was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def payload(marker: Path) -> bytes:
    return pickle.dumps(_Payload(marker))


def torch_payload(marker: Path) -> bytes:
    """A payload in torch.save's zip layout (what a ``.pt`` file looks like)."""
    import io

    buf = io.BytesIO()
    torch.save({"epoch": 1, "x": _Payload(marker)}, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A dataset, a 1-epoch CoOp run on it and its exported prompt (built once)."""
    from dvpt.cli import main

    base = tmp_path_factory.mktemp("hostile")
    data = make_colour_folder(base / "data", CLASSES, per_class=6, size=24)
    run = base / "run"
    threads = torch.get_num_threads()
    try:
        assert main(["train", *TRAIN, "--root", str(data), "-o", str(run)]) == 0
        assert main(["export", str(run), "-o", str(base / "p.dvpt")]) == 0
    finally:
        torch.set_num_threads(threads)
    shutil.rmtree(data / "split_fewshot_dvpt", ignore_errors=True)
    return {"data": data, "run": run, "prompt": base / "p.dvpt"}


@pytest.fixture
def world(material: dict[str, Path], tmp_path: Path) -> World:
    data = tmp_path / "data"
    shutil.copytree(material["data"], data)
    run = tmp_path / "run"
    shutil.copytree(material["run"], run)
    prompt = tmp_path / "p.dvpt"
    shutil.copy(material["prompt"], prompt)
    return World(tmp_path, data, run, prompt, data / "red" / "000.png", tmp_path / "PWNED", [data, run, prompt])


@pytest.fixture(autouse=True)
def _restore_global_state():
    """Commands set torch's thread count; no row may leak it into other test files."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def snapshot(paths: list[Path]) -> dict[str, str]:
    """sha256 of every file under ``paths`` (a vanished or new file changes the snapshot).

    The few-shot cache is the one thing dvpt documents writing into a dataset folder; it is
    the package's own file, so it is left out.
    """
    out: dict[str, str] = {}
    for root in paths:
        if root.is_file():
            out[str(root)] = hashlib.sha256(root.read_bytes()).hexdigest()
        elif root.is_dir():
            for p in sorted(root.rglob("*")):
                if p.is_file() and not p.is_symlink() and "split_fewshot_dvpt" not in p.parts:
                    out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """``dvpt ARGV`` in-process: (exit code, stdout, stderr); an uncaught exception fails the row."""
    from dvpt.cli import main

    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors: exit 2 with "dvpt CMD: error: ..."
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if ": error:" in line]
    assert len(lines) == 1, f"expected one error line, got:\n{err}"
    assert "Traceback" not in err, err
    return lines[0]


# --------------------------------------------------------------------------- the table

@dataclass
class Case:
    id: str
    prepare: Callable[[World], list[str]]  # damages the world, returns the argv
    needles: tuple[str, ...]  # all must be in the error line; "{tmp}" is replaced by the row's folder
    marks: tuple = ()


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))


def _config_rows() -> list[Case]:
    def with_config(text: str | bytes):
        return lambda w: w.train("--config", str(_write(w.tmp / "cfg.yaml", text)), "-o", str(w.tmp / "out"))

    def with_flags(*flags: str):
        return lambda w: w.train(*flags, "-o", str(w.tmp / "out"))

    return [
        Case("config-billion-laughs", with_config(LAUGHS), ("cfg.yaml", "aliases")),
        Case("config-binary", with_config(bytes(range(256)) * 4), ("cfg.yaml", "binary")),
        Case("config-python-tag", lambda w: w.train("--config", str(_write(
            w.tmp / "cfg.yaml", f"seed: !!python/object/apply:os.system ['touch {w.marker}']\n")),
            "-o", str(w.tmp / "out")), ("cfg.yaml",)),
        Case("config-missing-file", lambda w: w.train("--config", str(w.tmp / "absent.yaml")), ("absent.yaml",)),
        Case("config-top-level-list", with_config("- a\n- b\n"), ("cfg.yaml", "mapping")),
        Case("config-unknown-key", with_flags("--set", "optim.learning_rate=0.1"), ("learning_rate",)),
        Case("config-override-without-equals", with_flags("--set", "optim.lr"), ("optim.lr",)),
        Case("config-unknown-method", lambda w: ["train", "--method", "nosuch", "--dataset", "folder", "--root",
                                                 str(w.data), "-o", str(w.tmp / "out")], ("nosuch",)),
        Case("config-folder-without-root", lambda w: ["train", *TRAIN, "-o", str(w.tmp / "out")], ("root",)),
        Case("config-shots-not-a-number", with_flags("--shots", "four"), ("four",)),
        Case("config-lr-nan", with_flags("--lr", "nan"), ("lr", "nan")),
        Case("config-lr-negative", with_flags("--lr", "-0.1"), ("lr", "-0.1")),
        Case("config-epochs-negative", with_flags("--epochs", "-3"), ("epochs", "-3")),
        Case("config-shots-zero", with_flags("--shots", "0"), ("shots", "0")),
        Case("config-shots-negative", with_flags("--shots", "-2"), ("shots", "-2")),
        Case("config-batch-zero", with_flags("--batch-size", "0"), ("batch_size", "0")),
        Case("config-batch-negative", with_flags("--batch-size", "-4"), ("batch_size", "-4")),
        Case("config-seed-negative", with_flags("--seed", "-1"), ("seed", "-1")),
        Case("config-device-tpu", with_flags("--device", "tpu"), ("tpu",)),
        Case("config-class-specific-base2novel", with_flags("--protocol", "base2novel", "--set",
                                                            "options.class_specific=true"),
             ("class_specific", "base2novel")),
    ]


def _run_folder_rows() -> list[Case]:
    def other_config(w: World) -> list[str]:
        return w.train("--seed", "7", "-o", str(w.run))

    def planted_trainer_state(w: World) -> list[str]:
        _write(w.run / "checkpoint" / "trainer_state.pt", torch_payload(w.marker))
        return ["export", str(w.run), "-o", str(w.tmp / "x.dvpt")]

    def planted_checkpoint(w: World) -> list[str]:
        _write(w.run / "checkpoint" / "learnable.safetensors", payload(w.marker))
        return ["export", str(w.run), "-o", str(w.tmp / "x.dvpt")]

    def planted_config(w: World) -> list[str]:
        _write(w.run / "config.yaml", f"seed: !!python/object/apply:os.system ['touch {w.marker}']\n")
        return ["export", str(w.run), "-o", str(w.tmp / "x.dvpt")]

    def pickled_config(w: World) -> list[str]:
        _write(w.run / "config.yaml", payload(w.marker))
        return ["eval", str(w.run)]

    def truncated_checkpoint(w: World) -> list[str]:
        ckpt = w.run / "checkpoint" / "learnable.safetensors"
        ckpt.write_bytes(ckpt.read_bytes()[:100])
        return ["export", str(w.run), "-o", str(w.tmp / "x.dvpt")]

    def empty_trainer_state(w: World) -> list[str]:
        _write(w.run / "checkpoint" / "trainer_state.pt", b"")
        return ["export", str(w.run), "-o", str(w.tmp / "x.dvpt")]

    def export_over_file(w: World) -> list[str]:
        w.owned.append(_write(w.tmp / "mine.dvpt", b"the user's file"))
        return ["export", str(w.run), "-o", str(w.tmp / "mine.dvpt")]

    def output_is_a_file(w: World) -> list[str]:
        w.owned.append(_write(w.tmp / "notes.txt", b"the user's notes"))
        return w.train("-o", str(w.tmp / "notes.txt"))

    def output_inside_a_file(w: World) -> list[str]:
        w.owned.append(_write(w.tmp / "notes.txt", b"the user's notes"))
        return w.train("-o", str(w.tmp / "notes.txt" / "run"))

    def export_inside_a_file(w: World) -> list[str]:
        w.owned.append(_write(w.tmp / "notes.txt", b"the user's notes"))
        return ["export", str(w.run), "-o", str(w.tmp / "notes.txt" / "x.dvpt")]

    def report_into_a_file(w: World) -> list[str]:
        w.owned.append(_write(w.tmp / "notes.txt", b"the user's notes"))
        return ["report", str(w.run), "-o", str(w.tmp / "notes.txt"), "--no-plots"]

    def not_a_run(w: World) -> list[str]:
        return ["export", str(w.data), "-o", str(w.tmp / "x.dvpt")]

    def symlink_loop(w: World) -> list[str]:
        (w.tmp / "loop").symlink_to(w.tmp / "loop")
        return ["export", str(w.tmp / "loop"), "-o", str(w.tmp / "x.dvpt")]

    def locked_by_live_process(w: World) -> list[str]:
        out = w.tmp / "busy"
        w.owned.append(_write(out / ".dvpt.lock", json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                               "purpose": "train"})))
        return w.train("-o", str(out))

    def eval_while_training(w: World) -> list[str]:
        w.run.joinpath(".dvpt.lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
        return ["eval", str(w.run)]

    return [
        Case("run-locked-by-a-live-process", locked_by_live_process, ("busy", "in use by process", ".dvpt.lock")),
        Case("run-eval-while-training", eval_while_training, ("in use by process",)),
        Case("run-finished-other-config", other_config, ("another config",)),
        Case("run-planted-trainer-state", planted_trainer_state, ("trainer_state.pt",)),
        Case("run-planted-checkpoint", planted_checkpoint, ("learnable.safetensors",)),
        Case("run-config-python-tag", planted_config, ("config.yaml",)),
        Case("run-config-pickled", pickled_config, ("config.yaml",)),
        Case("run-truncated-checkpoint", truncated_checkpoint, ("learnable.safetensors",)),
        Case("run-empty-trainer-state", empty_trainer_state, ("trainer_state.pt",)),
        Case("export-over-existing-file", export_over_file, ("mine.dvpt", "--force")),
        Case("output-is-a-file", output_is_a_file, ("notes.txt",)),
        Case("output-inside-a-file", output_inside_a_file, ("notes.txt",)),
        Case("export-not-a-run-folder", not_a_run, ("config.yaml",)),
        Case("export-inside-a-file", export_inside_a_file, ("notes.txt", "is a file")),
        Case("output-report-into-a-file", report_into_a_file, ("notes.txt", "is a file")),
        Case("export-symlink-loop", symlink_loop, ("loop",)),
    ]


def _rewrite_prompt_meta(path: Path, **changes) -> None:
    """Change the JSON header of a prompt file, keeping its tensors (and their digest)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as handle:
        header = dict(handle.metadata())
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    header["dvpt"] = json.dumps(json.loads(header["dvpt"]) | changes)
    save_file(tensors, str(path), metadata=header)


def _prompt_rows() -> list[Case]:
    def planted_prompt(w: World) -> list[str]:
        _write(w.prompt, payload(w.marker))
        return ["predict", "--prompt", str(w.prompt), str(w.image)]

    def torch_prompt(w: World) -> list[str]:
        _write(w.prompt, torch_payload(w.marker))
        return ["predict", "--prompt", str(w.prompt), str(w.image)]

    def truncated_prompt(w: World) -> list[str]:
        w.prompt.write_bytes(w.prompt.read_bytes()[:200])
        return ["predict", "--prompt", str(w.prompt), str(w.image)]

    def duplicate_classes(w: World) -> list[str]:
        return ["predict", "--prompt", str(w.prompt), "--classes", "cat,dog,cat", str(w.image)]

    def repeated_classes_file(w: World) -> list[str]:
        w.owned.append(_write(w.tmp / "classes.txt", "crane\nheron\ncrane\n"))
        return ["predict", "--prompt", str(w.prompt), "--classes-file", str(w.tmp / "classes.txt"), str(w.image)]

    def empty_classes_file(w: World) -> list[str]:
        w.owned.append(_write(w.tmp / "classes.txt", "\n\n"))
        return ["predict", "--prompt", str(w.prompt), "--classes-file", str(w.tmp / "classes.txt"), str(w.image)]

    def no_images(w: World) -> list[str]:
        (w.tmp / "empty").mkdir()
        return ["predict", "--prompt", str(w.prompt), str(w.tmp / "empty")]

    def only_broken_images(w: World) -> list[str]:
        _write(w.tmp / "imgs" / "broken.png", b"not a png")
        return ["predict", "--prompt", str(w.prompt), str(w.tmp / "imgs")]

    def flipped_bytes(w: World) -> list[str]:
        data = bytearray(w.prompt.read_bytes())
        data[-3] ^= 0xFF  # the last bytes are tensor data, after the JSON header
        w.prompt.write_bytes(bytes(data))
        return ["predict", "--prompt", str(w.prompt), str(w.image)]

    def empty_class_list(w: World) -> list[str]:
        _rewrite_prompt_meta(w.prompt, classnames=[])
        return ["predict", "--prompt", str(w.prompt), str(w.image)]

    def top_k_zero(w: World) -> list[str]:
        return ["predict", "--prompt", str(w.prompt), "--top-k", "0", str(w.image)]

    return [
        Case("prompt-planted-pickle", planted_prompt, ("p.dvpt",)),
        Case("prompt-planted-torch-zip", torch_prompt, ("p.dvpt",)),
        Case("prompt-truncated", truncated_prompt, ("p.dvpt",)),
        Case("prompt-flipped-tensor-bytes", flipped_bytes, ("p.dvpt", "digest")),
        Case("prompt-empty-class-list", empty_class_list, ("p.dvpt", "class list is empty")),
        Case("predict-duplicate-classes", duplicate_classes, ("cat",)),
        Case("predict-repeated-name-in-classes-file", repeated_classes_file, ("repeated: crane", "positions 1, 3")),
        Case("predict-empty-classes-file", empty_classes_file, ("classes.txt",)),
        Case("predict-no-images", no_images, ("empty",)),
        Case("predict-only-unreadable-images", only_broken_images, ("could be read",)),
        Case("predict-top-k-zero", top_k_zero, ("--top-k",)),
    ]


def _bomb(path: Path) -> Path:
    """A small PNG declaring 20000x20000 pixels (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")
    return _write(path, png)


def _webp_canvas(path: Path, width: int = 10000, height: int = 10000) -> Path:
    """An animated WebP of ~100 bytes: one 8x8 frame on a declared ``width`` x ``height`` canvas
    (decoding it allocates the whole canvas: 400 MB of RGBA at 10000x10000)."""
    import io
    import struct

    def chunk(fourcc: bytes, body: bytes) -> bytes:
        return fourcc + struct.pack("<I", len(body)) + body + (b"\0" if len(body) % 2 else b"")

    def u24(n: int) -> bytes:
        return n.to_bytes(3, "little")

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, "WEBP", lossless=True)
    frame = buf.getvalue()[12:]  # its VP8L chunk
    body = (b"WEBP" + chunk(b"VP8X", bytes([0x02, 0, 0, 0]) + u24(width - 1) + u24(height - 1))
            + chunk(b"ANIM", bytes(6)) + chunk(b"ANMF", u24(0) * 2 + u24(7) * 2 + u24(100) + b"\0" + frame))
    return _write(path, b"RIFF" + struct.pack("<I", len(body)) + body)


def _gif_screen(path: Path, width: int = 10000, height: int = 10000) -> Path:
    """A GIF of ~40 bytes: a 1x1 frame on a declared ``width`` x ``height`` logical screen."""
    import io
    import struct

    buf = io.BytesIO()
    Image.new("P", (1, 1)).save(buf, "GIF")
    data = bytearray(buf.getvalue())
    data[6:10] = struct.pack("<HH", width, height)
    return _write(path, bytes(data))


def _data_rows() -> list[Case]:
    def empty_classes(w: World) -> list[str]:
        (w.data / "aaa").mkdir()
        (w.data / "zzz").mkdir()
        return w.train("-o", str(w.tmp / "out"))

    def corrupt_image(w: World) -> list[str]:
        for name in os.listdir(w.data / "red"):
            _write(w.data / "red" / name, b"not an image")
        return w.train("-o", str(w.tmp / "out"))

    def bomb_in_train(w: World) -> list[str]:
        for name in os.listdir(w.data / "red"):
            _bomb(w.data / "red" / name)
        return w.train("-o", str(w.tmp / "out"))

    def oversized_webp_header(w: World) -> list[str]:
        for name in os.listdir(w.data / "red"):  # 10000x10000 = 2 x the limit: PIL itself only warns
            os.remove(w.data / "red" / name)
            _webp_canvas(w.data / "red" / f"{Path(name).stem}.webp")
        return w.train("-o", str(w.tmp / "out"))

    def oversized_gif_header(w: World) -> list[str]:
        for name in os.listdir(w.data / "red"):
            os.remove(w.data / "red" / name)
            _gif_screen(w.data / "red" / f"{Path(name).stem}.gif")
        return w.train("-o", str(w.tmp / "out"))

    def split_escapes_root(w: World) -> list[str]:
        make_colour_folder(w.tmp / "dtd" / "images", CLASSES, per_class=4, size=8)
        _write(w.tmp / "secret.png", w.image.read_bytes())
        rows = [[f"{c}/{i:03d}.png", label, c] for label, c in enumerate(CLASSES) for i in range(4)]
        rows[0][0] = "../../secret.png"
        w.owned.append(_write(w.tmp / "dtd" / "split_zhou_DescribableTextures.json",
                              json.dumps({"train": rows[:8], "val": [], "test": rows[8:]})))
        return ["train", *TRAIN[:6], "--dataset", "dtd", "--root", str(w.tmp), "--shots", "1", "--epochs", "1",
                "-o", str(w.tmp / "out")]

    def pickled_split_file(w: World) -> list[str]:
        make_colour_folder(w.tmp / "dtd" / "images", CLASSES, per_class=4, size=8)
        w.owned.append(_write(w.tmp / "dtd" / "split_zhou_DescribableTextures.json", payload(w.marker)))
        return ["train", *TRAIN[:6], "--dataset", "dtd", "--root", str(w.tmp), "--shots", "1", "--epochs", "1",
                "-o", str(w.tmp / "out")]

    def too_small_classes(w: World) -> list[str]:
        for name in ("aaa", "zzz"):
            (w.data / name).mkdir()
            shutil.copy(w.image, w.data / name / "only.png")
        return w.train("-o", str(w.tmp / "out"))

    def test_only_folder_for_training(w: World) -> list[str]:
        only = w.tmp / "testonly"
        for name in CLASSES:
            shutil.copytree(w.data / name, only / "test" / name)
        w.owned.append(only)
        return ["train", *TRAIN, "--root", str(only), "-o", str(w.tmp / "out")]

    def missing_root(w: World) -> list[str]:
        return ["train", *TRAIN, "--root", str(w.tmp / "nowhere"), "-o", str(w.tmp / "out")]

    def root_symlink_loop(w: World) -> list[str]:
        (w.tmp / "loop").symlink_to(w.tmp / "loop")
        return ["train", *TRAIN, "--root", str(w.tmp / "loop"), "-o", str(w.tmp / "out")]

    def root_is_file(w: World) -> list[str]:
        return ["train", *TRAIN, "--root", str(w.image), "-o", str(w.tmp / "out")]

    return [
        Case("data-empty-class-folders", empty_classes, ("aaa", "zzz")),
        Case("data-unreadable-images", corrupt_image, ("cannot read image", "red")),
        Case("data-decompression-bomb", bomb_in_train, ("cannot read image", "DVPT_MAX_IMAGE_PIXELS")),
        Case("data-oversized-webp-header", oversized_webp_header,
             ("cannot read image", ".webp", "10000x10000", "over the limit of 50,000,000")),
        Case("data-oversized-gif-header", oversized_gif_header,
             ("cannot read image", ".gif", "10000x10000", "over the limit of 50,000,000")),
        Case("data-root-missing", missing_root, ("nowhere",)),
        Case("data-split-path-leaves-root", split_escapes_root, ("../../secret.png", "outside")),
        Case("data-pickled-split-file", pickled_split_file, ("split_zhou_DescribableTextures.json",)),
        Case("data-classes-too-small-all-named", too_small_classes, ("aaa (1)", "zzz (1)")),
        Case("data-test-only-folder-for-a-trained-method", test_only_folder_for_training, ("no training images",)),
        Case("data-root-is-a-file", root_is_file, ("000.png",)),
        Case("data-root-symlink-loop", root_symlink_loop, ("loop",)),
    ]


def _report_rows() -> list[Case]:
    def nan_metrics(w: World) -> list[str]:
        metrics = w.run / "metrics.json"
        metrics.write_text(metrics.read_text().replace('"accuracy": ', '"accuracy": NaN, "was": ', 1))
        return ["report", str(w.run), "-o", str(w.tmp / "report"), "--no-plots"]

    def infinite_metrics(w: World) -> list[str]:
        metrics = w.run / "metrics.json"
        metrics.write_text(metrics.read_text().replace('"accuracy": ', '"accuracy": Infinity, "was": ', 1))
        return ["report", str(w.run), "-o", str(w.tmp / "report"), "--no-plots"]

    def pickled_metrics(w: World) -> list[str]:
        _write(w.run / "metrics.json", payload(w.marker))
        return ["report", str(w.run), "-o", str(w.tmp / "report"), "--no-plots"]

    def list_metrics(w: World) -> list[str]:
        _write(w.run / "metrics.json", "[1, 2]")
        return ["report", str(w.run), "-o", str(w.tmp / "report"), "--no-plots"]

    def pickled_index(w: World) -> list[str]:
        sweep = w.tmp / "sweep"
        shutil.copytree(w.run, sweep / "r1")
        w.owned.append(_write(sweep / "sweep.json", payload(w.marker)))
        return ["report", str(sweep), "-o", str(w.tmp / "report"), "--no-plots"]

    def nan_index(w: World) -> list[str]:
        sweep = w.tmp / "sweep"
        shutil.copytree(w.run, sweep / "r1")
        w.owned.append(_write(sweep / "sweep.json", '{"runs": {"r1": {"output": "r1", "score": NaN}}}'))
        return ["report", str(sweep), "-o", str(w.tmp / "report"), "--no-plots"]

    def sweep_laughs(w: World) -> list[str]:
        w.owned.append(_write(w.tmp / "spec.yaml", LAUGHS))
        return ["sweep", str(w.tmp / "spec.yaml"), "-o", str(w.tmp / "sweep"), "--dry-run"]

    def sweep_pickled_spec(w: World) -> list[str]:
        w.owned.append(_write(w.tmp / "spec.yaml", payload(w.marker)))
        return ["sweep", str(w.tmp / "spec.yaml"), "-o", str(w.tmp / "sweep"), "--dry-run"]

    def live_lock(folder: Path) -> Path:
        return _write(folder / ".dvpt.lock", json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                          "purpose": folder.name}))

    def sweep_folder_in_use(w: World) -> list[str]:
        spec = {"name": "busy", "methods": ["zeroshot"], "datasets": ["folder"], "seeds": [1], "protocol": "all",
                "overrides": {"backbone": "tiny-random", "data": {"root": str(w.data)}}}
        w.owned += [_write(w.tmp / "spec.yaml", json.dumps(spec)), live_lock(w.tmp / "sweep")]
        return ["sweep", str(w.tmp / "spec.yaml"), "-o", str(w.tmp / "sweep")]

    def benchmark_folder_in_use(w: World) -> list[str]:
        w.owned.append(live_lock(w.tmp / "bench"))
        return ["benchmark", "--quick", "--methods", "zeroshot", "-o", str(w.tmp / "bench")]

    def broken_results_line(w: World) -> list[str]:
        w.owned.append(_write(w.tmp / "bench" / "results.jsonl", '{"method": "coop"}\n{"method": NaN}\n'))
        w.owned.append(_write(w.tmp / "results.md", "# results\n"))
        return ["report", str(w.tmp / "bench"), "--update-doc", str(w.tmp / "results.md")]

    return [
        Case("report-nan-metrics", nan_metrics, ("metrics.json", "NaN")),
        Case("report-infinite-metrics", infinite_metrics, ("metrics.json", "Infinity")),
        Case("report-pickled-metrics", pickled_metrics, ("metrics.json",)),
        Case("report-metrics-not-a-mapping", list_metrics, ("metrics.json", "mapping")),
        Case("report-pickled-sweep-index", pickled_index, ("sweep.json",)),
        Case("report-nan-sweep-index", nan_index, ("sweep.json", "NaN")),
        Case("sweep-spec-billion-laughs", sweep_laughs, ("spec.yaml", "aliases")),
        Case("sweep-spec-pickled", sweep_pickled_spec, ("spec.yaml",)),
        Case("report-benchmark-nan-line", broken_results_line, ("results.jsonl:2", "NaN")),
        Case("sweep-folder-in-use", sweep_folder_in_use, ("sweep folder", "in use by process", "(sweep)", ".dvpt.lock")),
        Case("benchmark-folder-in-use", benchmark_folder_in_use,
             ("benchmark folder", "in use by process", "(bench)", ".dvpt.lock")),
    ]


ROWS = [*_config_rows(), *_run_folder_rows(), *_prompt_rows(), *_data_rows(), *_report_rows()]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in ROWS])
def test_hostile_input_is_refused(case: Case, world: World, capsys: pytest.CaptureFixture) -> None:
    argv = case.prepare(world)
    before = snapshot(world.owned)
    code, _, err = run_cli(argv, capsys)
    assert code != 0, f"exit 0 for {argv}:\n{err}"
    line = error_line(err)
    for needle in case.needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    assert snapshot(world.owned) == before, "a file the user owned was changed"
    assert not world.marker.exists(), "a planted payload ran"


def test_table_covers_every_category() -> None:
    prefixes = {c.id.split("-")[0] for c in ROWS}
    assert {"config", "run", "prompt", "predict", "data", "report", "sweep", "export", "output"} <= prefixes
    assert len(ROWS) == len({c.id for c in ROWS})


# --------------------------------------------------------------------------- skipped, named, not fatal

def test_predict_skips_and_names_oversized_images(world: World, capsys: pytest.CaptureFixture) -> None:
    bombs = [_bomb(world.tmp / "imgs" / "bomb.png"), _gif_screen(world.tmp / "imgs" / "screen.gif"),
             _webp_canvas(world.tmp / "imgs" / "canvas.webp")]
    shutil.copy(world.image, world.tmp / "imgs" / "ok.png")
    code, out, err = run_cli(["predict", "--prompt", str(world.prompt), "--format", "json", str(world.tmp / "imgs")],
                             capsys)
    assert code == 0 and "Traceback" not in err
    doc = json.loads(out)
    assert [Path(r["path"]).name for r in doc["images"]] == ["ok.png"]
    assert sorted(Path(s["path"]).name for s in doc["skipped"]) == sorted(b.name for b in bombs)
    assert all("DVPT_MAX_IMAGE_PIXELS" in s["error"] for s in doc["skipped"])
    assert all(f"{b.name}" in err for b in bombs)  # each named on stderr too


def test_datasets_check_writes_nothing_and_lists_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``datasets check`` on a DTD folder without its split file: the split is not generated
    on disk (a run would write it), and every broken class is listed in one go."""
    images = tmp_path / "dtd" / "images"
    make_colour_folder(images, CLASSES, per_class=5, size=8)
    before = snapshot([tmp_path])
    code, out, err = run_cli(["datasets", "check", "--root", str(tmp_path), "--dataset", "dtd"], capsys)
    assert code == 0 and "Traceback" not in err, out + err
    assert snapshot([tmp_path]) == before
    assert not (tmp_path / "dtd" / "split_zhou_DescribableTextures.json").exists()

    folder = make_colour_folder(tmp_path / "folder", CLASSES, per_class=4, size=8)
    for name in ("aaa", "mmm", "zzz"):
        (folder / name).mkdir()
    before = snapshot([tmp_path])
    code, out, err = run_cli(["datasets", "check", "--root", str(folder), "--dataset", "folder"], capsys)
    assert code == 1 and "Traceback" not in err
    assert all(f"{folder / name}:" in out for name in ("aaa", "mmm", "zzz")), out
    assert snapshot([tmp_path]) == before


# --------------------------------------------------------------------------- handled correctly

def test_small_classes_train_and_metrics_say_the_shots_used(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """3 images per class give 2 train / 0 val / 1 test (CoOp's rounding would leave no test
    image); --shots 4 then uses 2 per class, and metrics.json says so per class."""
    data = make_colour_folder(tmp_path / "data", CLASSES, per_class=3, size=16)
    argv = ["train", *TRAIN, "--root", str(data), "--shots", "4", "-o", str(tmp_path / "run")]
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["shots"] == 4
    assert metrics["shots_used"] == {name: 2 for name in CLASSES}
    assert metrics["evaluations"][0]["num_images"] == len(CLASSES)  # one test image per class


def test_zeroshot_and_eval_run_on_a_test_only_folder(world: World, capsys: pytest.CaptureFixture) -> None:
    only = world.tmp / "testonly"
    for name in CLASSES:
        shutil.copytree(world.data / name, only / "test" / name)
    code, _, err = run_cli(["train", "--method", "zeroshot", "--backbone", "tiny-random", "--dataset", "folder",
                            "--root", str(only), "--protocol", "all", "-o", str(world.tmp / "zs")], capsys)
    assert code == 0, err
    zs = json.loads((world.tmp / "zs" / "metrics.json").read_text())
    assert zs["evaluations"][0]["num_images"] == 6 * len(CLASSES)
    assert zs["shots_used"] == {name: 0 for name in CLASSES}
    code, out, err = run_cli(["eval", str(world.run), "--root", str(only)], capsys)
    assert code == 0, err
    assert json.loads(out)["num_images"] == 6 * len(CLASSES)
    assert not (world.run / ".dvpt.lock").exists()


def test_a_name_given_to_two_classes_stays_two_classes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A dataset may name two classes alike (CoOp's ImageNet list has two "crane"): training,
    export and predict keep one class per label. Here red and yellow are both "scarlet".
    dvpt's prototype-conditioned prompts give each its own prototype (a bank keyed by name gave
    both the second one's), ``shots_used`` counts each, and ``dvpt predict`` on the exported
    file reproduces the run's own logits column by column, with the label beside the name."""
    from dvpt.config import build_config
    from dvpt.engine.runner import run_training
    from dvpt.engine.session import Session
    from dvpt.inference.api import load_prompt

    data = make_colour_folder(tmp_path / "data", CLASSES, per_class=6, size=24)
    (data / "classnames.txt").write_text("red scarlet\nyellow scarlet\n")
    cfg = build_config(method="dvpt", flags={
        "backbone": "tiny-random", "protocol": "all", "device": "cpu", "precision": "fp32",
        "data": {"dataset": "folder", "root": str(data), "shots": 2},
        "optim": {"epochs": 1, "batch_size": 4}, "options": {"visual_aug": "proto"}})
    session = Session(cfg)
    captured = capture_evaluations(session)  # the run's own evaluations, recorded as they happen
    run_training(cfg, tmp_path / "run", session=session)
    names, items, run_logits = captured[0]
    assert names == ["blue", "green", "scarlet", "scarlet"]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["shots_used"] == {"blue": 2, "green": 2, "scarlet [2]": 2, "scarlet [3]": 2}
    assert not torch.equal(run_logits[:, 2], run_logits[:, 3])  # each "scarlet" is scored by its own prototype

    prompt_path = tmp_path / "p.dvpt"
    code, _, err = run_cli(["export", str(tmp_path / "run"), "-o", str(prompt_path)], capsys)
    assert code == 0, err
    proto = load_prompt(prompt_path).method.proto
    hand = torch.randn(4, proto.proto_sum.shape[1])
    assert torch.equal(proto.eval_embeddings(names, hand, True), proto.prototypes())  # row c = prototype c

    paths = [d.path for d in items]
    for classes in ([], ["--classes", "blue,green,scarlet,scarlet"]):  # the tuned list, given or not
        code, out, err = run_cli(["predict", "-p", str(prompt_path), "--format", "json", "--top-k", "4",
                                  *classes, *paths], capsys)
        assert code == 0, err
        doc = json.loads(out)
        assert doc["classes"] == names
        by_path = {r["path"]: r for r in doc["images"]}
        assert torch.equal(torch.tensor([by_path[p]["logits"] for p in paths]), run_logits)
        assert [by_path[p]["top"][0]["index"] for p in paths] == run_logits.argmax(-1).tolist()
        assert all(t["class"] == names[t["index"]] for r in doc["images"] for t in r["top"])
    code, out, err = run_cli(["predict", "-p", str(prompt_path), "--top-k", "4", paths[0]], capsys)
    assert code == 0 and "scarlet [2]" in out and "scarlet [3]" in out, out + err
    code, out, _ = run_cli(["predict", "-p", str(prompt_path), "--format", "csv", "--top-k", "4", paths[0]], capsys)
    assert sorted(line.split(",")[2] for line in out.strip().splitlines()[1:]) == [
        "blue", "green", "scarlet [2]", "scarlet [3]"]


def test_classes_are_matched_by_name_occurrence_by_occurrence() -> None:
    """The k-th class of a name takes the k-th class of that name in the reference list: the
    same list maps to itself, a unique name by name, a repeat never to its twin's row."""
    from dvpt.data.base import labelled_names, match_by_name
    from dvpt.data.base import DatasetSplits
    from dvpt.protocols.transfer import source_rows

    imagenet = ["goose", "crane", "heron", "maillot", "crane", "maillot"]
    assert match_by_name(imagenet, imagenet) == list(range(6))
    assert match_by_name(["crane", "heron", "crane", "crane", "owl"], imagenet) == [1, 2, 4, None, None]
    assert labelled_names(imagenet) == ["goose", "crane [1]", "heron", "maillot [3]", "crane [4]", "maillot [5]"]

    def splits(names: list[str]) -> DatasetSplits:
        return DatasetSplits("x", names, [], [], [])

    assert source_rows(splits(imagenet), splits(["heron", "crane", "crane"])) == [2, 1, 4]
    assert source_rows(splits(imagenet), splits(["crane", "owl"])) is None


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    """A lock left by a process that no longer runs (kill -9) is taken over; a live one is not.
    (tests/test_resume_after_kill.py does the same with a real killed ``dvpt train``.)"""
    import subprocess

    from dvpt.engine.lock import RunLock
    from dvpt.errors import DvptError

    dead = subprocess.Popen(["true"])
    dead.wait()
    lock = tmp_path / ".dvpt.lock"
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    with RunLock(tmp_path):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        with pytest.raises(DvptError, match=f"in use by process {os.getpid()}"):
            RunLock(tmp_path).acquire()
    assert not lock.exists()
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere"}))
    with pytest.raises(DvptError, match="in use by process 1 on elsewhere.*delete .*.dvpt.lock"):
        RunLock(tmp_path).acquire()
    assert lock.exists()  # another host's lock is never removed


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="process start times come from Linux's /proc")
def test_a_lock_whose_pid_was_reused_or_from_another_boot_is_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """The lock records the owner's start time and the boot id. A live pid with another start
    time is a reused pid: the lock is taken over with a warning; with the right start time it
    is held. A lock from another boot is stale whatever its pid. Without /proc (other systems)
    the pid alone decides, as before."""
    from dvpt.engine import lock as lockmod
    from dvpt.engine.lock import RunLock
    from dvpt.errors import DvptError

    started = lockmod.process_start(os.getpid())
    assert started == Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "purpose": "train", "started": started,
            "boot": lockmod.boot_id()}
    path = tmp_path / ".dvpt.lock"

    def taken_over(owner: dict, why: str) -> None:
        path.write_text(json.dumps(owner))
        caplog.clear()
        with caplog.at_level("WARNING", logger="dvpt"), RunLock(tmp_path):
            assert json.loads(path.read_text()) == mine  # rewritten by this process
        assert why in caplog.text and str(path) in caplog.text
        assert not path.exists()

    path.write_text(json.dumps(mine))
    with pytest.raises(DvptError, match=f"in use by process {os.getpid()}"):
        RunLock(tmp_path).acquire()
    assert json.loads(path.read_text()) == mine  # a held lock is left alone
    taken_over(mine | {"started": str(int(started) + 1)}, f"pid {os.getpid()} now belongs to another process")
    taken_over(mine | {"boot": "00000000-another-boot"}, "written before the machine restarted")

    monkeypatch.setattr(lockmod, "_proc_text", lambda path: None)  # no /proc: pid check only
    path.write_text(json.dumps(mine | {"started": str(int(started) + 1), "boot": "00000000-another-boot"}))
    with pytest.raises(DvptError, match=f"in use by process {os.getpid()}"):
        RunLock(tmp_path).acquire()


def test_read_only_run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder that cannot be written to: training there is a one-line error; a reader
    (``dvpt eval``) goes ahead without a lock."""
    import errno

    from dvpt.engine.lock import LOCK, RunLock
    from dvpt.errors import DvptError

    real_open = os.open

    def read_only(path, flags, *args):
        if str(path).endswith(LOCK):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(DvptError, match=f"cannot write into run folder {tmp_path} .Read-only file system"):
        RunLock(tmp_path).acquire()
    with RunLock(tmp_path, "eval", read_only_ok=True) as lock:
        assert not lock.held
    assert not (tmp_path / LOCK).exists()


def test_two_concurrent_trainers_on_one_folder(material: dict[str, Path], tmp_path: Path) -> None:
    """While one trainer is inside its first epoch callback, a second on the same folder is
    refused naming the first; the first then finishes normally and releases the lock."""
    from dvpt.commands.train import config_from_args
    from dvpt.cli import build_parser
    from dvpt.engine.runner import run_training
    from dvpt.errors import DvptError

    argv = ["train", *TRAIN, "--root", str(material["data"]), "--epochs", "2"]
    cfg = config_from_args(build_parser().parse_args(argv))
    out = tmp_path / "run"
    inside, release = threading.Event(), threading.Event()
    result: dict = {}

    def hold(epoch: int) -> None:
        inside.set()
        assert release.wait(120)

    def first() -> None:
        try:
            result["metrics"] = run_training(cfg, out, callbacks=[hold])
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            result["error"] = exc

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert inside.wait(300), result
        log_before = (out / "log.txt").read_bytes()
        with pytest.raises(DvptError, match=rf"{out} is in use by process {os.getpid()}"):
            run_training(cfg, out)
        assert (out / "log.txt").read_bytes() == log_before  # nothing interleaved into its log
    finally:
        release.set()
        thread.join()
    assert "error" not in result, result.get("error")
    assert [h["epoch"] for h in result["metrics"]["history"]] == [1, 2]
    assert not (out / ".dvpt.lock").exists()


def test_disk_full_is_one_line_and_leaves_the_old_file(world: World, capsys: pytest.CaptureFixture,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills while ``dvpt export --force`` writes: one line naming the file and the
    cause, the user's previous file byte-identical, no temporary file left."""
    from dvpt.inference import prompt_file

    def disk_full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 10)  # half a file, then the disk is full
        raise OSError(28, "No space left on device")

    target = _write(world.tmp / "out" / "mine.dvpt", b"the user's previous prompt")
    monkeypatch.setattr(prompt_file, "save_file", disk_full)
    code, _, err = run_cli(["export", str(world.run), "-o", str(target), "--force"], capsys)
    assert code != 0
    line = error_line(err)
    assert f"cannot write {target}: No space left on device" in line, line
    assert [p.name for p in target.parent.iterdir()] == ["mine.dvpt"]
    assert target.read_bytes() == b"the user's previous prompt"


def test_json_writer_refuses_nan_and_leaves_the_old_file(tmp_path: Path) -> None:
    from dvpt.errors import DvptError
    from dvpt.files import read_json, write_json

    path = write_json(tmp_path / "metrics.json", {"accuracy": 50.0})
    before = path.read_bytes()
    with pytest.raises(DvptError, match=r"metrics.json: history\[1\].loss is not a finite number"):
        write_json(path, {"accuracy": 50.0, "history": [{"loss": 1.0}, {"loss": float("nan")}]})
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    path.write_text('{"accuracy": -Infinity}')
    with pytest.raises(DvptError, match="metrics.json cannot be used: -Infinity"):
        read_json(path)
    big = tmp_path / "big.json"
    big.write_text("[" + "0," * 600 + "0]")
    with pytest.raises(DvptError, match="big.json is 0.0 MiB, over the 0 MiB limit"):
        read_json(big, max_bytes=1000)


def test_one_atomic_writer_in_the_package() -> None:
    """``os.replace`` and temporary files appear in ``dvpt/files.py`` only: every other module
    writes through it, so no writer can leave half a file."""
    import dvpt

    src = Path(dvpt.__file__).parent
    offenders = [str(p.relative_to(src)) for p in src.rglob("*.py") if p.name != "files.py"
                 and any(s in p.read_text() for s in ("os.replace(", "mkstemp(", "os.rename("))]
    assert offenders == []


@pytest.mark.slow
def test_planted_payloads_in_caches_are_never_run(world: World, capsys: pytest.CaptureFixture) -> None:
    """Feature caches and few-shot caches are the package's own files: a payload planted in
    every one of them is ignored (the cache is rebuilt), never executed, and the result is the
    same as with clean caches."""
    cache = world.tmp / "cache"
    argv = world.train("--set", f"cache.dir={cache}")
    code, _, err = run_cli([*argv, "-o", str(world.tmp / "a")], capsys)
    assert code == 0, err
    planted = [*cache.glob("*.safetensors"), *(world.data / "split_fewshot_dvpt").glob("*.json")]
    assert len(planted) >= 2 and any(p.suffix == ".json" for p in planted)
    for path in planted:
        path.write_bytes(payload(world.marker))
    code, _, err = run_cli([*argv, "-o", str(world.tmp / "b")], capsys)
    assert code == 0, err
    assert not world.marker.exists()
    first, second = (json.loads((world.tmp / r / "metrics.json").read_text()) for r in "ab")
    assert second["accuracy"] == first["accuracy"] and second["history"] == first["history"]
    assert all(p.read_bytes() != payload(world.marker) for p in planted)  # rebuilt
