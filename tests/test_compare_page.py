"""App tier: the explainer comparison and paper reproduction pages under AppTest, on the synthetic store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from page_runner import run_page
from store_factory import COLLECTED_RUN, IMPORTED_RUN, OTHER_RUN, make_synthetic_store
from streamlit.testing.v1 import AppTest

from wif_core.explainers import REGISTRY
from wif_core.explainers import evaluate as ev
from wif_core.explainers.data import RunData
from wif_core.store import Store

ROOT = Path(__file__).resolve().parents[1]
COMPARE, REPRODUCE = (str(ROOT / p) for p in ("pages/compare.py", "pages/reproduce.py"))
DEFAULT_LABELS = ["probe-paper L2 last", "probe-paper L4 last", "surface", "text", "confidence", "label-prior"]


pytestmark = pytest.mark.usefixtures("fresh_st_caches")


_run = run_page


def _variant_ids(db: Path, run_id: str) -> dict[str, list[str]]:
    """The ``?ex=`` ids of every variant that applies to a run, by explainer name."""
    from ui.explain import Variant

    with Store.open(db) as store:
        found = ev.variants(RunData.load(store, run_id))
    out: dict[str, list[str]] = {}
    for name, settings in found:
        out.setdefault(name, []).append(Variant(name, json.dumps(settings, sort_keys=True)).id)
    return out


def _table(at: AppTest) -> Any:
    return at.dataframe[0].value


def _offered(at: AppTest) -> list[str]:
    return [option for ms in at.multiselect for option in ms.options]


def _trace_names(at: AppTest, n: int) -> list[str]:
    return [t.get("name", "") for t in json.loads(at.get("plotly_chart")[n].proto.spec)["data"]]


def test_compare_page_opens_with_the_default_selection(wif_db: Path) -> None:
    at = _run(COMPARE)
    assert not at.exception and not at.error
    table = _table(at)
    assert sorted(table["label"]) == sorted(DEFAULT_LABELS)
    assert table["tier"].tolist() == ["input"] * 4 + ["output", "gold"]  # input tier first: the paper's question
    assert table["role"].tolist() == ["headline"] * 4 + ["baseline", "diagnostic"]
    assert table["AUC"].between(0, 1).all() and (table["CI low"] <= table["AUC"]).all()
    assert (table["AUC"] <= table["CI high"]).all() and (table["CI level"] == 0.999).all()
    best = table["AUC"].idxmax()
    assert table.loc[best, "Δ vs best"] == 0 and (table["Δ vs best"] <= 1e-12).all()
    assert table.drop(index=best)["p (paired)"].between(0, 1).all()
    assert len(at.get("plotly_chart")) == 2  # ROC curves and AUC by layer
    assert "chance (AUC 0.5)" in _trace_names(at, 0)
    assert _trace_names(at, 1) == ["probe-paper · last"]  # one line per site, both layers on it
    assert "Internals − text (ΔAUC)" in [m.label for m in at.metric]
    assert "probe-paper L4 last" in " ".join(m.value for m in at.markdown)  # the signal sits at layer 4
    assert len(at.expander) == len(table)
    assert [len(ms.value) for ms in at.multiselect] == [4, 1, 1]
    assert at.query_params["run"] == COLLECTED_RUN and len(at.query_params["ex"]) == 6


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_each_explainer_fits_and_shows_its_tier(name: str, wif_db: Path) -> None:
    ids = _variant_ids(wif_db, COLLECTED_RUN)
    assert name in ids, f"the synthetic collected run should support {name}"
    at = _run(COMPARE, run=COLLECTED_RUN, ex=ids[name][0])
    assert not at.exception and not at.error
    table = _table(at)
    assert len(table) == 1
    row = table.iloc[0]
    assert row["label"].split()[0] == name and row["tier"] == REGISTRY[name].tier
    assert 0 <= row["AUC"] <= 1 and row["n_test"] > 0
    assert any(name in e.label and REGISTRY[name].tier in e.label for e in at.expander)


def test_only_applicable_explainers_are_offered(wif_db: Path) -> None:
    at = _run(COMPARE, run=COLLECTED_RUN)
    assert len(_offered(at)) == sum(map(len, _variant_ids(wif_db, COLLECTED_RUN).values())) == 38
    assert all(o.endswith((" · input", " · output", " · gold")) for o in _offered(at))  # tier in every label

    # outcomes only: no activations (no probes) and no choice scores (no confidence)
    paper_probe = _variant_ids(wif_db, COLLECTED_RUN)["probe-paper"][0]
    at = _run(COMPARE, run=IMPORTED_RUN, ex=paper_probe)
    assert not at.exception and not at.error
    assert sorted(_offered(at)) == ["cluster text · input", "label-prior · gold", "surface · input", "text · input"]
    assert [ms.label for ms in at.multiselect] == ["input tier · headline", "gold tier · diagnostic"]
    assert sorted(_table(at)["label"]) == ["label-prior", "surface", "text"]  # the linked probe is not fitted
    assert "Internals − text (ΔAUC)" not in [m.label for m in at.metric]
    assert len(at.get("plotly_chart")) == 1  # no layered explainer: no AUC-by-layer chart


def test_switching_runs_starts_from_the_new_runs_defaults(wif_db: Path) -> None:
    at = _run(COMPARE, run=COLLECTED_RUN, ex=_variant_ids(wif_db, COLLECTED_RUN)["probe"][:2])
    assert len(_table(at)) == 2
    at.selectbox(key="run_pick").set_value(IMPORTED_RUN).run()
    assert not at.exception and at.query_params["run"] == IMPORTED_RUN
    assert sorted(_table(at)["label"]) == ["label-prior", "surface", "text"]
    assert sorted(at.query_params["ex"]) == ["label-prior", "surface", "text"]


def test_a_run_that_cannot_be_evaluated_shows_a_one_line_error(wif_db: Path) -> None:
    for script in (COMPARE, REPRODUCE):
        at = _run(script, run=OTHER_RUN)
        assert not at.exception
        assert len(at.error) == 1
        message = at.error[0].value
        assert OTHER_RUN in message and "at least 10" in message and "\n" not in message
        assert not at.multiselect and not at.get("plotly_chart")


def test_query_params_round_trip(wif_db: Path) -> None:
    ids = _variant_ids(wif_db, COLLECTED_RUN)
    chosen = [*ids["probe"], ids["cross-model"][0]]
    at = _run(COMPARE, run=COLLECTED_RUN, ex=chosen, layer="4", site="mean")
    assert not at.exception
    assert sorted(at.query_params["ex"]) == sorted(chosen)
    assert at.selectbox(key="layer").value == 4 and at.selectbox(key="site").value == "mean"
    assert at.query_params["layer"] == "4" and at.query_params["site"] == "mean"
    roc = _trace_names(at, 0)  # the ROC curves drawn: layered ones at L4 · mean only, the others always
    assert any(t.startswith("probe L4 mean") for t in roc) and any(t.startswith("cross-model") for t in roc)
    assert not any(t.startswith(("probe L2", "probe L4 last", "probe L4 choice")) for t in roc)
    assert len(_table(at)) == len(chosen)  # the table keeps every fitted result
    assert sorted(_trace_names(at, 1)) == ["probe · choice", "probe · last", "probe · mean"]

    at.multiselect(key="pick_output").set_value([ids["confidence"][0]]).run()
    at.selectbox(key="site").set_value("all").run()
    shared = dict(at.query_params)
    assert ids["confidence"][0] in shared["ex"] and shared["site"] == "all"
    again = _run(COMPARE, **shared)  # the shared link opens the same view
    assert sorted(_table(again)["label"]) == sorted(_table(at)["label"])
    assert again.selectbox(key="layer").value == 4 and dict(again.query_params) == shared


def test_second_render_fits_nothing(wif_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = ev.evaluate

    def counting(data: RunData, name: str, **kwargs: Any) -> ev.ExplainResult:
        calls.append(name)
        return real(data, name, **kwargs)

    monkeypatch.setattr(ev, "evaluate", counting)
    at = _run(COMPARE, run=COLLECTED_RUN)
    assert len(calls) == len(DEFAULT_LABELS)
    aucs = _table(at).set_index("label")["AUC"]
    at.run()  # the same session again: st.cache_data answers
    assert len(calls) == len(DEFAULT_LABELS) and not at.exception

    results = wif_db.with_name(wif_db.name + ".results")
    assert len(list(results.glob("*.json"))) >= len(DEFAULT_LABELS)

    def no_fit(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("refitted although the result is cached on disk")

    real_get = ev.get_explainer
    monkeypatch.setattr(ev, "get_explainer", lambda name: type(name, (real_get(name),), {"fit": no_fit}))
    st.cache_data.clear()
    st.cache_resource.clear()
    fresh = _run(COMPARE, run=COLLECTED_RUN)  # a new process would start here: the disk cache answers
    assert not fresh.exception
    assert _table(fresh).set_index("label")["AUC"].equals(aucs)


def test_reproduce_page_sets_the_run_beside_the_paper(wif_db: Path) -> None:
    at = _run(REPRODUCE, run=COLLECTED_RUN)
    assert not at.exception and not at.error
    table = _table(at)
    assert table["layer"].tolist() == [2, 4] and table["relative_depth"].tolist() == [0.5, 1.0]
    assert table["paper_layer"].tolist() == [15, 25]  # nearest by relative depth: 13/26 → 15, 26/26 → 25
    assert table["paper_auc"].tolist() == [ev.PAPER_AUCS["piqa"][15], ev.PAPER_AUCS["piqa"][25]]
    assert table["auc"].between(0, 1).all()
    assert _trace_names(at, 0) == ["this run: synthetic-lm", "paper: Gemma-2 2B"]
    captions = " ".join(c.value for c in at.caption)
    assert "relative depth" in captions and "Gemma-2 2B" in captions and "piqa" in captions


def test_reproduce_page_on_a_run_without_activations(wif_db: Path) -> None:
    at = _run(REPRODUCE, run=IMPORTED_RUN)
    assert not at.exception and not at.error
    assert "no activations there" in at.info[0].value and not at.get("plotly_chart")


@pytest.mark.parametrize("script", [COMPARE, REPRODUCE])
def test_missing_store_shows_a_one_line_error(script: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIF_DB", str(tmp_path / "absent.duckdb"))
    at = _run(script)
    assert not at.exception
    assert len(at.error) == 1 and "no store at" in at.error[0].value and "\n" not in at.error[0].value


def test_demo_prefit_serves_the_first_visit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`wif demo` pre-fits the page's default selection: the first visit then fits nothing."""
    from wif_core.demo import prefit_demo
    from wif_core.explainers.base import Explainer

    db = tmp_path / "demo.duckdb"
    make_synthetic_store(db, with_sae=False)
    assert prefit_demo(db) > 0
    monkeypatch.setenv("WIF_DB", str(db))

    def no_fitting(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the page fitted an explainer the demo had already fitted")

    for cls in REGISTRY.values():
        monkeypatch.setattr(cls, "fit", no_fitting)
    monkeypatch.setattr(Explainer, "fit", no_fitting)
    at = _run(COMPARE, run=COLLECTED_RUN)
    assert not at.exception
    table = next(df.value for df in at.dataframe if "AUC" in df.value.columns)
    assert set(DEFAULT_LABELS) <= set(table["label"])
