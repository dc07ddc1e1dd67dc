"""The installed distribution works away from the checkout: a wheel in a fresh virtual environment.

The wheel is built from the checkout without build isolation (no network), installed without
its dependencies into a new virtual environment that borrows this environment's packages (a
``.pth`` line naming our site-packages: its own ``.pth`` files, among them the editable wif,
are not read), and run from a directory outside the checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(p.name for p in (ROOT / "pages").glob("*.py") if p.name != "__init__.py")

APP_CHECK = """
import json, sys
from streamlit.testing.v1 import AppTest
from wif_core.paths import app_entry, page_dir

assert "site-packages" in app_entry().parts, app_entry()
report = {}
at = AppTest.from_file(str(app_entry()), default_timeout=120).run()
report["app"] = [str(e.value) for e in at.exception]
for page in json.loads(sys.argv[1]):
    at = AppTest.from_file(str(page_dir() / page), default_timeout=120).run()
    report[page] = [str(e.value) for e in at.exception] + [e.value for e in at.error if "Traceback" in e.value]
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """This checkout built as a wheel (without build isolation: nothing is downloaded)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("wif-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory) -> Path:
    """A new virtual environment with the wheel installed; returns its bin directory."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    inner = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(inner, "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
    )
    return venv / "bin"


def _outside(tmp_path: Path, *argv: str, env: dict[str, str] | None = None) -> str:
    """Run ``argv`` from a directory outside the checkout, without PYTHONPATH or WIF_DB; its stdout."""
    away = tmp_path / "elsewhere"
    away.mkdir(exist_ok=True)
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WIF_DB")}
    out = subprocess.run(
        list(argv), cwd=away, env={**clean, **(env or {})}, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_wheel_carries_every_package_the_app_and_the_shipped_zoo(wheel: Path) -> None:
    from wif_core.zoo.weights import available

    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {f"wif_core/{p.relative_to(ROOT / 'wif_core')}" for p in (ROOT / "wif_core").rglob("*.py")}
    modules |= {f"wif_ui/{p.relative_to(ROOT / 'ui')}" for p in (ROOT / "ui").rglob("*.py")}
    assert modules - names == set(), "modules missing from the wheel: add their packages to pyproject.toml"
    assert "wif_ui/app.py" in names
    assert {f"wif_ui/pages/{p}" for p in PAGES} <= names
    shipped = [n for n in available() if not n.startswith("handcrafted")]
    assert shipped and {f"wif_core/zoo/shipped/{n}.safetensors" for n in shipped} <= names
    assert not [n for n in names if n.startswith(("tests/", "bench/", "data/", "ui/", "pages/"))]


def test_installed_wif_is_the_wheel_and_imports_no_torch(installed: Path, tmp_path: Path) -> None:
    code = "import sys, wif_core; wif_core.open_store; assert 'torch' not in sys.modules; print(wif_core.__file__)"
    where = _outside(tmp_path, str(installed / "python"), "-c", code).strip()
    assert not Path(where).is_relative_to(ROOT) and "site-packages" in where


def test_installed_zoo_list_finds_the_shipped_models(installed: Path, tmp_path: Path) -> None:
    rows = json.loads(_outside(tmp_path, str(installed / "wif"), "zoo", "list", "--json"))
    names = {r["name"] for r in rows}
    assert {"2nd_argmax_d2_n2", "2nd_argmax_d16_n10", "handcrafted_2nd_argmax_n2"} <= names
    m = next(r for r in rows if r["name"] == "2nd_argmax_d16_n10")
    assert 0.9 < m["accuracy"] < 1


def test_installed_app_runs_every_page_outside_the_checkout(
    installed: Path, tmp_path: Path, synthetic_db: Path
) -> None:
    out = _outside(
        tmp_path,
        str(installed / "python"),
        "-c",
        APP_CHECK,
        json.dumps(PAGES),
        env={"WIF_DB": str(synthetic_db)},
    )
    report = json.loads(out.strip().splitlines()[-1])
    assert set(report) == {"app", *PAGES}
    assert {k: v for k, v in report.items() if v} == {}
