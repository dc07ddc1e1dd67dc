"""App tier: every page runs under Streamlit's AppTest against a synthetic store (no model)."""

from __future__ import annotations

from pathlib import Path

import pytest
from page_runner import run_page
from store_factory import COLLECTED_RUN, IMPORTED_RUN, N_ITEMS, N_OTHER, OTHER_RUN, SEARCH_WORD
from streamlit.testing.v1 import AppTest

from wif_core.store import Store

ROOT = Path(__file__).resolve().parents[1]
OVERVIEW, FAILURES, APP = (str(ROOT / p) for p in ("pages/overview.py", "pages/failures.py", "app.py"))


pytestmark = pytest.mark.usefixtures("fresh_st_caches")


_run = run_page


def _n_items(at: AppTest) -> int:
    """Rows of the failure browser's items table (which is not drawn when nothing matches)."""
    n = int(next(c.value for c in at.caption if c.value.endswith("items match.")).split()[0])
    assert len(at.dataframe[0].value) == n if n else not at.dataframe
    return n


def test_app_entry_opens_the_overview(wif_db: Path) -> None:
    at = _run(APP)
    assert not at.exception
    assert [t.value for t in at.title] == ["Overview"]


def test_overview_shows_runs_balance_and_leakage(wif_db: Path) -> None:
    at = _run(OVERVIEW)
    assert not at.exception
    cards = {m.label: m.value for m in at.metric}
    assert cards["Runs"] == "3" and cards["Items"] == str(2 * N_ITEMS + N_OTHER) and cards["Failures"] == "48"
    runs = at.dataframe[0].value
    assert runs["run_id"].tolist() == [COLLECTED_RUN, IMPORTED_RUN, OTHER_RUN]
    assert runs["n_incorrect"].tolist() == [20, 20, 8] and runs["excluded"].tolist() == [1, 2, 0]
    text = " ".join(m.value for m in at.markdown)
    assert COLLECTED_RUN in text and IMPORTED_RUN in text and OTHER_RUN in text
    leakage = {kind for df in at.dataframe[1:] for kind in df.value["kind"]}
    assert leakage == {"repeat", "gold_conflict", "both_outcomes"}
    assert "answer keys" in text  # the gold_conflict kind is explained
    assert len(at.get("plotly_chart")) == 1


def test_failure_browser_defaults_to_the_first_run_and_its_failures(wif_db: Path) -> None:
    at = _run(FAILURES)
    assert not at.exception
    assert at.selectbox(key="run_pick").value == COLLECTED_RUN
    assert at.selectbox(key="outcome").value == "incorrect"
    assert _n_items(at) == 20
    assert not at.dataframe[0].value["correct"].any()
    assert at.query_params["run"] == COLLECTED_RUN and at.query_params["item"] == "gen-physical-0001"


def test_failure_browser_filters_change_the_rows(wif_db: Path) -> None:
    at = _run(FAILURES)
    at.selectbox(key="outcome").set_value("all").run()
    assert _n_items(at) == 40
    at.selectbox(key="outcome").set_value("correct").run()
    assert _n_items(at) == 20 and at.dataframe[0].value["correct"].all()
    at.selectbox(key="outcome").set_value("all").run()
    at.text_input(key="search").set_value(SEARCH_WORD.upper()).run()  # case-insensitive
    assert _n_items(at) == 10
    at.text_input(key="search").set_value("'; DROP TABLE items; --").run()  # a parameter, never SQL
    assert _n_items(at) == 0 and not at.exception
    at.text_input(key="search").set_value("").run()
    at.toggle(key="excluded").set_value(False).run()
    assert _n_items(at) == 39  # the repeated copy is left out
    with Store.open(wif_db) as store:
        n_test = len(store.items(COLLECTED_RUN, split="test"))
    at.toggle(key="excluded").set_value(True).run()
    at.selectbox(key="split").set_value("test").run()
    assert 0 < _n_items(at) == n_test
    assert set(at.dataframe[0].value["split"]) == {"test"}


def test_selected_item_shows_its_choices_gold_and_scores(wif_db: Path) -> None:
    at = _run(FAILURES)
    at.selectbox(key="item_pick").set_value("gen-physical-0003").run()
    assert not at.exception
    assert [s.value for s in at.subheader] == ["gen-physical-0003"]
    assert at.query_params["item"] == "gen-physical-0003"
    choices = at.table[0].value
    assert choices["choice"].tolist() == [
        "Hold the kettle by its handle, step 3.",
        "Hold the kettle by its tip, step 3.",
    ]
    assert choices["gold"].tolist() == ["", "✓"]  # gold is 3 % 2 = 1; the model picked the other
    assert choices["prediction"].tolist() == ["◀ model's pick", ""]
    assert choices["ll_sum"].notna().all()
    assert "kettle number 3" in at.code[0].value
    assert {m.label: m.value for m in at.metric}["Outcome"] == "incorrect"
    factors = at.table[1].value
    assert "negation" in factors["factor"].tolist()
    assert len(at.get("plotly_chart")) == 1


def test_imported_item_without_scores_or_prediction(wif_db: Path) -> None:
    at = _run(FAILURES, run=IMPORTED_RUN, item="piqa-0004")
    assert not at.exception
    assert at.selectbox(key="outcome").value == "all"  # a linked item is not hidden by the default filter
    assert at.selectbox(key="item_pick").value == "piqa-0004"
    captions = " ".join(c.value for c in at.caption)
    assert "no prediction" in captions and "no per-choice log-likelihoods" in captions
    assert at.table[0].value["prediction"].tolist() == ["", ""]
    assert not at.get("plotly_chart")


def test_shared_link_to_a_leaked_item_shows_its_exclusion(wif_db: Path) -> None:
    at = _run(FAILURES, run=IMPORTED_RUN, item="piqa-0039")
    assert not at.exception
    assert at.selectbox(key="run_pick").value == IMPORTED_RUN
    assert {m.label: m.value for m in at.metric}["Excluded"] == "gold_conflict"


@pytest.mark.parametrize("script", [OVERVIEW, FAILURES, APP])
def test_missing_store_shows_a_one_line_error(script: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIF_DB", str(tmp_path / "absent.duckdb"))
    at = _run(script)
    assert not at.exception
    assert len(at.error) == 1
    message = at.error[0].value
    assert "no store at" in message and "\n" not in message
    assert "make demo" in at.info[0].value


def test_a_file_that_is_not_a_store_shows_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "notes.duckdb"
    bad.write_text("not a database\n")
    monkeypatch.setenv("WIF_DB", str(bad))
    at = _run(FAILURES)
    assert not at.exception
    assert "not a DuckDB store" in at.error[0].value


def test_split_counts_agree_with_items(synthetic_db: Path) -> None:
    """``Store.split_counts`` (the overview's balance chart) counts what ``Store.items`` lists."""
    with Store.open(synthetic_db) as store:
        counts = store.split_counts()
        for run_id, n_items in ((COLLECTED_RUN, N_ITEMS), (IMPORTED_RUN, N_ITEMS), (OTHER_RUN, N_OTHER)):
            items = store.items(run_id)
            mine = counts[counts["run_id"] == run_id]
            assert mine["n"].sum() == len(items) == n_items
            for (split, correct, excluded), n in mine.set_index(["split", "correct", "excluded"])["n"].items():
                same = items[
                    (items["split"] == split) & (items["correct"] == correct) & (items["excluded"] == excluded)
                ]
                assert len(same) == n
        assert store.split_counts(IMPORTED_RUN)["run_id"].unique().tolist() == [IMPORTED_RUN]


def test_a_link_to_an_unknown_run_warns_and_opens_the_first(wif_db: Path) -> None:
    at = _run(FAILURES, run="no-such-run")
    assert not at.exception
    # the value is echoed as inline code (issue 12: never as Markdown), with the run shown instead
    assert at.warning[0].value == f"No run ` no-such-run ` in this store; showing ` {COLLECTED_RUN} ` instead."
    assert at.selectbox(key="run_pick").value == COLLECTED_RUN


def test_the_v1_mode_the_entry_reruns_out_of_is_still_streamlits_mpa_v1() -> None:
    """``wif_ui.data.ensure_entry`` recognises Streamlit's v1 pages-folder mode by its ``_mpa_v1`` on the
    stack (issue 12, item 3): if Streamlit renames it, the check must follow (see tests/test_first_requests.py)."""
    from streamlit.runtime.scriptrunner import script_runner

    assert callable(script_runner._mpa_v1)


def test_failure_browser_lists_a_large_runs_first_items_and_the_linked_one(
    wif_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``ITEMS_SHOWN`` matches the table lists the first ones (read with a SQL limit), the count is of all of
    them, and an item a link names beyond them still opens."""
    from wif_ui import data

    monkeypatch.setattr(data, "ITEMS_SHOWN", 5)
    at = _run(FAILURES, run=COLLECTED_RUN, item="gen-physical-0031")
    assert not at.exception
    assert next(c.value for c in at.caption if c.value.endswith("items match.")) == f"{N_ITEMS} items match."
    assert any("first 5 in item order" in c.value for c in at.caption)
    listed = at.dataframe[0].value["item_id"].tolist()
    assert listed == [f"gen-physical-{n:04d}" for n in range(5)] + ["gen-physical-0031"]
    assert at.selectbox(key="item_pick").value == "gen-physical-0031" and at.subheader[0].value == "gen-physical-0031"
    at.toggle(key="suspect").set_value(True).run()  # no quality pass on this store: nothing is flagged
    assert (
        not at.exception and next(c.value for c in at.caption if c.value.endswith("items match.")) == "0 items match."
    )
