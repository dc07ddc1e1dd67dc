"""Named registries (explainers, attribution methods, zoo estimators): one entry per name, one-line lookups."""

from __future__ import annotations

from typing import Generic, TypeVar

from wif_core.errors import InputError

T = TypeVar("T")


class Registry(dict[str, T], Generic[T]):
    """A dict of entries by name that refuses a second entry under a name and says what exists on a miss."""

    def __init__(self, kind: str, sort_names: bool = False) -> None:
        super().__init__()
        self.kind = kind  # e.g. "an attribution method": used in both messages
        self.sort_names = sort_names

    def add(self, name: str, entry: T, detail: str = "") -> T:
        """Register ``entry`` under ``name``; a duplicate is a programming error (ValueError)."""
        if name in self:
            raise ValueError(f"{self.kind} named '{name}' is already registered{detail}")
        self[name] = entry
        return entry

    def lookup(self, name: str) -> T:
        """The entry, or an InputError naming the known ones (user input reaches this)."""
        try:
            return self[name]
        except KeyError:
            names = sorted(self) if self.sort_names else list(self)
            noun = self.kind.split(" ", 1)[1]
            raise InputError(f"unknown {noun} '{name}'; use one of: {', '.join(names)}") from None
