"""JSON documents in a side directory beside a store: result caches that only ever cost time when missing."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Self

log = logging.getLogger(__name__)


class JsonDir:
    """``<store>.<suffix>/KEY.json``, written atomically; a missing or unwritable directory only costs time.

    The app opens stores read-only, so results it computes live here, not in the store.
    """

    suffix = ".json-cache"

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    @classmethod
    def beside(cls, store_path: str | Path) -> Self:
        path = Path(store_path)
        return cls(path.with_name(path.name + cls.suffix))

    def read(self, key: str) -> Any | None:
        """The parsed document, or None when absent or unreadable."""
        if self.directory is None:
            return None
        try:
            return json.loads((self.directory / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None

    def write(self, key: str, document: Any) -> None:
        """Write through a temporary file, so a reader never sees half a document."""
        if self.directory is None:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self.directory / f"{key}.tmp"
            tmp.write_text(json.dumps(document, default=float))
            tmp.replace(self.directory / f"{key}.json")
        except OSError as exc:
            log.warning("cache %s not written (%s)", self.directory, exc)
