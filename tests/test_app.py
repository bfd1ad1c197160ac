"""``dvpt app``: the classify logic and its ``classify`` endpoint give ``dvpt predict``'s numbers;
bad input is a message, the server keeps serving and nothing on disk changes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("gradio", reason="the [app] extra is not installed: pip install 'dvpt[app]'")

from PIL import Image  # noqa: E402

from app_fixtures import CLASSES, predict_json, served  # noqa: E402,F401
from dvpt.app.classify import MAX_CLASSES, ZERO_SHOT, parse_classes  # noqa: E402
from dvpt.cli import main  # noqa: E402
from dvpt.errors import DvptError  # noqa: E402
from dvpt.inference.prompt_file import read_prompt_file  # noqa: E402


def probabilities(doc: dict) -> list[float]:
    return doc["images"][0]["probabilities"]


def test_classify_matches_dvpt_predict(served) -> None:
    reference = predict_json(served.prompt_path, served.image)
    doc = served.book.classify([served.image], CLASSES, served.prompt_name)
    assert doc["classes"] == reference["classes"] == ["red", "green", "blue", "purple"]
    assert probabilities(doc) == pytest.approx(probabilities(reference), abs=1e-4)
    assert doc["images"][0]["top"][0]["class"] == reference["images"][0]["top"][0]["class"]
    trained = read_prompt_file(served.prompt_path).meta.classnames  # base2novel: half the colours
    assert doc["base"] == [c for c in doc["classes"] if c in trained] and len(doc["base"]) == 2
    assert doc["novel"] == [c for c in doc["classes"] if c not in trained] and "purple" in doc["novel"]
    zero = served.book.classify([served.image], CLASSES, ZERO_SHOT)
    assert zero["novel"] == ["red", "green", "blue", "purple"] and sum(probabilities(zero)) == pytest.approx(1)
    assert probabilities(zero) != pytest.approx(probabilities(doc), abs=1e-4)  # the tuned prompt differs


def test_endpoint_matches_dvpt_predict(served) -> None:
    from gradio_client import Client, handle_file

    reference = predict_json(served.prompt_path, served.image)
    client = Client(served.url, verbose=False)
    doc = json.loads(client.predict(handle_file(str(served.image)), CLASSES, served.prompt_name,
                                    api_name="/classify"))
    assert doc["classes"] == reference["classes"]
    assert probabilities(doc) == pytest.approx(probabilities(reference), abs=1e-4)


def test_parse_classes() -> None:
    assert parse_classes("a, b\nc ,, \n") == ["a", "b", "c"]
    for bad, needle in [("", "no class names"), (" , \n", "no class names"), ("a, b, a", "repeated: a"),
                        (",".join(f"c{i}" for i in range(2000)), f"at most {MAX_CLASSES}")]:
        with pytest.raises(DvptError, match=needle):
            parse_classes(bad)


def bad_inputs(tmp: Path, served) -> list[tuple[str, tuple, str]]:
    not_image = tmp / "notes.png"
    not_image.write_text("not an image", encoding="utf-8")
    bomb = tmp / "bomb.png"
    Image.new("1", (10_000, 9_500)).save(bomb)  # 95 Mpixel, a few kB on disk
    good = str(served.image)
    return [
        ("not an image", (not_image, CLASSES, served.prompt_name), "not an image"),
        ("bomb", (bomb, CLASSES, served.prompt_name), "Mpixel limit"),
        ("empty classes", (good, " , ", served.prompt_name), "no class names"),
        ("duplicates", (good, "red, blue, red", served.prompt_name), "repeated: red"),
        ("2000 names", (good, ",".join(f"c{i}" for i in range(2000)), served.prompt_name), "at most"),
        ("unknown prompt", (good, CLASSES, "nope"), "unknown prompt"),
    ]


def snapshot(folder: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_bad_inputs_are_messages_and_the_server_keeps_serving(served, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(served.url, verbose=False)
    before = snapshot(served.run_dir) | snapshot(served.prompt_path.parent)
    for label, (image, classes, prompt), needle in bad_inputs(tmp_path, served):
        with pytest.raises(AppError, match=needle):
            client.predict(handle_file(str(image)), classes, prompt, api_name="/classify")
    corrupt = tmp_path / "corrupt.dvpt"
    corrupt.write_bytes(b"\x00garbage")
    with pytest.raises(AppError, match="corrupt.dvpt"):
        client.predict(handle_file(str(corrupt)), [ZERO_SHOT], api_name="/load_prompt")
    assert snapshot(served.run_dir) | snapshot(served.prompt_path.parent) == before
    doc = json.loads(client.predict(handle_file(str(served.image)), CLASSES, served.prompt_name,
                                    api_name="/classify"))
    assert len(probabilities(doc)) == 4  # still serving


def test_app_help_and_missing_prompt(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["app", "--help"])
    assert exit_info.value.code == 0 and "127.0.0.1" in capsys.readouterr().out
    assert main(["app", "/nonexistent/x.dvpt", "--backbone", "tiny-random"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "x.dvpt" in err[0]


def test_runs_tab_report_history_and_export(served, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    client = Client(served.url, verbose=False)
    before = sorted(p.name for p in served.run_dir.parent.rglob("*"))
    report, picked, plots = client.predict(str(served.run_dir.parent), api_name="/runs")
    assert "coop" in report and "HM" in report
    assert picked["value"] == str(served.run_dir)  # the dropdown's update
    from dvpt.report.build import build_report
    from dvpt.report.plots import figures

    expected = sorted(p.name for p in figures(build_report([served.run_dir.parent]).tables, tmp_path / "figures"))
    shown = sorted(Path(item["image"]).name for item in plots)  # files the client downloaded
    assert expected and shown == expected  # every figure dvpt report draws, nothing else
    assert all(Path(item["image"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for item in plots)
    assert sorted(p.name for p in served.run_dir.parent.rglob("*")) == before  # nothing written there
    metrics, curves = client.predict(str(served.run_dir), api_name="/history")
    history = json.loads(metrics)["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    values = {(r[0], r[1]): r[2] for r in curves["data"]}
    assert values[(2, "loss")] == pytest.approx(history[1]["loss"]) and values[(1, "acc")] == history[0]["acc"]
    ticked = client.predict(str(served.run_dir), [ZERO_SHOT], api_name="/export")
    exported = [n for n in served.book.names if n not in (ZERO_SHOT, served.prompt_name)]
    assert len(exported) == 1 and exported[0] in str(ticked)
    reference = predict_json(served.prompt_path, served.image)
    doc = json.loads(client.predict(handle_file(str(served.image)), CLASSES, exported[0], api_name="/classify"))
    assert probabilities(doc) == pytest.approx(probabilities(reference), abs=1e-4)  # same run, same numbers


def test_host_warning_and_no_share_link(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import gradio as gr

    launched: list[dict] = []
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kwargs: launched.append(kwargs))
    assert main(["app", "--backbone", "tiny-random", "--gallery", "none", "--port", "7999"]) == 0
    assert "WARNING" not in capsys.readouterr().err
    assert main(["app", "--backbone", "tiny-random", "--gallery", "none", "--host", "0.0.0.0"]) == 0
    assert "WARNING: listening on 0.0.0.0" in capsys.readouterr().err
    assert [(k["server_name"], k["share"]) for k in launched] == [("127.0.0.1", False), ("0.0.0.0", False)]
