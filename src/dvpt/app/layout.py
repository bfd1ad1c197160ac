"""The page: a Classify tab (images x prompts side by side), a Runs tab, and the ``classify`` endpoint.

Bad input never stops the server: ``DvptError`` becomes a ``gr.Error`` message in the page
(and an error reply to an API client); nothing is written except prompts the Runs tab exports
and the report's figures, drawn into a fresh temporary folder per load.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Sequence

import gradio as gr

from ..data.base import labelled_names
from ..errors import DvptError
from ..files import read_json
from .classify import PromptBook

BAR_WIDTH = 24


def _paths(files: Any) -> list[str]:
    if files is None:
        return []
    items = files if isinstance(files, (list, tuple)) else [files]
    return [str(getattr(f, "name", f)) for f in items]


def results_markdown(docs: dict[str, dict]) -> str:
    """Per image, one top-k table per prompt; probabilities to 8 decimals with a text bar."""
    if not docs:
        return ""
    first = next(iter(docs.values()))
    parts = []
    for i, image in enumerate(first["images"]):
        parts.append(f"### {Path(image['path']).name}\n")
        for name, doc in docs.items():
            novel = set(doc["novel"])
            shown = labelled_names(doc["classes"])  # a repeated name with its label
            parts.append(f"**{name}**\n\n| class | | probability | |\n|---|---|---|---|")
            for row in doc["images"][i]["top"]:
                bar = "█" * round(row["probability"] * BAR_WIDTH)
                tag = "novel" if row["class"] in novel else "base"
                parts.append(f"| {shown[row['index']]} | {tag} | {row['probability']:.8f} | {bar} |")
            parts.append("")
    return "\n".join(parts)


def build_app(book: PromptBook, runs: str | None = None, gallery: Sequence[str] = (),
              export_dir: str | None = None, classes: str = "") -> gr.Blocks:
    """The Blocks app around ``book``; ``gallery`` images are offered as examples, ``classes`` prefilled."""
    export_to = Path(export_dir or tempfile.mkdtemp(prefix="dvpt-app-"))

    def classify_page(files: Any, classes: str, chosen: list[str], top_k: float):
        try:
            if not chosen:
                raise DvptError("no prompt chosen: tick zero-shot and/or a loaded prompt")
            docs = {name: book.classify(_paths(files), classes, name, int(top_k)) for name in chosen}
        except DvptError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        return results_markdown(docs), json.dumps(docs, indent=1)

    def classify_api(image: Any, classes: str, prompt: str) -> str:
        """One image, comma/line-separated class names, a prompt name -> predict's JSON document, as text.

        Text, not a JSON component: Gradio takes any dict with a ``path`` key for a file to serve.
        """
        try:
            return json.dumps(book.classify(_paths(image), classes, prompt, top_k=5), indent=1)
        except DvptError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    def load_runs(folder: str):
        from ..report.build import build_report

        try:
            if not folder or not Path(folder).is_dir():
                raise DvptError(f"runs folder {folder!r} not found; give a folder written by dvpt demo/benchmark/train")
            report = build_report([folder])
        except DvptError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        from ..report.plots import figures

        # `dvpt report`'s own figures (HM bars, base-vs-novel, few-shot curves): the same code,
        # into a temporary folder Gradio may serve from, never into the user's runs folder
        drawn = figures(report.tables, Path(tempfile.mkdtemp(prefix="dvpt-app-figures-")))
        run_dirs = sorted(str(p.parent) for p in Path(folder).rglob("metrics.json"))
        return (report.markdown(), gr.update(choices=run_dirs, value=run_dirs[0] if run_dirs else None),
                [str(p) for p in drawn])

    def run_history(run_dir: str | None):
        """The run's ``metrics.json`` (text) and its per-epoch loss and accuracy as one long table."""
        import pandas as pd

        if not run_dir:
            return "", None
        try:
            metrics = read_json(Path(run_dir) / "metrics.json", "metrics file")
        except DvptError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        rows = [{"epoch": h["epoch"], "series": key, "value": float(h[key])}
                for h in metrics.get("history", []) for key in ("loss", "acc") if key in h]
        return json.dumps(metrics, indent=1), pd.DataFrame(rows, columns=["epoch", "series", "value"])

    def export_run(run_dir: str | None, chosen: list[str]):
        from ..inference.api import export_prompt

        if not run_dir:
            raise gr.Error("pick a run first", print_exception=False)
        try:
            path = export_prompt(run_dir, export_to / f"{Path(run_dir).name}.dvpt")
            name = book.add(path)
        except DvptError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        gr.Info(f"exported {path}; loaded as {name!r}")
        return gr.update(choices=book.names, value=sorted(set(chosen or []) | {name}))

    def load_prompt_file(upload: Any, chosen: list[str]):
        paths = _paths(upload)
        if not paths:
            return gr.update()
        try:
            name = book.add(paths[0])
        except DvptError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        return gr.update(choices=book.names, value=sorted(set(chosen or []) | {name}))

    with gr.Blocks(title="dvpt app") as app:
        gr.Markdown("# dvpt: tuned prompts next to zero-shot\nUpload images, type class names "
                    "(new ones allowed), tick prompts. Numbers equal `dvpt predict --format json`.")
        with gr.Tab("Classify"):
            with gr.Row():
                with gr.Column():
                    files = gr.File(label="images", file_count="multiple", file_types=["image"], elem_id="images")
                    if gallery:
                        gr.Examples(examples=[[[str(g)]] for g in gallery], inputs=[files], label="emoji test renderings")
                    class_box = gr.Textbox(label="class names (comma- or line-separated)", lines=3, elem_id="classes",
                                           value=classes)
                    chosen = gr.CheckboxGroup(choices=book.names, value=book.names, label="prompts", elem_id="prompts")
                    prompt_upload = gr.File(label="load a prompt file (.dvpt)", elem_id="prompt-file")
                    top_k = gr.Slider(1, 20, value=5, step=1, label="top-k")
                    button = gr.Button("Classify", variant="primary", elem_id="classify")
                with gr.Column():
                    shown = gr.Markdown(elem_id="results")
                    raw = gr.Code(label="JSON (as dvpt predict --format json)", language="json")
            prompt_upload.upload(load_prompt_file, [prompt_upload, chosen], [chosen], api_name="load_prompt")
            button.click(classify_page, [files, class_box, chosen, top_k], [shown, raw], api_name="classify_page")
        with gr.Tab("Runs"):
            folder = gr.Textbox(label="runs folder", value=runs or "", elem_id="runs-folder")
            load = gr.Button("Load report")
            table = gr.Markdown()
            plots = gr.Gallery(label="report figures (as dvpt report draws them)", columns=2, elem_id="report-figures")
            run_pick = gr.Dropdown(label="run", choices=[])
            curves = gr.LinePlot(x="epoch", y="value", color="series", label="training curves (loss, accuracy %)")
            history = gr.Code(label="metrics.json (history per epoch)", language="json")
            export = gr.Button("Export to a prompt file and load it in Classify")
            load.click(load_runs, [folder], [table, run_pick, plots], api_name="runs")
            run_pick.change(run_history, [run_pick], [history, curves], api_name="history")
            export.click(export_run, [run_pick, chosen], [chosen], api_name="export")
        with gr.Tab("API"):
            gr.Markdown("`classify(image, classes, prompt)` from `gradio_client`: one image, class names, "
                        "a prompt name -> the JSON text of `dvpt predict --format json` (plus `base`/`novel`).")
            api_image = gr.File(label="image", file_types=["image"])
            api_classes = gr.Textbox(label="class names")
            api_prompt = gr.Dropdown(choices=book.names, value=book.names[0], label="prompt", allow_custom_value=True)
            api_out = gr.Code(language="json")
            gr.Button("classify").click(classify_api, [api_image, api_classes, api_prompt], [api_out],
                                        api_name="classify")
    app.queue(default_concurrency_limit=2, max_size=64)
    return app
