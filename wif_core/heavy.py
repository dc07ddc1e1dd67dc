"""One process-wide lock around the first imports of the heavy libraries (torch, transformers, sae-lens, …).

Python locks each module while it imports it, but two threads that enter one package's import
graph at different points (``sae_lens`` and ``sae_lens.training.sae_trainer``; two of
``transformers``' lazy attributes) can each hold a module the other needs. Python breaks that
cycle by handing one thread a half-initialised module, and ``from sae_lens import SAE`` fails
with ``ImportError: cannot import name …`` or ``_DeadlockError``. The app serves every browser
session from a thread of its own, so every import of a heavy library inside a function goes
through this lock (``tests/test_heavy_imports.py`` checks that for ``wif_core`` and the app).

Two rules keep the lock from ever hanging or slowing anyone down:

- hold it around import statements only, never around work: a thread then waits at most for
  another thread's import, and an uncontended lock costs nothing;
- never take it while a module is being imported (at a module's top level, or in a module
  ``__getattr__`` that from-imports trigger, such as ``wif_core.lazy``): a thread importing that
  module would wait for the lock while the lock's holder waits for that module, for good.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

# The packages whose imports go through the lock when a function imports them (tests/test_heavy_imports.py).
HEAVY = (
    "torch",
    "transformers",
    "sae_lens",
    "sklearn",
    "scipy",
    "umap",
    "captum",
    "sentence_transformers",
    "safetensors",
)

_LOCK = threading.RLock()  # re-entrant: a guarded import may run code that imports under the lock again


@contextmanager
def heavy_imports() -> Iterator[None]:
    """Hold the process-wide import lock: the import statements of heavy libraries go inside."""
    with _LOCK:
        yield


def _ready(module: ModuleType) -> bool:
    spec = getattr(module, "__spec__", None)
    return not getattr(spec, "_initializing", False)


def heavy_import(name: str) -> ModuleType:
    """``importlib.import_module(name)`` under the lock; a module already imported costs one dict look-up."""
    module = sys.modules.get(name)
    if module is not None and _ready(module):
        return module
    with _LOCK:
        return importlib.import_module(name)
