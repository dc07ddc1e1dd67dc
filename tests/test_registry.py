"""Registries: one table of lazy entries each; names list without imports, entries resolve to what they name."""

from __future__ import annotations

import subprocess
import sys

import pytest

from wif_core.errors import InputError
from wif_core.registry import Registry


class _Thing:
    name = "b"


def test_lazy_entries_list_without_importing_and_resolve_once() -> None:
    reg: Registry[object] = Registry("a thing", {"b": "test_registry:_Thing", "a": "json:loads"}, sort_names=True)
    assert list(reg) == ["b", "a"] and reg.names() == ["a", "b"] and len(reg) == 2 and "a" in reg
    assert reg["b"] is _Thing and reg.lookup("b") is _Thing and reg.reference("b") == "test_registry:_Thing"


def test_unknown_duplicate_and_misnamed_entries() -> None:
    reg: Registry[object] = Registry("a thing", {"b": "test_registry:_Thing", "c": "test_registry:_Thing"})
    with pytest.raises(InputError, match="unknown thing 'z'; use one of: b, c"):
        reg.lookup("z")
    with pytest.raises(KeyError):
        reg["z"]
    with pytest.raises(ValueError, match="already registered"):
        reg.add("b", object())
    with pytest.raises(ValueError, match="named 'b' but registered as a thing named 'c'"):
        reg["c"]
    reg.add("d", 4)
    assert list(reg) == ["b", "c", "d"] and reg["d"] == 4


def _builtin_registries() -> dict[str, Registry]:
    from wif_core.attribution import METHODS
    from wif_core.explainers import REGISTRY
    from wif_core.zoo import ESTIMATORS, TASKS

    return {"explainers": REGISTRY, "attribution methods": METHODS, "zoo estimators": ESTIMATORS, "zoo tasks": TASKS}


@pytest.mark.parametrize("which", ["explainers", "attribution methods", "zoo estimators", "zoo tasks"])
def test_every_builtin_entry_resolves_under_its_own_name(which: str) -> None:
    registry = _builtin_registries()[which]
    assert len(registry) > 0
    for name in registry:
        assert registry.reference(name) is not None, f"{name}: built-in entries are lazy references"
        assert getattr(registry[name], "name", name) == name


def test_listing_builtin_names_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from wif_core.attribution import METHODS\nfrom wif_core.explainers import REGISTRY\n"
        "from wif_core.zoo import ESTIMATORS, TASKS\n"
        "names = METHODS.names() + REGISTRY.names() + ESTIMATORS.names() + TASKS.names()\n"
        "print(' '.join(m for m in ('torch', 'sklearn', 'captum', 'sae_lens') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
