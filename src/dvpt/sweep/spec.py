"""A sweep spec: a grid of runs (methods x datasets x seeds x shots x protocols x domains).

A spec is a YAML file; its own keys are checked here (unknown keys, wrong types), and every
run's config keys are checked against the run schema up front, so a typo fails before the
first run starts. Names the registries decide (methods, datasets, protocols) are checked
lazily by each run: a method that is not registered yet fails that run, with the reason,
instead of the whole sweep.

Layers of one run's config, each overriding the one before (the method preset is below
them all, as for ``dvpt train``): ``overrides`` < ``dataset_overrides[dataset]`` <
``method_overrides[method]`` < ``rules`` (in order, later wins) < ``--set`` on the command
line < the grid values. A rule is ``{when: {method|dataset|shots|protocol: value or list},
set: {config keys}}``: it carries recipe values that belong to a (method, dataset[, shots])
pair, such as CoOp's 50 epochs on ImageNet, which a per-method or per-dataset layer cannot say.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..config.loader import deep_merge, from_dict, parse_override, read_yaml
from ..config.schema import RunConfig
from ..errors import ConfigError

#: spec key -> (accepted types, description) — the spec's own schema
SPEC_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "name": ((str,), "a label for the sweep"),
    "description": ((str,), "free text"),
    "methods": ((list, str), "method names"),
    "datasets": ((list, str), "dataset names"),
    "seeds": ((list, int), "seeds"),
    "shots": ((list, int), "training images per class"),
    "protocol": ((list, str), "protocol name(s)"),
    "domains": ((list, str), "dataset domain option(s); null = the dataset's default"),
    "overrides": ((dict,), "config keys shared by every run"),
    "method_overrides": ((dict,), "method name -> config keys"),
    "dataset_overrides": ((dict,), "dataset name -> config keys"),
    "rules": ((list,), "[{when: {method, dataset, shots, protocol}, set: config keys}], in order"),
    "resources": ((dict,), "per run on Ray: num_cpus, num_gpus"),
    "requires": ((list,), "dotted config keys that must be set (e.g. data.root)"),
}
REQUIRED = ("methods", "datasets")
RULE_AXES = ("method", "dataset", "shots", "protocol")
RESOURCE_KEYS = {"num_cpus": (int, float), "num_gpus": (int, float)}


@dataclass(frozen=True)
class Rule:
    """Config keys applied to the runs whose axes match every condition of ``when``."""

    when: dict[str, list]
    set: dict[str, Any]

    def matches(self, axes: Mapping[str, Any]) -> bool:
        return all(axes[axis] in values for axis, values in self.when.items())


@dataclass(frozen=True)
class RunJob:
    """One run of the grid: its folder name (relative to the sweep) and its config layer."""

    name: str
    config: dict[str, Any]

    @property
    def method(self) -> str:
        return self.config["method"]


@dataclass
class SweepSpec:
    name: str
    methods: list[str]
    datasets: list[str]
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    shots: list[int] = field(default_factory=lambda: [16])
    protocols: list[str] = field(default_factory=lambda: ["base2novel"])
    domains: list[str | None] = field(default_factory=lambda: [None])
    overrides: dict[str, Any] = field(default_factory=dict)
    method_overrides: dict[str, dict] = field(default_factory=dict)
    dataset_overrides: dict[str, dict] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    resources: dict[str, float] = field(default_factory=lambda: {"num_cpus": 1, "num_gpus": 0})
    requires: list[str] = field(default_factory=list)
    source: str = "<dict>"

    def jobs(self, cli_overrides: list[str] | None = None) -> list[RunJob]:
        """Every run of the grid, in a stable order, each config checked against the schema."""
        cli = {}
        for text in cli_overrides or []:
            cli = deep_merge(cli, parse_override(text))
        shared = deep_merge(self.overrides, cli)
        self._check_requires(shared)
        out = []
        grid = itertools.product(self.protocols, self.datasets, self.domains, self.methods, self.shots, self.seeds)
        for protocol, dataset, domain, method, shots, seed in grid:
            config = deep_merge(self.overrides, self.dataset_overrides.get(dataset, {}))
            config = deep_merge(config, self.method_overrides.get(method, {}))
            where = {"method": method, "dataset": dataset, "shots": shots, "protocol": protocol}
            for rule in self.rules:
                if rule.matches(where):
                    config = deep_merge(config, rule.set)
            config = deep_merge(config, cli)
            axes: dict[str, Any] = {"method": method, "protocol": protocol, "seed": seed,
                                    "data": {"dataset": dataset, "shots": shots}}
            if domain is not None:
                axes["data"]["options"] = {"domain": domain}
            config = deep_merge(config, axes)
            job = RunJob(run_name(protocol, dataset, domain, method, shots, seed), config)
            self._check_config(job)
            out.append(job)
        return out

    def _check_config(self, job: RunJob) -> None:
        try:
            from_dict(RunConfig, job.config)
        except ConfigError as exc:
            raise ConfigError(f"{self.source}: run {job.name}: {exc}") from None

    def _check_requires(self, shared: Mapping[str, Any]) -> None:
        for key in self.requires:
            node: Any = shared
            for part in key.split("."):
                node = node.get(part) if isinstance(node, Mapping) else None
            if node in (None, ""):
                raise ConfigError(
                    f"{self.source} needs {key}; pass it with --set {key}=VALUE (or set it under overrides:)"
                )


def run_name(protocol: str, dataset: str, domain: str | None, method: str, shots: int, seed: int) -> str:
    """``<protocol>/<dataset>[.<domain>]/<method>/<shots>shot-seed<seed>``: one folder per axis."""
    label = f"{dataset}.{domain}" if domain else dataset
    return f"{protocol}/{label}/{method}/{shots}shot-seed{seed}"


def _as_list(key: str, value: Any, item: type | tuple[type, ...], where: str) -> list:
    values = value if isinstance(value, list) else [value]
    for v in values:
        if v is not None and (not isinstance(v, item) or isinstance(v, bool)):
            raise ConfigError(f"{where}: {key!r} entries must be {_names(item)}, got {v!r}")
    if not values:
        raise ConfigError(f"{where}: {key!r} is empty")
    if len(set(map(str, values))) != len(values):
        raise ConfigError(f"{where}: {key!r} lists a value twice: {values}")
    return values


def _names(item: type | tuple[type, ...]) -> str:
    items = item if isinstance(item, tuple) else (item,)
    return " or ".join(t.__name__ for t in items)


def _check_keys(data: Mapping[str, Any], where: str) -> None:
    for key, value in data.items():
        if key not in SPEC_KEYS:
            raise ConfigError(f"{where}: unknown sweep key {key!r}; known: {', '.join(sorted(SPEC_KEYS))}")
        types, _ = SPEC_KEYS[key]
        if value is not None and not isinstance(value, types):
            raise ConfigError(f"{where}: {key!r} expects {_names(types)}, got {value!r}")
    for key in REQUIRED:
        if not data.get(key):
            raise ConfigError(f"{where}: missing {key!r} ({SPEC_KEYS[key][1]})")


def _check_nested(data: Mapping[str, Any], key: str, where: str) -> dict[str, dict]:
    table = data.get(key) or {}
    for name, layer in table.items():
        if not isinstance(layer, Mapping):
            raise ConfigError(f"{where}: {key}.{name} must be a mapping of config keys, got {layer!r}")
    return {str(k): dict(v) for k, v in table.items()}


def _rules(data: Mapping[str, Any], where: str) -> list[Rule]:
    out = []
    for i, rule in enumerate(data.get("rules") or []):
        at = f"{where}: rules[{i}]"
        if not isinstance(rule, Mapping) or set(rule) != {"when", "set"}:
            raise ConfigError(f"{at} must be a mapping with exactly 'when' and 'set', got {rule!r}")
        when, values = rule["when"], rule["set"]
        if not isinstance(when, Mapping) or not when:
            raise ConfigError(f"{at}.when must map {', '.join(RULE_AXES)} to a value or list")
        if not isinstance(values, Mapping):
            raise ConfigError(f"{at}.set must be a mapping of config keys, got {values!r}")
        conditions: dict[str, list] = {}
        for axis, value in when.items():
            if axis not in RULE_AXES:
                raise ConfigError(f"{at}.when: unknown axis {axis!r}; known: {', '.join(RULE_AXES)}")
            item = int if axis == "shots" else str
            conditions[axis] = _as_list(f"when.{axis}", value, item, at)
        out.append(Rule(conditions, dict(values)))
    return out


def _resources(data: Mapping[str, Any], where: str) -> dict[str, float]:
    out = {"num_cpus": 1, "num_gpus": 0}
    for key, value in (data.get("resources") or {}).items():
        if key not in RESOURCE_KEYS:
            raise ConfigError(f"{where}: unknown resources key {key!r}; known: {', '.join(RESOURCE_KEYS)}")
        if not isinstance(value, RESOURCE_KEYS[key]) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{where}: resources.{key} must be a number >= 0, got {value!r}")
        out[key] = value
    return out


def spec_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> SweepSpec:
    """Validate the spec's own keys and build a ``SweepSpec``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a sweep spec must be a mapping")
    _check_keys(data, source)
    get = data.get
    return SweepSpec(
        name=get("name") or Path(source).stem,
        methods=_as_list("methods", get("methods"), str, source),
        datasets=_as_list("datasets", get("datasets"), str, source),
        seeds=_as_list("seeds", get("seeds", [1, 2, 3]), int, source),
        shots=_as_list("shots", get("shots", [16]), int, source),
        protocols=_as_list("protocol", get("protocol", "base2novel"), str, source),
        domains=_as_list("domains", get("domains", [None]), str, source),
        overrides=dict(get("overrides") or {}),
        method_overrides=_check_nested(data, "method_overrides", source),
        dataset_overrides=_check_nested(data, "dataset_overrides", source),
        rules=_rules(data, source),
        resources=_resources(data, source),
        requires=[str(k) for k in get("requires") or []],
        source=source,
    )


def load_spec(path: str | Path) -> SweepSpec:
    """A spec from a YAML file, or by the name of a shipped one (``paper_base2novel``)."""
    path = resolve_spec_path(path)
    return spec_from_dict(read_yaml(path), str(path))


def shipped_specs() -> dict[str, Path]:
    from ..config.loader import PRESET_DIR

    return {p.stem: p for p in sorted((PRESET_DIR / "sweeps").glob("*.yaml"))}


def resolve_spec_path(path: str | Path) -> Path:
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    shipped = shipped_specs()
    if str(path) in shipped:
        return shipped[str(path)]
    raise ConfigError(f"sweep spec {path} not found; give a YAML file or one of: {', '.join(shipped) or 'none'}")
