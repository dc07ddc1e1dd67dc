"""App tier: the SAE features page under AppTest, on the synthetic store (its collected run has a tiny SAE)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from page_runner import run_page
from store_factory import COLLECTED_RUN, IMPORTED_RUN, SAE_WIDTH, SIGNAL_LAYER, make_synthetic_store
from streamlit.testing.v1 import AppTest

import wif_core.sae.load as sae_load

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
PAGE, APP = str(ROOT / "pages" / "sae.py"), str(ROOT / "app.py")


pytestmark = pytest.mark.usefixtures("fresh_st_caches")


def _run(script: str = PAGE, **query: Any) -> AppTest:
    return run_page(script, **query)


def test_sae_page_shows_the_diff_table_and_a_feature_card(wif_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_sae_lens(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the page loaded the SAE although its codes are cached beside the store")

    monkeypatch.setattr(sae_load, "load_sae", no_sae_lens)
    at = _run(run=COLLECTED_RUN)
    assert not at.exception and not at.error
    assert [t.value for t in at.title] == ["SAE features"]
    table = at.dataframe[0].value
    assert {"feature", "freq_fail", "freq_success", "effect", "auc", "ci_low", "ci_high", "auc_test"} <= set(table)
    assert 0 < len(table) <= SAE_WIDTH and table["feature"].between(0, SAE_WIDTH - 1).all()
    assert table["auc"].sub(0.5).abs().is_monotonic_decreasing  # ranked by |AUC − 0.5|
    assert (table["ci_low"] <= table["auc"]).all() and (table["auc"] <= table["ci_high"]).all()
    assert table["auc"].iloc[0] > 0.8  # the synthetic run's failure signal sits at this layer
    first = int(table["feature"].iloc[0])
    assert at.selectbox(key="feature_pick").value == first and at.query_params["feature"] == str(first)
    assert [h.value for h in at.subheader][-1] == f"Feature {first}"
    cards = {m.label: m.value for m in at.metric}
    assert set(cards) == {"AUC (train)", "AUC (test)", "Fires on failures", "Fires on successes", "Effect (d)"}
    assert float(cards["AUC (train)"]) == pytest.approx(table["auc"].iloc[0], abs=5e-4)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [t["name"].split()[0] for t in spec["data"]] == ["failure", "success"]  # the activation histograms
    html = [m.value for m in at.markdown if "<span" in m.value]
    assert html and "background: rgba(239, 108, 0" in html[0]  # firing tokens highlighted
    assert any(f"run={COLLECTED_RUN}" in m.value and "item=" in m.value for m in at.markdown)  # links to the browser


def test_picking_a_feature_and_ranking_by_effect(wif_db: Path) -> None:
    at = _run(run=COLLECTED_RUN, by="effect")
    assert not at.exception
    table = at.dataframe[0].value
    assert table["effect"].abs().is_monotonic_decreasing
    other = int(table["feature"].iloc[1])
    at.selectbox(key="feature_pick").set_value(other).run()
    assert not at.exception and at.query_params["feature"] == str(other)
    assert [h.value for h in at.subheader][-1] == f"Feature {other}"
    again = _run(**dict(at.query_params))  # a shared link opens the same feature
    assert again.selectbox(key="feature_pick").value == other and again.selectbox(key="by").value == "effect"


def test_sae_page_through_the_apps_navigation_links_items(wif_db: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.query_params.update({"run": COLLECTED_RUN, "layer": str(SIGNAL_LAYER)})
    at.switch_page("pages/sae.py").run()
    assert not at.exception and [t.value for t in at.title] == ["SAE features"]
    links = at.get("page_link")  # one link per top-activating context, to the item in the failure browser
    assert links and all(link.proto.page == "failures" for link in links)
    assert all(link.proto.query_string.startswith(f"run={COLLECTED_RUN}&item=") for link in links)


def test_runs_without_an_sae_get_one_line_telling_how(wif_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    at = _run(run=IMPORTED_RUN)  # outcomes only: no token activations
    assert not at.exception and not at.dataframe
    assert len(at.info) == 1 and "--token-layers" in at.info[0].value and "\n" not in at.info[0].value

    bare = tmp_path / "bare.duckdb"
    make_synthetic_store(bare, with_sae=False)
    monkeypatch.setenv("WIF_DB", str(bare))
    at = _run(run=COLLECTED_RUN)
    assert not at.exception and not at.dataframe
    message = at.info[0].value
    assert f"wif sae train --db {bare} --run {COLLECTED_RUN} --layer {SIGNAL_LAYER}" in message and "\n" not in message
