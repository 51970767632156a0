"""Name -> factory registries that user code can extend (optimizers, initializers, activations)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from jaxlab.errors import ConfigError

T = TypeVar("T")
# Bumped whenever an entry of any registry is replaced or removed: compiled programs are keyed
# on it (with the names they use), so a program built with an old entry is never run again.
_replacements = 0


def generation() -> int:
    """How many registry entries have been replaced or removed so far."""
    return _replacements


def _replaced() -> None:
    global _replacements
    _replacements += 1


class Registry(Generic[T]):
    """An explicit mapping from names to factories.

    ``register`` works as a call, ``registry.register("name", factory)``, or as a decorator,
    ``@registry.register("name")``. A name can be registered again only with ``override=True``.
    ``check`` (optional) is called with each new factory and raises if it is unfit;
    ``forget`` (optional) is called with a name when it is unregistered, to drop what was kept
    about it elsewhere.
    """

    def __init__(
        self,
        kind: str,
        check: Callable[[str, T], None] | None = None,
        forget: Callable[[str], None] | None = None,
    ):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._check = check
        self._forget = forget

    def register(self, name: str, factory: T | None = None, *, override: bool = False) -> Any:
        if factory is None:
            return lambda f: self.register(name, f, override=override) or f
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries and not override:
            raise ConfigError(
                f"{self.kind} {name!r} is already registered; pass override=True to replace it"
            )
        if self._check is not None:
            self._check(name, factory)
        if name in self._entries:
            _replaced()
        self._entries[name] = factory
        return None

    def unregister(self, name: str) -> None:
        self.get(name)
        del self._entries[name]
        if self._forget is not None:
            self._forget(name)
        _replaced()

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ConfigError(
                f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
