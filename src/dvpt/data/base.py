"""What every dataset reader produces: labelled image paths, class names and templates."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence


@dataclass(frozen=True)
class Datum:
    """One image: its file, its label (index into the dataset's class names) and name."""

    path: str
    label: int
    classname: str
    domain: str = ""


@dataclass
class DatasetSplits:
    """A dataset ready for a protocol: three lists of ``Datum`` and the class list.

    ``templates[0]`` is the per-dataset hand-crafted template (CoOp's zero-shot one);
    the rest form an ensemble where a method asks for one.
    """

    name: str
    classnames: list[str]
    train: list[Datum]
    val: list[Datum]
    test: list[Datum]
    templates: list[str] = field(default_factory=lambda: ["a photo of a {}."])
    root: str | None = None
    #: where the labels index a larger label space (ImageNet-A/R -> ImageNet): label i of this
    #: dataset is row ``label_space_rows[i]`` of the source classifier.
    label_space_rows: list[int] | None = None
    #: a string identifying the split content (for few-shot cache keys).
    fingerprint: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    def with_lists(self, **lists: list[Datum]) -> "DatasetSplits":
        return replace(self, **lists)


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: how to load it and what it expects on disk.

    ``load(root, **options)`` returns ``DatasetSplits``; it raises ``DataError`` naming the
    missing path. ``check(root)`` returns every problem found (empty list = fine), so
    ``dvpt datasets check`` can list them all at once. ``peek(root)``, when given, is ``load``
    without writing anything (a missing split file is generated in memory only): ``check``
    promises never to write into the user's data folder.
    """

    name: str
    layout: str
    load: Callable[..., DatasetSplits]
    check: Callable[[Path], list[str]] | None = None
    num_classes: int | None = None
    templates: tuple[str, ...] = ("a photo of a {}.",)
    target_only: bool = False
    description: str = ""
    peek: Callable[[Path], DatasetSplits] | None = None


# --------------------------------------------------------------------------- repeated class names
# A class is its label (its position in the class list), never its name: CoOp's ImageNet list
# names two classes "crane" and two "maillot". Code that must look a class up by name (a
# prototype bank, a transfer target) goes through ``match_by_name``; what a person reads
# shows a repeated name with its label (``labelled_names``).

def repeated_names(names: Sequence[str]) -> dict[str, list[int]]:
    """Each name given to more than one class -> the labels it names, in order."""
    labels: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        labels.setdefault(name, []).append(i)
    return {name: where for name, where in labels.items() if len(where) > 1}


def labelled_names(names: Sequence[str]) -> list[str]:
    """The names to show: a repeated name gets its label, ``"crane [134]"``; unique ones stay as they are."""
    repeated = repeated_names(names)
    return [f"{name} [{i}]" if name in repeated else name for i, name in enumerate(names)]


def match_by_name(names: Sequence[str], reference: Sequence[str]) -> list[int | None]:
    """For each class of ``names``, its position in ``reference`` (``None`` when absent).

    The k-th class of a name matches the k-th class of that name in ``reference``, so
    identical lists match position by position and unique names match by name; a dict keyed
    by name would send both "crane" classes to the same row.
    """
    rows: dict[str, list[int]] = {}
    for i, name in enumerate(reference):
        rows.setdefault(name, []).append(i)
    seen: dict[str, int] = {}
    out: list[int | None] = []
    for name in names:
        k = seen[name] = seen.get(name, -1) + 1
        candidates = rows.get(name, [])
        out.append(candidates[k] if k < len(candidates) else None)
    return out
