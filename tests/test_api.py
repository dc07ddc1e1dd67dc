"""The public API: ``import wif_core`` is light, names what it offers, and the README's snippet runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import wif_core

ROOT = Path(__file__).resolve().parents[1]


def readme_snippet() -> str:
    """The ```python block of the README's "From Python" section."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## From Python") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_every_public_name_resolves_and_is_documented() -> None:
    assert len(wif_core.__all__) == len(set(wif_core.__all__))
    for name in wif_core.__all__:
        assert getattr(wif_core, name) is not None
        assert name in wif_core.__doc__, f"{name} is exported but the package docstring does not mention it"
    with pytest.raises(AttributeError):
        wif_core.no_such_verb  # noqa: B018


def test_the_readme_snippet_is_short_and_uses_only_the_api() -> None:
    code = readme_snippet()
    lines = [line for line in code.splitlines() if line.strip()]
    assert len(lines) <= 8
    used = set(re.findall(r"\bwif\.(\w+)", code))
    assert used and used <= set(wif_core.__all__)


def test_open_store_runs_and_zoo_verbs_without_a_language_model(tmp_path: Path) -> None:
    with wif_core.open_store(tmp_path / "s.duckdb", write=True) as store:
        assert wif_core.runs(store) == []
    acc = wif_core.zoo_evaluate("handcrafted_2nd_argmax_n2", 20_000)
    assert acc.accuracy == 1.0 and acc.n == 20_000 and acc.ci_low < 1.0
    with pytest.raises(wif_core.StoreError, match="no store at"):
        wif_core.open_store(tmp_path / "absent.duckdb")


@pytest.mark.model
def test_the_readme_snippet_runs_as_written(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", readme_snippet()], cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, out.stderr[-3000:]
    line = out.stdout.strip().splitlines()[-1]
    m = re.fullmatch(r"probe L18 last\S*: AUC (\d\.\d{3}) \[(\d\.\d{3}), (\d\.\d{3})\], n=(\d+)", line)
    assert m, line
    auc, low, high, n = float(m[1]), float(m[2]), float(m[3]), int(m[4])
    assert low <= auc <= high and n > 0
    assert (tmp_path / "data" / "notebook.duckdb").is_file()
