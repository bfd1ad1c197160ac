"""Regenerate the shipped table of near-duplicate emoji class names with micro's text tower.

``python -m dvpt.backbones.micro_duplicates``: the emoji reader (``dvpt.data.emoji``) only
reads the table; computing it needs a text encoder, which lives a layer above the data.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from ..data.emoji import DATASETS, _write_json, find_duplicates
from .micro import load_text_tower

TABLE = Path(__file__).resolve().parent.parent / "assets" / "emoji_duplicates.json"


def main(argv: Sequence[str] | None = None) -> int:
    """Recompute every dataset's near-duplicate names and write ``assets/emoji_duplicates.json``."""
    argparse.ArgumentParser(description=main.__doc__).parse_args(argv)
    text = load_text_tower()
    table = {d: find_duplicates(d, text.encode_text) for d in DATASETS}
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    _write_json(table, TABLE)
    print(json.dumps({d: len(v) for d, v in table.items()}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
