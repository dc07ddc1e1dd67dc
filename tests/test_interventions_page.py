"""App tier: the Interventions page under AppTest, on a store with a tiny-model run (its model loads in the page)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from page_runner import run_page

from wif_core.cli import main

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "pages" / "interventions.py")

pytestmark = pytest.mark.usefixtures("fresh_st_caches")


@pytest.fixture()
def steer_db(tmp_path, capsys, tiny_model_dir, items_file, monkeypatch) -> tuple[Path, str]:
    db = tmp_path / "s.duckdb"
    argv = ["collect", "--model", str(tiny_model_dir), "--task", "piqa", "--source", str(items_file)]
    assert main([*argv, "--layers", "2,4", "--db", str(db), "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    monkeypatch.setenv("WIF_DB", str(db))
    return db, run_id


def test_page_steers_and_shows_the_stored_check(steer_db) -> None:
    db, run_id = steer_db
    at = run_page(PAGE, run=run_id)
    assert not at.exception and not at.error
    assert [t.value for t in at.title] == ["Interventions"]
    assert any("No steering check" in i.value for i in at.info)
    at.multiselect[0].set_value([0.0, 1.0, 4.0])
    at.button[0].click()  # the form's "Steer"
    at.run(timeout=300)
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value
    assert list(table.direction) == ["probe L4 last"] and table.n_test_failures.iloc[0] > 0
    metrics = {m.label: m.value for m in at.metric}
    assert set(metrics) == {"Causal score", "Chosen α", "Test failures", "Probe val AUC"}
    assert metrics["Chosen α"] in ("1", "4")
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [t["name"] for t in spec["data"]][:2] == ["flips (failures now right)", "flips, random control"]
    items = at.dataframe[1].value
    assert len(items) == int(table.n_test_failures.iloc[0]) + int((~items.failed_before).sum())
    assert items.failed_before.iloc[0]  # failures first
    # the check is stored beside the store (the store itself is opened read-only): `wif intervene` finds it
    assert list((db.parent / f"{db.name}.interventions").glob("steer-*.json"))


def test_a_check_from_the_cli_shows_on_the_page(steer_db, capsys) -> None:
    db, run_id = steer_db
    argv = ["intervene", "--run", run_id, "--layer", "2", "--alphas", "0,2", "--db", str(db), "--json"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(argv) == 0  # stored: read back, not computed again
    assert json.loads(capsys.readouterr().out)["seconds"] == first["seconds"]
    at = run_page(PAGE, run=run_id)
    assert not at.exception and list(at.dataframe[0].value.direction) == ["probe L2 last"]


def test_imported_run_says_there_is_no_model(wif_db) -> None:
    from store_factory import IMPORTED_RUN

    at = run_page(PAGE, run=IMPORTED_RUN)
    assert not at.exception
    assert any("no model to steer" in i.value for i in at.info)
