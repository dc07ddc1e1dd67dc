"""App tier: the Compare models page under AppTest on hand-built stores (tests/compare_factory.py)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from compare_factory import HOSTILE_TEXT, RUN_A, RUN_B, WIDE, make_compare_store
from page_runner import run_page
from test_hostile_urls import HOSTILE, _check

from wif_core.store import OutcomeRow, RunInfo, Store

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "pages" / "models.py")

pytestmark = pytest.mark.usefixtures("fresh_st_caches")


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "compare.duckdb"
    make_compare_store(path, hostile=True)
    return path


@pytest.fixture
def app_db(db: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WIF_DB", str(db))
    return db


def _frames(at: object) -> list[object]:
    return [df.value for df in at.dataframe]  # type: ignore[attr-defined]


def test_two_models_render_with_tables_scatter_links_and_transfer(app_db: Path) -> None:
    at = run_page(PAGE, runs=f"{RUN_A},{RUN_B}")
    assert not at.exception, [e.value for e in at.exception]
    assert at.multiselect(key="models_pick").value == [RUN_A, RUN_B]
    assert [s.value for s in at.subheader] == [
        "Accuracy",
        "Outcomes side by side",
        "Segment shares of relevance",
        "Explainer transfer",
    ]
    frames = _frames(at)
    accuracy = frames[0]
    assert list(accuracy["run"]) == [RUN_A, RUN_B] and list(accuracy["n"]) == [80, 80]
    pairs = frames[1]
    assert {"McNemar p", "κ of errors", "margin r (Pearson)"} <= set(pairs.columns)
    two = frames[2]
    assert int(two.to_numpy().sum()) == 80
    only_a = next(f for f in frames if "open" in f.columns)
    query = parse_qs(urlsplit(only_a["open"].iloc[0]).query)
    assert urlsplit(only_a["open"].iloc[0]).path == "failures"
    assert query["run"] == [RUN_A] and query["item"] == [only_a["item"].iloc[0]]
    transfer = next(f for f in frames if "tier (for scored run)" in f.columns)
    assert set(transfer["tier (for scored run)"]) == {"input", "gold"}
    assert len(at.get("plotly_chart")) == 2  # the margin scatter and the segment shares
    assert at.query_params["runs"] == f"{RUN_A},{RUN_B}"


def test_the_default_is_the_checkpoint_series_with_its_curves(app_db: Path) -> None:
    at = run_page(PAGE)
    assert not at.exception, [e.value for e in at.exception]
    assert at.multiselect(key="models_pick").value == ["ck-1", "ck-2", "ck-3"]
    assert "Checkpoints" in [s.value for s in at.subheader]
    series = _frames(at)[-1]
    assert list(series["checkpoint"]) == ["1048576 samples", "2097152 samples", "4194304 samples"]
    assert list(series["accuracy"]) == pytest.approx([0.4, 0.6, 0.8])
    assert series["best input-tier AUC"].notna().all()


def test_width_mismatch_and_missing_attributions_are_said(app_db: Path) -> None:
    at = run_page(PAGE, runs=f"{RUN_A},{WIDE}")
    assert not at.exception
    assert any("No segment shares" in i.value and "wif attribute" in i.value for i in at.info)
    transfer = next(f for f in _frames(at) if "note" in f.columns)
    assert transfer["note"].str.contains("cannot transfer across models of different widths").any()


@pytest.mark.parametrize(
    ("runs", "message"),
    [(f"{RUN_A},disjoint", "share no items"), (f"{RUN_A},piqa-run", "are of different tasks")],
)
def test_runs_that_cannot_be_compared_say_why(app_db: Path, runs: str, message: str) -> None:
    at = run_page(PAGE, runs=runs)
    assert not at.exception and any(message in i.value for i in at.info)


def test_a_store_with_one_run_per_task_says_what_to_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from compare_factory import _item

    items = [_item(i) for i in range(6)]
    path = tmp_path / "one.duckdb"
    with Store.open(path, write=True) as store:
        run = RunInfo(run_id="only", model="m", task="gen-physical", source="x", n_choices=2, family="two_choice")
        store.create_run(run, items)
        store.write_outcomes("only", [OutcomeRow(item_id=it.item_id, pred=0, correct=True) for it in items])
    monkeypatch.setenv("WIF_DB", str(path))
    at = run_page(PAGE)
    assert not at.exception
    assert any("wif collect --model gemma3-270m --task gen-physical" in i.value for i in at.info)


def test_hostile_query_values_and_item_text_stay_escaped(app_db: Path) -> None:
    for name, value in HOSTILE.items():
        at = run_page(PAGE, runs=value, method=value)
        _check(at, f"models?runs={name}", value)
    at = run_page(PAGE, runs=f"{RUN_A},{HOSTILE_TEXT}", method=HOSTILE_TEXT)
    _check(at, "models", HOSTILE_TEXT)
    contexts = [str(x) for f in _frames(at) if "context" in f.columns for x in f["context"]]
    assert any(HOSTILE_TEXT in x for x in contexts)  # item text is a table cell, shown as typed, never Markdown
    warnings = [w.value for w in at.warning]
    assert any(w.startswith("No run `") for w in warnings) and any("attribution method" in w for w in warnings)
