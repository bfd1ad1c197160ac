"""Building a ``RunConfig`` from layers of plain dicts, with validation."""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..errors import ConfigError
from .schema import RunConfig

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"


def _type_ok(value: Any, annotation: Any) -> tuple[bool, Any]:
    """Is ``value`` acceptable for ``annotation``? Returns (ok, coerced value)."""
    if isinstance(annotation, str):
        annotation = eval(annotation, vars(typing), {})  # noqa: S307 - our own annotations only
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(annotation):
            ok, coerced = _type_ok(value, arm)
            if ok:
                return True, coerced
        return False, value
    if annotation is type(None):
        return value is None, value
    if annotation is Any:
        return True, value
    if annotation is float:
        if isinstance(value, bool):
            return False, value
        return isinstance(value, (int, float)), float(value) if isinstance(value, (int, float)) else value
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if annotation is bool:
        return isinstance(value, bool), value
    if annotation is str:
        return isinstance(value, str), value
    if origin in (list, tuple) or annotation in (list, tuple):
        if isinstance(value, str):  # "a,b" from the command line
            value = [v for v in value.split(",") if v]
        return isinstance(value, (list, tuple)), list(value) if isinstance(value, (list, tuple)) else value
    if origin is dict or annotation is dict:
        return isinstance(value, Mapping), dict(value) if isinstance(value, Mapping) else value
    if dataclasses.is_dataclass(annotation):
        return isinstance(value, Mapping), value
    return True, value


def from_dict(cls: type, data: Mapping[str, Any], where: str = "") -> Any:
    """Instantiate dataclass ``cls`` from ``data``; unknown keys and wrong types raise."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            raise ConfigError(f"unknown config key {path!r}; known: {', '.join(sorted(fields))}")
        annotation = hints[key]
        if dataclasses.is_dataclass(annotation):
            kwargs[key] = from_dict(annotation, value, path)
            continue
        ok, coerced = _type_ok(value, annotation)
        if not ok:
            raise ConfigError(f"config key {path!r} expects {_type_name(annotation)}, got {value!r}")
        kwargs[key] = coerced
    return cls(**kwargs)


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", str(annotation))


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
    validate_method_options(cfg)
    return cfg


def validate_method_options(cfg: RunConfig) -> Any:
    """The method's own options dataclass, built from ``cfg.options`` (errors name keys)."""
    from ..methods import get_method

    method_cls = get_method(cfg.method)
    return from_dict(method_cls.Options, cfg.options, "options")


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
