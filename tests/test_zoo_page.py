"""App tier: the zoo page under AppTest, on the shipped models, with and without a store."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from page_runner import run_page
from streamlit.testing.v1 import AppTest

from wif_core.zoo.analysis import curve_path
from wif_core.zoo.deductive import deduce
from wif_core.zoo.weights import load

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "pages" / "zoo.py")

pytestmark = pytest.mark.usefixtures("fresh_st_caches")


def _run(**query: Any) -> AppTest:
    return run_page(PAGE, **query)


@pytest.fixture
def no_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    missing = tmp_path / "absent.duckdb"
    monkeypatch.setenv("WIF_DB", str(missing))
    return missing


def _array(value: Any) -> np.ndarray:
    """A plotly spec array: a list, or plotly's typed-array encoding (dtype, base64 bytes, shape)."""
    if isinstance(value, dict):
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = [int(s) for s in str(value.get("shape", len(flat))).split(",")]
        return flat.reshape(shape)
    return np.asarray(value)


def _specs(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_zoo_page_shows_m16_10_without_any_store(no_store: Path) -> None:
    at = _run()
    assert not at.exception and not at.error
    assert [t.value for t in at.title] == ["Zoo"]
    assert (
        at.selectbox(key="zoo_model").value == "2nd_argmax_d16_n10" and at.query_params["model"] == "2nd_argmax_d16_n10"
    )
    cards = {m.label: m.value for m in at.metric}
    recorded = load("2nd_argmax_d16_n10").spec.meta["accuracy"]
    assert float(cards["Accuracy"]) == pytest.approx(recorded, abs=1e-5) and 0.85 < recorded < 0.97
    assert cards["ARC's figure"] == "94.8–95.3%" and cards["Deductive"] == "—"
    specs = _specs(at)
    heat = specs[0]["data"]
    assert [t["type"] for t in heat] == ["heatmap"] * 3
    assert set(np.abs(_array(heat[0]["z"])).ravel()) == {1.0}  # W_hi rescaled to ±1
    assert _array(heat[1]["z"]).shape == (16, 16)
    assert int(cards["Failures"].replace(",", "")) > 20  # a few percent of 2,000 fresh inputs
    table = at.dataframe[0].value
    assert (table["true"] != table["predicted"]).all()
    bars = specs[1]["data"][0]
    assert len(_array(bars["y"])) == 10 and set(bars["marker"]["color"]) >= {"#2e7d32", "#c62828"}
    relevance = _array(specs[2]["data"][0]["y"])  # gradient × input per position, exact for the bias-free RNN
    why = next(m.value for m in at.markdown if m.value.startswith("**Why this pick**"))
    delta = float(why.split("= ")[2].split()[0])
    assert len(relevance) == 10 and relevance.sum() == pytest.approx(delta, abs=1e-3) and delta >= 0
    if curve_path("2nd_argmax_d16_n10").exists():
        curve = specs[3]
        assert {t["name"].split()[0] for t in curve["data"]} >= {"sampling", "importance"}
        assert curve["layout"]["xaxis"]["type"] == "log" and curve["layout"]["yaxis"]["type"] == "log"


def test_m22_shows_its_exact_deductive_accuracy_and_picking_a_failure(no_store: Path) -> None:
    at = _run(model="2nd_argmax_d2_n2")
    assert not at.exception
    cards = {m.label: m.value for m in at.metric}
    assert float(cards["Deductive"]) == pytest.approx(deduce(load("2nd_argmax_d2_n2")).accuracy, abs=1e-7)
    at.selectbox(key="zoo_samples").set_value(50_000).run()
    assert not at.exception
    n_fail = int({m.label: m.value for m in at.metric}["Failures"].replace(",", ""))
    assert 0 < n_fail < 30  # about 1 in 13,000 of 50,000


def test_the_exact_handcrafted_model_has_no_failures(no_store: Path) -> None:
    at = _run(model="handcrafted_2nd_argmax_n2")
    assert not at.exception
    cards = {m.label: m.value for m in at.metric}
    assert cards["Accuracy"] == "1.00000" and cards["Deductive"] == "1.0000000"
    assert any("No failures" in i.value for i in at.info)


def test_a_zoo_run_in_the_store_is_linked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wif_core.store import Store
    from wif_core.zoo.runs import store_run

    db = tmp_path / "zoo.duckdb"
    with Store.open(db, write=True) as store:
        run_id = store_run(store, load("handcrafted_2nd_argmax_n10"), 300).run_id
    monkeypatch.setenv("WIF_DB", str(db))
    at = _run(model="handcrafted_2nd_argmax_n10")
    assert not at.exception
    links = [m.value for m in at.markdown if "failures?run=" in m.value]  # page_link under app.py's navigation
    assert len(links) == 1 and f"failures?run={run_id})" in links[0]


def test_m22_page_accounts_surprise_term_by_term(no_store: Path) -> None:
    at = _run(model="2nd_argmax_d2_n2")
    assert not at.exception
    cards = {m.label: m.value for m in at.metric}
    total = float(cards["Total surprise"].split()[0])
    assert 36 < total < 44 and cards["Bits in the weights"] == "320"  # ARC: about 40 bits
    terms = next(d.value for d in at.dataframe if "bits" in d.value.columns)
    assert {"signs", "magnitudes", "coefficient comparisons", "near-equalities", "observation"} <= set(terms["group"])


def test_m43_page_deduces_by_regions_behind_a_button(no_store: Path) -> None:
    at = _run(model="2nd_argmax_d4_n3")
    assert not at.exception and "Total surprise" not in {m.label for m in at.metric}
    at.button(key="zoo_surprise").click().run()
    assert not at.exception
    cards = {m.label: m.value for m in at.metric}
    assert cards["Bits in the weights"] == "1,024" and float(cards["Observation"].split()[0]) == 0.0
    assert any("regions" in c.value and "LPs" in c.value for c in at.caption)
