"""Typed config fields, checked when a config or an options dataclass is built.

A field's annotation is its contract: ``Literal["sgd", "adamw"]`` for a choice,
``Annotated[int, Ge(1)]`` for a range (``annotated_types``), ``Annotated[str, Matches(...)]``
for a pattern. Every float must be finite. A bad value fails at construction, before any
data is read or any weight is loaded, with the dotted key, what it expects and what it got.
Options dataclasses inherit from ``Validated`` so that a method built in code (not from
YAML) is checked the same way.
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import annotated_types as at

from ..errors import ConfigError

# re-exported so a schema imports its vocabulary from one place
Ge, Gt, Le, Lt, Interval = at.Ge, at.Gt, at.Le, at.Lt, at.Interval


@dataclass(frozen=True)
class Matches:
    """String constraint: the whole value matches ``pattern``; ``expected`` says it in words."""

    pattern: str
    expected: str

    def ok(self, value: str) -> bool:
        return re.fullmatch(self.pattern, value) is not None


_BOUNDS = {at.Ge: (">=", lambda v, b: v >= b), at.Gt: (">", lambda v, b: v > b),
           at.Le: ("<=", lambda v, b: v <= b), at.Lt: ("<", lambda v, b: v < b)}


def _constraints(metadata: tuple[Any, ...]) -> list[Any]:
    """Flatten grouped metadata (``Interval(ge=0, le=1)`` -> ``Ge(0), Le(1)``)."""
    out: list[Any] = []
    for item in metadata:
        if isinstance(item, at.GroupedMetadata):
            out.extend(item)
        else:
            out.append(item)
    return out


def describe(annotation: Any) -> str:
    """The annotation in words, as an error message states what a key expects."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *meta = typing.get_args(annotation)
        words = [describe(base)]
        for item in _constraints(tuple(meta)):
            if type(item) in _BOUNDS:
                words.append(f"{_BOUNDS[type(item)][0]} {_bound(item)}")
            elif isinstance(item, Matches):
                return item.expected
        return " ".join(words)
    if origin is typing.Literal:
        return "one of " + " | ".join(str(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    if annotation is float:
        return "a finite number"
    if origin in (list, tuple):
        args = typing.get_args(annotation)
        return f"a list of {describe(args[0])}" if args else "a list"
    return getattr(annotation, "__name__", str(annotation))


def _bound(item: Any) -> Any:
    """The number of a ``Ge``/``Gt``/``Le``/``Lt`` constraint."""
    return getattr(item, dataclasses.fields(item)[0].name)


class _Mismatch(Exception):
    """Internal: the value does not fit; the caller names the key."""


def coerce(value: Any, annotation: Any) -> Any:
    """``value`` converted to ``annotation`` (int -> float, "a,b" -> list), or _Mismatch."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *meta = typing.get_args(annotation)
        value = coerce(value, base)
        for item in _constraints(tuple(meta)):
            if type(item) in _BOUNDS:
                if not _BOUNDS[type(item)][1](value, _bound(item)):
                    raise _Mismatch
            elif isinstance(item, Matches):
                if not item.ok(value):
                    raise _Mismatch
            elif isinstance(item, at.Predicate):
                if not item.func(value):
                    raise _Mismatch
            else:
                raise TypeError(f"unsupported constraint {item!r}")
        return value
    if origin is typing.Literal:
        for choice in typing.get_args(annotation):
            if type(value) is type(choice) and value == choice:
                return value
        raise _Mismatch
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(annotation):
            try:
                return coerce(value, arm)
            except _Mismatch:
                continue
        raise _Mismatch
    if annotation is type(None):
        if value is None:
            return None
        raise _Mismatch
    if annotation is Any:
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _Mismatch
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Mismatch
        return value
    if annotation in (bool, str):
        if not isinstance(value, annotation):
            raise _Mismatch
        return value
    if origin in (list, tuple) or annotation in (list, tuple):
        if isinstance(value, str):  # "a,b" from the command line
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        args = typing.get_args(annotation)
        return [coerce(v, args[0]) for v in value] if args else list(value)
    if origin is dict or annotation is dict:
        if not isinstance(value, Mapping):
            raise _Mismatch
        return dict(value)
    raise TypeError(f"unsupported config annotation {annotation!r}")


def check(value: Any, annotation: Any, key: str) -> Any:
    """The coerced value, or a ConfigError naming ``key``, what it expects and the fix."""
    try:
        return coerce(value, annotation)
    except _Mismatch:
        expected = describe(annotation)
        raise ConfigError(f"config key {key!r} expects {expected}, got {value!r}; "
                          f"set {key} to {expected}") from None


def hints(cls: type) -> dict[str, Any]:
    """Field annotations with their ``Annotated`` metadata (strings resolved)."""
    return typing.get_type_hints(cls, include_extras=True)


class Validated:
    """Mixin for config dataclasses: every field is checked (and coerced) on construction.

    ``config_key`` is the dotted prefix errors name (``options``, ``optim``, ...).
    """

    config_key: ClassVar[str] = ""

    def __post_init__(self) -> None:
        types_ = hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            annotation = types_[f.name]
            if dataclasses.is_dataclass(annotation):
                continue  # nested sections validate themselves
            key = f"{self.config_key}.{f.name}" if self.config_key else f.name
            object.__setattr__(self, f.name, check(getattr(self, f.name), annotation, key))
