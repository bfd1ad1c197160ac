"""A trained CoOp prompt on tiny-random, the app serving it on a free loopback port, predict's answer."""
from __future__ import annotations

import json
import socket
from contextlib import redirect_stdout
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import pytest

from test_export_predict import COLOURS4, train_and_export
from conftest import make_colour_folder

CLASSES = "red, green, blue, purple"  # purple: a name the prompt never saw (novel)


@dataclass
class Served:
    url: str
    prompt_name: str
    prompt_path: Path
    image: Path
    run_dir: Path
    book: object


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def predict_json(prompt_path: Path, image: Path, classes: str = CLASSES) -> dict:
    """``dvpt predict --format json`` on one image, parsed."""
    from dvpt.cli import main

    out = StringIO()
    with redirect_stdout(out):
        assert main(["predict", str(image), "--prompt", str(prompt_path), "--classes", classes,
                     "--format", "json", "--device", "cpu", "--top-k", "5"]) == 0
    return json.loads(out.getvalue())


def start_app(tmp: Path) -> tuple[Served, object]:
    from dvpt.app.classify import PromptBook
    from dvpt.app.layout import build_app

    root = make_colour_folder(tmp / "colours", COLOURS4, per_class=10, size=24)
    run = train_and_export(root, tmp / "out", "coop", "base2novel")
    book = PromptBook("tiny-random", "cpu")
    name = book.add(run.prompt_path)
    app = build_app(book, runs=str(tmp / "out"), export_dir=str(tmp / "exported"))
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, share=False,
               quiet=True)
    image = root / "blue" / "000.png"
    return Served(f"http://127.0.0.1:{port}/", name, run.prompt_path, image, run.run_dir, book), app


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    state, app = start_app(tmp_path_factory.mktemp("app"))
    yield state
    app.close()
