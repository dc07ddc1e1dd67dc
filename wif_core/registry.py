"""Named registries (explainers, attribution methods, zoo tasks and estimators): one entry per name.

An entry is an object or a lazy reference ``"package.module:attribute"``, imported on first use:
the built-in entries are lazy, so listing names (``wif --help``, a page's select box) imports
nothing heavy, and each registry's table is the one place its names are written. Entries are
imported under ``wif_core.heavy``'s lock, since app sessions on several threads may ask at once. A resolved
entry must carry the name it is registered under (its ``name`` attribute, where it has one).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

from wif_core.errors import InputError
from wif_core.heavy import heavy_import

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """Entries by name: refuses a second entry under a name, says what exists on a miss, imports lazily."""

    def __init__(self, kind: str, lazy: Mapping[str, str] | None = None, sort_names: bool = False) -> None:
        self.kind = kind  # e.g. "an attribution method": used in both messages
        self.sort_names = sort_names
        self._lazy: dict[str, str] = dict(lazy or {})
        self._loaded: dict[str, T] = {}

    def add(self, name: str, entry: T, detail: str = "") -> T:
        """Register ``entry`` under ``name``; a duplicate is a programming error (ValueError)."""
        if name in self:
            raise ValueError(f"{self.kind} named '{name}' is already registered{detail}")
        self._loaded[name] = entry
        return entry

    def reference(self, name: str) -> str | None:
        """The lazy ``module:attribute`` reference of a built-in entry (None for one added as an object)."""
        return self._lazy.get(name)

    def __getitem__(self, name: str) -> T:
        if name not in self._loaded:
            ref = self._lazy[name]  # KeyError for an unknown name, as a Mapping should
            module, _, attribute = ref.partition(":")
            entry = getattr(heavy_import(module), attribute)  # entries import torch, scikit-learn…
            registered = getattr(entry, "name", name)
            if registered != name:
                raise ValueError(f"{ref} is named '{registered}' but registered as {self.kind} named '{name}'")
            self._loaded[name] = entry
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        yield from self._lazy
        yield from (n for n in self._loaded if n not in self._lazy)

    def __len__(self) -> int:
        return len(self._lazy.keys() | self._loaded.keys())

    def __contains__(self, name: object) -> bool:
        return name in self._lazy or name in self._loaded

    def names(self) -> list[str]:
        """The registered names (sorted where the registry says so), without importing any entry."""
        return sorted(self) if self.sort_names else list(self)

    def lookup(self, name: str) -> T:
        """The entry, or an InputError naming the known ones (user input reaches this)."""
        if name not in self:
            noun = self.kind.split(" ", 1)[1]
            raise InputError(f"unknown {noun} '{name}'; use one of: {', '.join(self.names())}")
        return self[name]
