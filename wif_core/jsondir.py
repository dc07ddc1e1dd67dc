"""JSON: the one cleaner every JSON document goes through, and side directories of documents beside a store."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Self

from wif_core.paths import SideDir, beside

log = logging.getLogger(__name__)


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: numpy → Python, NaN and ±inf → None, tuples → lists, keys → str,
    dates → ISO strings; anything else JSON cannot hold becomes its ``str``."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int | bool):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


class JsonDir:
    """``<store>.<kind>/KEY.json``, written atomically; a missing or unwritable directory only costs time.

    The app opens stores read-only, so results it computes live here, not in the store.
    """

    kind: SideDir  # which of the store's side directories (wif_core.paths)

    def __init__(self, directory: Path | None, writable: bool = True) -> None:
        self.directory = directory
        self.writable = writable  # False: read what is there, write nothing (a report built in the app)

    @classmethod
    def beside(cls, store_path: str | Path, writable: bool = True) -> Self:
        return cls(beside(store_path, cls.kind), writable)

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
        if self.directory is None or not self.writable:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self.directory / f"{key}.tmp"
            tmp.write_text(json.dumps(document, default=float))
            tmp.replace(self.directory / f"{key}.json")
        except OSError as exc:
            log.warning("cache %s not written (%s)", self.directory, exc)
