"""Name -> plug-in registries (methods, backbones, datasets, protocols).

Registering a name twice is an error: a silent override is how two plug-ins end up fighting
over one name without anybody noticing. A registry knows the package its plug-ins live in
and imports it on the first look-up, so a lower layer (the engine, the config) can look a
protocol or a method up by name without importing the package that defines it.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Generic, Iterator, TypeVar

from .errors import DvptError

T = TypeVar("T")


class UnknownNameError(DvptError, KeyError):
    """Raised for a name that is not registered; the message lists the known names."""

    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return str(self.args[0])


class Registry(Generic[T]):
    """A named table of plug-ins of one kind."""

    def __init__(self, kind: str, package: str | None = None) -> None:
        self.kind = kind
        #: the package whose import registers every plug-in (imported on the first look-up)
        self.package = package
        self._items: dict[str, T] = {}
        self._loaded = package is None

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True  # before the import: its modules register while it runs
            importlib.import_module(self.package)  # type: ignore[arg-type]

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@METHODS.register("coop")``."""

        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return add

    def add(self, name: str, obj: T) -> T:
        return self.register(name)(obj)

    def get(self, name: str) -> T:
        self._load()
        if name not in self._items:
            known = ", ".join(sorted(self._items)) or "none"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}")
        return self._items[name]

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._items[n]) for n in self.names()]


METHODS: Registry[Any] = Registry("method", "dvpt.methods")
BACKBONES: Registry[Any] = Registry("backbone", "dvpt.backbones")
DATASETS: Registry[Any] = Registry("dataset", "dvpt.data")
PROTOCOLS: Registry[Any] = Registry("protocol", "dvpt.protocols")
