"""App tier: the attribution page under AppTest, on the synthetic store (stored attributions, no model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from page_runner import run_page
from store_factory import COLLECTED_RUN, IMPORTED_RUN
from streamlit.testing.v1 import AppTest
from wif_ui import attribution as attr_ui

from wif_core.attribution import Attribution

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "pages" / "attribution.py")

pytestmark = pytest.mark.usefixtures("fresh_st_caches")


def _run(**query: Any) -> AppTest:
    return run_page(PAGE, **query)


def _charts(at: AppTest) -> list[Any]:
    return at.get("plotly_chart")


def test_page_shows_the_verdict_heatmaps_and_curves_of_a_stored_item(wif_db: Path) -> None:
    at = _run(run=COLLECTED_RUN, item="gen-physical-0001", compute="false")
    assert not at.exception and not at.error
    assert [t.value for t in at.title] == ["Contrastive attribution"]
    verdict = next(m.value for m in at.markdown if "Verdict" in m.value)
    assert "attnlrp has the largest mean faithfulness" in verdict  # planted: attnlrp 0.2 higher on every item
    table = at.dataframe[0].value
    assert set(table["method"]) == {"attnlrp", "grad_x_input"} and (table[table["outcome"] == "all"]["n"] == 40).all()
    assert at.selectbox(key="item").value == "gen-physical-0001"
    # both stored methods side by side: Δ, Σ scores, faithfulness for each
    labels = [m.label for m in at.metric]
    assert labels.count("Δ (nats)") == 2 and labels.count("Faithfulness") == 2
    # run-level segments + profile clusters, two heatmaps, deletion, item segments, layer profile
    assert len(_charts(at)) == 7
    assert not at.info


def test_failures_come_first_and_a_missing_method_says_how_to_get_it(wif_db: Path) -> None:
    at = _run(run=COLLECTED_RUN, compute="false")
    assert at.selectbox(key="item").value == "gen-physical-0001"  # the first failed item, not item 0 (a success)
    at.toggle(key="compute").set_value(False)
    at.selectbox(key="method_a").set_value("occlusion").run()
    assert not at.exception
    assert any("No stored occlusion attribution" in i.value for i in at.info)


def test_run_without_attributions_points_to_the_cli(wif_db: Path) -> None:
    at = _run(run=IMPORTED_RUN)
    assert not at.exception
    assert any(f"wif attribute --run {IMPORTED_RUN}" in i.value for i in at.info)
    # computing needs the run's model, which this machine cannot load: one line, no traceback
    assert any("Cannot compute" in i.value for i in at.info)


def test_heatmap_colours_follow_the_sign_and_ignore_special_tokens() -> None:
    a = Attribution(
        item_id="i",
        method="grad_x_input",
        wrong_choice=1,
        right_choice=0,
        tokens=["<s>", "a", "b", " x", " y"],
        segments=["special", "goal", "goal", "wrong", "right"],
        scores=[50.0, 2.0, -1.0, 0.5, -2.0],
        delta=1.0,
        sum_scores=49.5,
    )
    html = attr_ui.heatmap_html(a)
    assert "rgba(178, 24, 43, 0.85)" in html  # 'a' is the largest non-special: full red
    assert "rgba(33, 102, 172, 0.85)" in html  # ' y' at −max: full blue
    assert "<b>wrong answer:</b>" in html and "<b>right answer:</b>" in html
    fig, frame = attr_ui.heatmap_figure(a, "t")
    assert list(fig.data[0].marker.color) == [1.0, 1.0, -0.5, 0.25, -1.0]  # special clipped, not the scale
    assert frame["score"].sum() == pytest.approx(49.5)


def _one_token(method: str) -> Attribution:
    return Attribution(
        item_id="z",
        method=method,
        wrong_choice=1,
        right_choice=0,
        tokens=["x0"],
        segments=["other"],
        scores=[0.1],
        delta=0.1,
        sum_scores=0.1,
    )


def test_beside_defaults_to_none_when_only_one_method_is_stored() -> None:
    one = [_one_token("grad_x_input")]
    methods = attr_ui.method_order(one, "z")
    assert methods[0] == "grad_x_input" and attr_ui.beside_options(one, "z", methods)[0] == "none"
    two = [*one, _one_token("attnlrp")]
    assert attr_ui.beside_options(two, "z", attr_ui.method_order(two, "z"))[0] == "grad_x_input"
    assert attr_ui.beside_options([], "z", attr_ui.method_order([], "z"))[0] != "none"  # computes the next method
