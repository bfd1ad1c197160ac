"""``dvpt app [PROMPT_FILE ...]``: a local web page to try prompts on your images, next to zero-shot.

Binds to 127.0.0.1 unless ``--host`` says otherwise (then a warning is printed); never makes
a public share link. Needs the optional extra: ``pip install 'dvpt[app]'``.
"""
from __future__ import annotations

import argparse
import sys

from ..errors import DvptError


def run(args: argparse.Namespace) -> int:
    try:
        from ..app.layout import build_app
    except ImportError as exc:
        raise DvptError(f"dvpt app needs Gradio ({exc}); install it with: pip install 'dvpt[app]'") from None
    from ..app.classify import PromptBook

    book = PromptBook(args.backbone, args.device)
    for path in args.prompts:
        book.add(path)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"dvpt app: WARNING: listening on {args.host}: anyone who can reach this machine "
              f"can use the page", file=sys.stderr)
    gallery, names = [], []
    if args.gallery != "none":
        from ..app.classify import emoji_gallery

        try:
            gallery, names = emoji_gallery(args.gallery)
        except DvptError as exc:
            print(f"dvpt app: no example gallery ({exc})", file=sys.stderr)
    app = build_app(book, runs=args.runs, gallery=gallery, classes=", ".join(names))
    app.launch(server_name=args.host, server_port=args.port, share=False, inbrowser=False,
               show_error=True, max_file_size="200mb")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("app", help="a local web page: classify images with prompts, browse runs",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prompts", nargs="*", metavar="PROMPT_FILE", help=".dvpt files written by `dvpt export`")
    parser.add_argument("--runs", metavar="DIR", help="runs folder shown in the Runs tab")
    parser.add_argument("--backbone", default="micro", help="backbone of the zero-shot prompt (default micro)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--gallery", default="emoji-animals", metavar="EMOJI_DATASET",
                        help="offer test renderings of this emoji dataset as examples (default emoji-animals; none)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.set_defaults(func=run)
