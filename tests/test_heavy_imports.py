"""Heavy imports from several threads at once (issue 12, item 2): one lock, used by every lazy import.

Several browser sessions reaching the SAE page at once imported sae-lens from two threads and one
of them got ``ImportError: cannot import name 'AutoTokenizer' from 'transformers'``. Every import
of a heavy library inside a function, in the library and in the app, goes through
``wif_core.heavy``'s lock; these tests check that it does, and that the guarded paths hold.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from wif_core.heavy import HEAVY, heavy_import, heavy_imports

ROOT = Path(__file__).resolve().parents[1]
# The CLI runs one command in one thread; the app (ui/, pages/) and the library serve threads.
CHECKED = [p for d in ("wif_core", "ui", "pages") for p in (ROOT / d).rglob("*.py") if "cli" not in p.parts]


def _unguarded(path: Path) -> list[str]:
    """``file:line`` of each import inside a function, not under ``heavy_imports()``, of a heavy package, or in
    the app (ui/, pages/) of a ``wif_core`` module (many of which import torch or scikit-learn when imported)."""
    heavy = (*HEAVY, "wif_core") if path.parts[len(ROOT.parts)] in ("ui", "pages") else HEAVY
    tree = ast.parse(path.read_text())
    found: list[str] = []

    def visit(node: ast.AST, in_function: bool, guarded: bool) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            in_function = True
        if isinstance(node, ast.With | ast.AsyncWith) and any(
            "heavy_imports" in ast.unparse(item.context_expr) for item in node.items
        ):
            guarded = True
        if isinstance(node, ast.Import | ast.ImportFrom) and in_function and not guarded:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if not getattr(node, "level", 0) and any(n.split(".")[0] in heavy for n in names):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
        for child in ast.iter_child_nodes(node):
            visit(child, in_function, guarded)

    visit(tree, False, False)
    return found


def test_every_lazy_heavy_import_is_guarded() -> None:
    found = [where for path in CHECKED for where in _unguarded(path)]
    assert not found, f"import these under `with heavy_imports():` (wif_core.heavy): {found}"


def test_importlib_imports_go_through_the_lock() -> None:
    """Registries import their entries by name at run time: through ``heavy_import``, not ``importlib``.

    ``wif_core.lazy`` is the exception by design: its ``__getattr__`` runs inside other imports,
    where waiting for the lock could hang (see ``wif_core.heavy``).
    """
    allowed = {ROOT / "wif_core" / "heavy.py", ROOT / "wif_core" / "lazy.py"}
    found = [
        str(p.relative_to(ROOT)) for p in CHECKED if p not in allowed and "importlib.import_module(" in p.read_text()
    ]
    assert not found


def test_heavy_import_returns_the_module_and_nests() -> None:
    with heavy_imports(), heavy_imports():  # re-entrant: a guarded import may import under the lock again
        assert heavy_import("json") is json


RACE = textwrap.dedent(
    """
    import json, sys, threading
    import numpy as np
    from wif_core.errors import InputError

    def load():  # wif_core.sae.load: `from sae_lens import SAE` (+ the pretrained directory)
        from wif_core.sae.load import load_sae
        load_sae("no-such-release:layer_0")

    def train():  # wif_core.sae.train: `from sae_lens.training.sae_trainer import SAETrainer`
        from wif_core.sae.train import TrainConfig, fit_sae
        fit_sae(None, np.zeros((1, 8), dtype=np.float32), TrainConfig())

    errors, start = [], threading.Barrier(4)

    def call(fn):
        start.wait()
        try:
            fn()
        except InputError:
            pass  # the one-line refusal each call ends in, once sae-lens has imported
        except BaseException as exc:
            errors.append(f"{fn.__name__}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=call, args=(fn,)) for fn in (load, train, load, train)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print(json.dumps(errors))
    """
)


@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_four_threads_importing_sae_lens_at_once_in_a_fresh_process(attempt: int) -> None:
    """Two threads load an SAE and two train one, all first in a fresh process: no import error."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", RACE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
