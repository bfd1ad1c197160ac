"""Name -> class registries (methods, backbones, datasets).

Registering a name twice is an error: a silent override is how two plug-ins end up fighting
over one name without anybody noticing.
"""
from __future__ import annotations

from typing import Any, Callable, Generic, Iterator, TypeVar

from .errors import DvptError

T = TypeVar("T")


class UnknownNameError(DvptError, KeyError):
    """Raised for a name that is not registered; the message lists the known names."""

    def __str__(self) -> str:  # KeyError quotes its message; we want plain text
        return str(self.args[0])


class Registry(Generic[T]):
    """A named table of plug-ins of one kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

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
        if name not in self._items:
            known = ", ".join(sorted(self._items)) or "none"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._items[n]) for n in self.names()]


METHODS: Registry[Any] = Registry("method")
BACKBONES: Registry[Any] = Registry("backbone")
DATASETS: Registry[Any] = Registry("dataset")
