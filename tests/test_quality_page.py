"""App tier: suspect labels on the Overview and the Failure browser, on a planted store with a quality pass."""

from __future__ import annotations

from pathlib import Path

import pytest
from page_runner import run_page
from quality_factory import make_planted_store

from wif_core.label_quality import run_quality
from wif_core.store import Store

ROOT = Path(__file__).resolve().parents[1]
OVERVIEW, FAILURES = (str(ROOT / p) for p in ("pages/overview.py", "pages/failures.py"))
COPY = "gen-physical-0000-copy"  # keyed to the other answer than gen-physical-0000: a gold_conflict pair

pytestmark = pytest.mark.usefixtures("fresh_st_caches")


@pytest.fixture(scope="module")
def quality_db(tmp_path_factory: pytest.TempPathFactory):
    """200 items, 10 keys flipped, one contradictory copy, five model runs; the first run has had its pass."""
    path = tmp_path_factory.mktemp("quality") / "quality.duckdb"
    truth = make_planted_store(path, n=200, copies=1)
    with Store.open(path, write=True) as store:
        run_quality(store, truth.runs[0])
        flags = store.quality_flags(truth.runs[0])
    return path, truth, flags


@pytest.fixture
def app_db(quality_db, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WIF_DB", str(quality_db[0]))
    return quality_db


def test_overview_counts_the_suspect_labels_by_reason(app_db) -> None:
    _, truth, flags = app_db
    at = run_page(OVERVIEW)
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Suspect labels"] == str(len(flags))
    table = next(df.value for df in at.dataframe if "flagged" in df.value)
    assert table["run_id"].tolist() == truth.runs
    checked = table.iloc[0]
    n_reason = {r: sum(r in reasons for reasons in flags["reasons"]) for r in ("gold_conflict", "consensus")}
    assert (checked["checked"], checked["flagged"]) == (201, len(flags))
    assert checked["gold_conflict"] == n_reason["gold_conflict"] == 2 and checked["consensus"] == n_reason["consensus"]
    top = flags.sort_values("score", ascending=False, kind="stable")["item_id"].head(3).tolist()
    assert checked["most suspect"] == ", ".join(top)
    assert table["checked"].iloc[1:].isna().all()  # the other runs had no pass: the command that makes one
    assert table["signals"].iloc[1] == f"`wif quality --run {truth.runs[1]}`"
    assert "another copy of this question" in " ".join(m.value for m in at.markdown)  # the reasons explained


def test_failure_browser_marks_suspect_items_and_filters_to_them(app_db) -> None:
    _, truth, flags = app_db
    at = run_page(FAILURES, run=truth.runs[0])
    at.selectbox(key="outcome").set_value("all").run()
    items = at.dataframe[0].value
    marked = items.loc[items["suspect"] != "", "item_id"].tolist()
    assert sorted(marked) == sorted(flags["item_id"]) and all(m.startswith("⚑ ") for m in items["suspect"] if m)
    at.toggle(key="suspect").set_value(True).run()
    assert not at.exception
    assert sorted(at.dataframe[0].value["item_id"]) == sorted(flags["item_id"])


def test_a_consensus_flag_shows_who_chose_what(app_db) -> None:
    _, truth, flags = app_db
    flag = next(f for f in flags.itertuples() if "consensus" in f.reasons and f.item_id in truth.flipped)
    at = run_page(FAILURES, run=truth.runs[0], item=flag.item_id)
    assert not at.exception
    warning = at.warning[0].value
    assert warning.startswith("⚑ Suspect label (") and "consensus" in warning and f"{flag.score:.3f}" in warning
    choices = next(t.value for t in at.table if "suggested" in t.value)
    assert choices["key"].tolist().index("✓") == flag.evidence["given"]
    assert choices["suggested"].tolist().index("⚑") == flag.evidence["suggested"] == truth.true_gold[flag.item_id]
    runs = next(df.value for df in at.dataframe if "P(key)" in df.value)
    assert sorted(r.replace(" (this run)", "") for r in runs["run_id"]) == sorted(truth.runs)
    assert runs["run_id"].str.endswith("(this run)").sum() == 1
    c = flag.evidence["consensus"]
    assert f"{c['runs']} of the {c['of']} other runs" in " ".join(x.value for x in at.caption)


def test_a_contradictory_copy_names_the_other(app_db) -> None:
    _, truth, _ = app_db
    at = run_page(FAILURES, run=truth.runs[0], item=COPY)
    assert not at.exception
    assert "gold_conflict" in at.warning[0].value
    assert "` gen-physical-0000 ` keyed" in " ".join(x.value for x in at.caption)


def test_an_item_without_a_flag_shows_none(app_db) -> None:
    _, truth, flags = app_db
    clean = next(i for i in (f"gen-physical-{n:04d}" for n in range(200)) if i not in set(flags["item_id"]))
    at = run_page(FAILURES, run=truth.runs[1], item=clean)  # a run without a pass: no markers, no warning
    assert not at.exception and not at.warning
    assert (at.dataframe[0].value["suspect"] == "").all()
