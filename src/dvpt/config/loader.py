"""Building a ``RunConfig`` from layers of plain dicts, with validation."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..errors import ConfigError
from ..registry import METHODS, PROTOCOLS, Registry, UnknownNameError
from .fields import check, hints
from .schema import RunConfig

#: protocols that score the prompt on classes it was not trained on: a class-specific
#: context (one per training class) has nothing to offer them
UNSEEN_CLASS_PROTOCOLS = ("base2novel", "crossdataset", "transfer")

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"


def from_dict(cls: type, data: Mapping[str, Any], where: str = "") -> Any:
    """Instantiate dataclass ``cls`` from ``data``; unknown keys and bad values raise,
    naming the dotted key (``where`` is the prefix, e.g. ``options``)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}; "
                          f"write {where or 'it'} as key: value lines")
    types_ = hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            raise ConfigError(f"unknown config key {path!r}; known: {', '.join(sorted(fields))}")
        annotation = types_[key]
        if dataclasses.is_dataclass(annotation):
            kwargs[key] = from_dict(annotation, value, path)
        else:
            kwargs[key] = check(value, annotation, path)
    return cls(**kwargs)


def to_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)


def deep_merge(base: dict, update: Mapping[str, Any]) -> dict:
    """Recursive dict merge; ``update`` wins. Neither input is modified."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    from ..engine.io import load_yaml_text

    try:
        data = load_yaml_text(path.read_text()) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is binary, not YAML text; give a .yaml config") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def parse_override(text: str) -> dict:
    """``optim.lr=0.01`` -> {"optim": {"lr": 0.01}} (values parsed as YAML scalars)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw else ""
    node: dict = {}
    cursor = node
    parts = key.strip().split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return node


def method_preset(method: str) -> dict:
    path = PRESET_DIR / "methods" / f"{method}.yaml"
    return read_yaml(path) if path.is_file() else {}


def build_config(
    *,
    method: str | None = None,
    files: list[str] | None = None,
    flags: Mapping[str, Any] | None = None,
    overrides: list[str] | None = None,
) -> RunConfig:
    """Resolve the layers into a validated ``RunConfig``.

    The method preset is chosen by the final method name (flag, else file, else default),
    so ``--method kgcoop`` picks KgCoOp's published recipe even when a run file names
    another method.
    """
    layers: list[dict] = [read_yaml(f) for f in files or []]
    layers.append(dict(flags or {}))
    layers.extend(parse_override(o) for o in overrides or [])
    chosen = RunConfig.method
    for layer in layers:
        chosen = layer.get("method", chosen)
    merged: dict = {}
    for layer in [method_preset(method or chosen), *layers]:
        merged = deep_merge(merged, layer)
    if method:
        merged["method"] = method
    cfg = from_dict(RunConfig, merged)
    options = validate_method_options(cfg)
    check_compatible(cfg, options)
    cfg.options = to_dict(options)  # every option resolved: the run folder records what ran
    return cfg


def validate_method_options(cfg: RunConfig) -> Any:
    """The method's own options dataclass, built from ``cfg.options`` (errors name keys)."""
    return from_dict(registered(METHODS, cfg.method, "method").Options, cfg.options, "options")


def registered(registry: Registry, name: str, key: str) -> Any:
    """``registry.get(name)``; an unknown name is a ConfigError naming ``key`` and the choices."""
    try:
        return registry.get(name)
    except UnknownNameError as exc:
        raise ConfigError(f"{exc}; set {key} to one of them") from None


def check_compatible(cfg: RunConfig, options: Any) -> None:
    """Refuse a method/options/protocol combination that cannot run, before any work."""
    registered(PROTOCOLS, cfg.protocol, "protocol")
    if getattr(options, "class_specific", False) and cfg.protocol in UNSEEN_CLASS_PROTOCOLS:
        raise ConfigError(
            f"options.class_specific=true learns one context per training class, and protocol "
            f"{cfg.protocol!r} evaluates on other classes; set options.class_specific=false or protocol=all"
        )


def flags_from_args(args: Any, mapping: Mapping[str, str]) -> dict:
    """Command-line flags that were given -> nested dict by dotted config key."""
    out: dict = {}
    for attr, key in mapping.items():
        value = getattr(args, attr, None)
        if value is None:
            continue
        out = deep_merge(out, _nest(key, value))
    return out


def _nest(key: str, value: Any) -> dict:
    parts = key.split(".")
    node: dict = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        node = {part: node}
    return node
