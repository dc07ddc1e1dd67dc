"""App tier: the Clusters page under AppTest, on the synthetic store (no model)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from page_runner import run_page
from store_factory import COLLECTED_RUN, IMPORTED_RUN, N_ITEMS, SIGNAL_LAYER
from streamlit.testing.v1 import AppTest
from threadpoolctl import threadpool_limits

import wif_core.clusters.run as cluster_module

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "pages" / "clusters.py")
N_FAILED = N_ITEMS // 2 - 1  # odd items fail; item 39 repeats item 37 and is left out

pytestmark = pytest.mark.usefixtures("fresh_st_caches")


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with threadpool_limits(1):
        yield


def _run(**query: Any) -> AppTest:
    return run_page(PAGE, **query)


def _spec(at: AppTest) -> dict[str, Any]:
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    return json.loads(charts[0].proto.spec)


def _rates(at: AppTest) -> list[float]:
    """Each card's failure rate, read from its expander's title ('… failure rate 60% [12%, 94%] …')."""
    return [float(e.label.split("failure rate ")[1].split("%")[0]) / 100 for e in at.expander]


def test_page_draws_the_map_and_the_cards_of_the_failure_clusters(wif_db: Path) -> None:
    at = _run(run=COLLECTED_RUN)
    assert not at.exception and not at.error
    assert [t.value for t in at.title] == ["Clusters"]
    assert at.selectbox(key="space").value == "activations" and at.selectbox(key="layer").value == SIGNAL_LAYER
    assert at.selectbox(key="site").value == "last" and at.query_params["mode"] == "failures"
    summary = next(m.value for m in at.markdown if "clustered in" in m.value)
    assert f"**{N_FAILED} failed items** clustered in activations at layer {SIGNAL_LAYER}, site last" in summary
    traces = _spec(at)["data"]
    k = len(at.expander)
    assert k >= 2 and [t["name"].split(" (")[0] for t in traces] == [f"cluster {c}" for c in range(k)]
    assert sum(int(t["name"].split("(")[1].rstrip(")")) for t in traces) == N_ITEMS - 1  # every item on the map
    hover = traces[0]["customdata"][0]
    assert hover[0].startswith("gen-physical-") and "Which is" in hover[4]  # item id and its text on hover
    assert "circle-open" in traces[0]["marker"]["symbol"]  # successes placed near the failure clusters: hollow
    labels = [e.label for e in at.expander]
    assert labels[0].startswith("Cluster 0 · ") and "failure rate" in labels[0]
    sizes = [int(x.split(" · ")[1].split()[0]) for x in labels]
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) == N_FAILED
    assert {m.label for m in at.metric} >= {"Items clustered", "Failure rate", "vs base rate"}
    words = [m.value for m in at.markdown if m.value.startswith("**Distinguishing words**")]
    assert words and any(w in words[0] for w in ("kettle", "hammer"))  # the two tools of the synthetic items
    assert any("Over-represented generator factors" in m.value for m in at.markdown)  # a generated task
    assert any("adjusted mutual information" in m.value.lower() for m in at.markdown)
    links = [m.value for m in at.markdown if "](" in m.value]
    assert any(v.startswith("[browser](failures?run=") and "&item=gen-physical-" in v for v in links)
    assert any(v.startswith("[attribution](attribution?run=") for v in links)
    assert len(at.get("download_button")) == 2  # the map's data (CSV) and the whole result (JSON)
    assert list((wif_db.parent / f"{wif_db.name}.clusters").glob("*.json"))  # cached beside the store


def test_mode_all_ranks_clusters_and_colour_by_outcome(wif_db: Path) -> None:
    at = _run(run=COLLECTED_RUN, mode="all", k="3")
    assert not at.exception and not at.error
    assert len(at.expander) == 3 and at.subheader[0].value == "Clusters, by failure rate"
    rates = _rates(at)
    assert rates == sorted(rates, reverse=True)
    at.radio(key="colour").set_value("outcome").run()
    names = [t["name"] for t in _spec(at)["data"]]
    assert names == [f"failed ({N_FAILED})", f"correct ({N_ITEMS - 1 - N_FAILED})"]
    at.radio(key="outcome").set_value("failed").run()
    assert [t["name"] for t in _spec(at)["data"]] == [f"failed ({N_FAILED})"]
    biggest = int(at.slider(key="min_size").max)
    at.slider(key="min_size").set_value(biggest).run()  # only the largest cluster(s) stay, on the map and as cards
    assert not at.exception and 1 <= len(at.expander) < 3
    assert all(f" · {biggest} items · " in e.label for e in at.expander)
    assert sum(int(t["name"].split("(")[1].rstrip(")")) for t in _spec(at)["data"]) <= biggest


def test_a_second_render_reads_the_cached_result(wif_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import streamlit as st

    first = _run(run=COLLECTED_RUN, space="sae", layer=str(SIGNAL_LAYER))
    assert not first.exception and not first.error
    assert any("SAE codes at layer" in m.value for m in first.markdown)
    assert first.dataframe and {"feature", "mean_in", "mean_out"} <= set(first.dataframe[0].value)  # top features
    st.cache_data.clear()
    st.cache_resource.clear()

    def no_features(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the page computed clusters already cached beside the store")

    monkeypatch.setattr(cluster_module, "build_space", no_features)
    again = _run(run=COLLECTED_RUN, space="sae", layer=str(SIGNAL_LAYER))
    assert not again.exception and [e.label for e in again.expander] == [e.label for e in first.expander]


def test_spaces_a_run_lacks_are_explained_not_crashed(wif_db: Path) -> None:
    at = _run(run=IMPORTED_RUN, space="attribution")
    assert not at.exception and not at.get("plotly_chart")
    assert "(not available)" in at.selectbox(key="space").format_func("attribution")
    assert len(at.info) == 1 and f"wif attribute --run {IMPORTED_RUN}" in at.info[0].value
    at = _run(run=COLLECTED_RUN, space="attribution", mode="all", k="2")  # the collected run has attributions
    assert not at.exception and not at.info and len(at.expander) == 2
    assert any("(**gold** tier" in m.value and "attribution profiles" in m.value for m in at.markdown)
    assert sorted(_rates(at)) == [0.0, 1.0]  # failures' profiles peak late, successes' early
    at = _run(run=IMPORTED_RUN, space="activations")  # outcomes only
    assert not at.exception and "has no activations" in at.info[0].value and "--space text" in at.info[0].value
    at = _run(run=IMPORTED_RUN)  # opens on the first space the run has: its text, embedded by MiniLM
    assert not at.exception and not at.info and at.selectbox(key="space").value == "text"
    assert any("text embeddings (all-MiniLM-L6-v2)" in m.value for m in at.markdown) and at.get("plotly_chart")
    at = _run(run=COLLECTED_RUN, k="40")  # a k the page does not offer falls back to auto
    assert not at.exception and at.selectbox(key="k").value == "auto"


def test_through_the_apps_navigation_cards_link_to_the_browser_and_attribution(wif_db: Path) -> None:
    from wif_ui.app import PAGES

    app = ROOT / "app.py"
    if "clusters.py" not in [script for script, *_ in PAGES]:
        pytest.skip("the Clusters page is not in the app's navigation yet")
    at = AppTest.from_file(str(app), default_timeout=120).run()
    at.query_params.update({"run": COLLECTED_RUN})
    at.switch_page("pages/clusters.py").run()
    assert not at.exception and [t.value for t in at.title] == ["Clusters"]
    links = at.get("page_link")
    assert {link.proto.page for link in links} == {"failures", "attribution"}
    assert all(link.proto.query_string.startswith(f"run={COLLECTED_RUN}&item=gen-physical-") for link in links)
