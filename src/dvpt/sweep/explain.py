"""``dvpt sweep SPEC --explain``: each run's resolved recipe beside the official value.

The official values live in one table, ``presets/official_recipes.yaml``, each with the
repository and config file it was read from, so a reader audits a paper spec's fidelity
without reading code, and a test fails when a spec drifts from the table.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config.loader import PRESET_DIR, deep_merge, method_preset, read_yaml
from .spec import SweepSpec

OFFICIAL_TABLE = PRESET_DIR / "official_recipes.yaml"


@dataclass(frozen=True)
class Check:
    """One recipe value of one (protocol, method, dataset, shots) cell."""

    cell: str
    key: str
    resolved: Any
    official: Any
    source: str

    @property
    def drift(self) -> bool:
        return self.resolved != self.official


def _listed(entry: dict, axis: str, value: Any) -> bool:
    wanted = entry.get(axis)
    if wanted is None:
        return True
    return value in (wanted if isinstance(wanted, list) else [wanted])


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def explain(spec: SweepSpec, cli_overrides: list[str] | None = None, table: list[dict] | None = None) -> list[Check]:
    """Every official value that applies to a cell of the spec, with its resolved value.

    Entries of the table apply in order and a later one wins for the same key, as the
    spec's ``rules`` do (CoOp's 200 epochs, then 50 on ImageNet).
    """
    table = read_yaml(OFFICIAL_TABLE)["recipes"] if table is None else table
    checks, seen = [], set()
    for job in spec.jobs(cli_overrides):
        data = job.config["data"]
        cell = (job.config["protocol"], job.method, data["dataset"], data["shots"])
        if cell in seen:
            continue
        seen.add(cell)
        merged = deep_merge(method_preset(job.method), job.config)
        where = dict(zip(("protocol", "method", "dataset", "shots"), cell))
        official: dict[str, tuple[Any, str]] = {}
        for entry in table:
            if all(_listed(entry, axis, value) for axis, value in where.items()):
                official.update({key: (value, entry["source"]) for key, value in entry["values"].items()})
        name = "/".join(map(str, cell[:3])) + f"/{cell[3]}shot"
        for key, (value, source) in official.items():
            checks.append(Check(name, key, _lookup(merged, key), value, source))
    return checks


def format_checks(checks: list[Check]) -> str:
    lines = []
    for c in checks:
        flag = "DRIFT" if c.drift else "ok   "
        lines.append(f"{flag} {c.cell:<45} {c.key:<22} {c.resolved!s:>8}  official {c.official!s:>8}  ({c.source})")
    drifted = sum(c.drift for c in checks)
    lines.append(f"{len(checks)} official values checked, {drifted} drift")
    return "\n".join(lines)
