"""Package attributes imported on first use, so `wif --help` does not pay for torch, captum or scikit-learn.

The ``__getattr__`` made here runs inside other imports (``from wif_core.clusters import cluster_run``
at a module's top level), so it does not take ``wif_core.heavy``'s lock: waiting for it there could
hang (see that module). The app imports a page's modules under the lock before running the page.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, table: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``name`` comes from ``package.<table[name]>`` when first asked for."""

    def __getattr__(name: str) -> Any:
        if name in table:
            return getattr(importlib.import_module(f"{package}.{table[name]}"), name)
        raise AttributeError(f"module '{package}' has no attribute '{name}'")

    return __getattr__
