"""The ``wif`` command: the parser and ``main`` in ``main.py``, one module per command group.

The library never imports this package; it imports the library, lazily inside each handler,
so ``wif --help`` answers without importing torch.
"""

from wif_core.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
