"""Rules of the code base that no linter checks for us, read from the source with ``ast``."""

from __future__ import annotations

import ast
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_POSITIONAL = 5


def _sources() -> list[Path]:
    """Every Python file of the repository outside hidden folders (.venv, .git, caches) and build outputs."""
    out = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("build", "dist")]
        out += [Path(folder) / f for f in files if f.endswith(".py")]
    return sorted(out)


def _positional(call: ast.Call) -> int:
    return sum(1 for a in call.args if not isinstance(a, ast.Starred))


def _callee(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ast.unparse(f)


def _long_positional_calls(path: Path) -> list[str]:
    rel = path.relative_to(ROOT).as_posix()
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=rel)):
        if isinstance(node, ast.Call) and _positional(node) > MAX_POSITIONAL:
            out.append(f"{rel}:{node.lineno} {_callee(node)}(…) with {_positional(node)} positional arguments")
    return out


def test_starred_and_keyword_arguments_are_not_counted() -> None:
    tree = ast.parse("f(1, 2, 3, 4, 5, *rest, six=6)\ng(1, 2, 3, 4, 5, 6)")
    assert [_positional(n) for n in ast.walk(tree) if isinstance(n, ast.Call)] == [5, 6]


def test_no_call_passes_more_than_five_positional_arguments() -> None:
    sources = _sources()
    assert ROOT / "app.py" in sources and ROOT / "wif_core" / "__init__.py" in sources
    found = [line for p in sources for line in _long_positional_calls(p)]
    assert not found, "pass these by keyword (records with many fields: kw_only=True):\n" + "\n".join(found)
