"""App tier: the attribution page's item editor under AppTest, on a store with a tiny-model run (its model loads
in the page): edit, re-score as collection scores, see it beside the original, and write nothing."""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from page_runner import run_page
from streamlit.testing.v1 import AppTest

from wif_core.cli import main
from wif_core.store import Store

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "pages" / "attribution.py")

pytestmark = pytest.mark.usefixtures("fresh_st_caches")


def _collect(db: Path, model_dir: Path, items_file: Path, capsys: Any) -> str:
    argv = ["collect", "--model", str(model_dir), "--task", "piqa", "--source", str(items_file)]
    assert main([*argv, "--layers", "2,4", "--db", str(db), "--json"]) == 0
    return str(json.loads(capsys.readouterr().out)["run_id"])


@pytest.fixture()
def tiny_db(tmp_path, capsys, tiny_model_dir, items_file, monkeypatch) -> tuple[Path, str]:
    """A store with one run of the tiny Llama on 40 PIQA-layout items (layers 2 and 4), as the app's store."""
    db = tmp_path / "t.duckdb"
    run_id = _collect(db, tiny_model_dir, items_file, capsys)
    monkeypatch.setenv("WIF_DB", str(db))
    return db, run_id


def _digest(db: Path) -> str:
    return hashlib.sha256(db.read_bytes()).hexdigest()


def _first_item(at: AppTest) -> str:
    return str(at.selectbox(key="item").value)


def _key(run_id: str, item_id: str, name: str) -> str:
    return f"edit_{run_id}_{item_id}_{name}"


def _rescore(at: AppTest, run_id: str, item_id: str, **values: Any) -> AppTest:
    for name, value in values.items():
        widget = at.number_input if name == "gold" else at.text_area
        widget(key=_key(run_id, item_id, name)).set_value(value)
    at.button(key=_key(run_id, item_id, "go")).click()
    return at.run(timeout=300)


def _metrics(at: AppTest) -> list[tuple[str, str]]:
    return [(m.label, m.value) for m in at.metric]


def test_editing_a_choice_rescores_it_as_collection_does_and_writes_nothing(tiny_db, tiny_model_dir) -> None:
    from wif_core.counterfactual import rescore
    from wif_core.models.loading import load_model
    from wif_core.models.scoring import score_items

    db, run_id = tiny_db
    before = _digest(db)
    at = run_page(PAGE, run=run_id)
    assert not at.exception and not at.error, [e.value for e in at.error]
    item_id = _first_item(at)
    assert [e.label for e in at.expander if "Edit this item" in e.label]
    choices = at.text_area(key=_key(run_id, item_id, "choices"))
    old = choices.value.split("\n")
    assert len(old) == 2 and at.text_area(key=_key(run_id, item_id, "goal")).value  # prefilled from the item
    new = [old[0], "pour boiling water on the cat"]
    at = _rescore(at, run_id, item_id, choices="\n".join(new))
    assert not at.exception and not at.error, [e.value for e in at.error]

    # the same numbers as collection's scorer gives the edited item directly
    with Store.open(db) as store:
        item = next(it for it in store.task_items(run_id) if it.item_id == item_id)
        stored = store.items(run_id, item_ids=[item_id]).iloc[0]
    edited = replace(item, item_id=f"{item_id}~edit1", choices=tuple(new))
    lm = load_model(str(tiny_model_dir))
    [[want]] = list(score_items(lm.model, lm.tokenizer, [edited], [2, 4]))
    assert rescore(lm, edited).ll_sum == want.ll_sum
    table = at.dataframe[-1].value
    assert list(table["choice"]) == new
    assert list(table["ll_sum"]) == pytest.approx(want.ll_sum, abs=1e-9)
    assert list(table["ll_sum before"]) == pytest.approx(list(stored["ll_sum"]), abs=1e-9)
    assert table.loc["AB"[want.pred], "prediction"] == "◀ model's pick"
    metrics = _metrics(at)
    margins = [v for label, v in metrics if label == "Margin"]
    assert margins[-2:] == [f"{stored['margin']:+.3f}", f"{want.margin:+.3f}"]  # original beside the edit
    mark = "✓" if want.correct else "✗"
    assert ("Prediction", f"{'AB'[want.pred]} {mark}") in metrics
    # the attribution of the edit beside the original's: Δ of each, two more heatmaps
    deltas = [float(v) for label, v in metrics if label == "Δ (nats)"]
    assert len(deltas) == 4  # the page's two methods, then the editor's original and edit
    # two choices: Δ = log p(wrong) − log p(right) is minus the margin, whichever way the edit went
    assert deltas[-2:] == pytest.approx([-stored["margin"], -want.margin], abs=2e-3)
    assert any("attribution**: the original beside the edit" in m.value for m in at.markdown)

    # kept in the session as a version; saving offers the file and the command; the store is as it was
    versions = at.session_state["wif_edits"][run_id]
    assert [v.item.choices for v in versions] == [tuple(new)]
    assert [b.proto.label for b in at.get("download_button") if "(JSONL)" in b.proto.label] == [
        "Download 2 items (JSONL)"  # the edit and the item it was made from
    ]
    assert any("at least 2 correct and 2 incorrect items" in w.value for w in at.warning)  # too few for splits
    command = next(c.value for c in at.code if c.value.startswith("wif collect"))
    assert f"--task piqa --source wif_edits_{run_id}.jsonl --layers 2,4 --db {db}" in command
    assert _digest(db) == before
    with Store.open(db) as store:
        assert len(store.runs()) == 1 and len(store.items(run_id)) == 40


def test_the_saved_edits_collect_into_a_new_run_with_the_scores_the_editor_showed(
    tiny_db, tmp_path, monkeypatch
) -> None:
    from streamlit.runtime.media_file_manager import MediaFileManager

    files: dict[str, bytes | str] = {}
    add = MediaFileManager.add

    def keep(self: Any, data: bytes | str, mimetype: str, *args: Any, **kwargs: Any) -> str:
        if mimetype == "application/jsonl":
            files[str(kwargs.get("file_name", args[1] if len(args) > 1 else ""))] = data
        return add(self, data, mimetype, *args, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add", keep)
    db, run_id = tiny_db
    at = run_page(PAGE, run=run_id)
    item_id = _first_item(at)
    at = _rescore(at, run_id, item_id, goal="How do you open a stuck jar lid?", gold=2)
    at.radio(key=f"edit_scope_{run_id}").set_value("whole_run").run(timeout=300)
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert not at.warning  # 41 items: enough of both outcomes for the splits
    [version] = at.session_state["wif_edits"][run_id]
    name = f"wif_edits_{run_id}.jsonl"
    body = files[name]
    source = tmp_path / name
    source.write_bytes(body if isinstance(body, bytes) else body.encode())
    assert len(source.read_text().splitlines()) == 41
    command = next(c.value for c in at.code if c.value.startswith("wif collect"))
    argv = shlex.split(command)[1:]
    argv[argv.index("--source") + 1] = str(source)
    new_db = tmp_path / "new.duckdb"
    argv[argv.index("--db") + 1] = str(new_db)  # the page's store is left alone here; any store will do
    assert main(argv) == 0
    with Store.open(new_db) as store, Store.open(db) as old:
        [new_run] = store.runs()["run_id"]
        assert store.run(new_run).status == "complete"
        new = store.items(new_run).set_index("item_id")
        before = old.items(run_id).set_index("item_id")
    edited = new.loc[f"{item_id}~edit1"]
    assert edited["gold"] == 1 and edited["context"] == "Question: How do you open a stuck jar lid?\nAnswer:"
    assert list(edited["ll_sum"]) == pytest.approx(version.scored.ll_sum, abs=1e-9)
    assert edited["margin"] == pytest.approx(version.scored.margin, abs=1e-9)
    # the originals scored again give the numbers the original run holds
    assert list(new.loc[item_id, "ll_sum"]) == pytest.approx(list(before.loc[item_id, "ll_sum"]), abs=1e-9)


def test_versions_are_kept_per_item_and_can_be_removed(tiny_db) -> None:
    db, run_id = tiny_db
    at = run_page(PAGE, run=run_id)
    item_id = _first_item(at)
    gold = at.number_input(key=_key(run_id, item_id, "gold")).value
    at = _rescore(at, run_id, item_id, gold=3 - gold)
    at = _rescore(at, run_id, item_id, goal="A new goal?")
    assert not at.exception and not at.error
    pick = at.selectbox(key=f"edit_pick_{run_id}_{item_id}")
    assert pick.value == 2 and pick.options == [
        "edit 1: answer key",
        "edit 2: goal, answer key",
    ]  # the form keeps the last edit
    at.button(key=f"edit_remove_{run_id}_{item_id}").click().run(timeout=300)
    assert not at.exception
    assert [v.n for v in at.session_state["wif_edits"][run_id]] == [1]
    assert at.selectbox(key=f"edit_pick_{run_id}_{item_id}").value == 1


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"goal": "  "}, "the goal is empty"),
        ({"choices": "just one answer\n\n"}, "1 choice given; give at least two, one per line"),
        ({"gold": 3}, "the right answer 3 is out of range: give an option number from 1 to 2"),
        ({"goal": "open the jar " * 400}, "longer than the 512 positions the model reads"),
    ],
)
def test_a_bad_edit_gives_one_line(tiny_db, values: dict[str, Any], message: str) -> None:
    db, run_id = tiny_db
    at = run_page(PAGE, run=run_id)
    at = _rescore(at, run_id, _first_item(at), **values)
    assert not at.exception
    [error] = [e.value for e in at.error]
    assert error.startswith("Cannot re-score this edit: ") and message in error and "\n" not in error
    assert at.session_state["wif_edits"][run_id] == []


def test_an_imported_run_says_editing_needs_a_loadable_model(wif_db) -> None:
    from store_factory import IMPORTED_RUN

    at = run_page(PAGE, run=IMPORTED_RUN)
    assert not at.exception
    lines = [i.value for i in at.info if "needs a run whose model wif can load" in i.value]
    assert len(lines) == 1 and "imported from another tool (other-lm)" in lines[0]
    assert not [t for t in at.text_area if t.key and t.key.startswith("edit_")]  # no form to fill


def test_a_collected_run_whose_model_is_gone_says_so_in_one_line(
    tmp_path, capsys, tiny_model_dir, items_file, monkeypatch
) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    db = tmp_path / "gone.duckdb"
    run_id = _collect(db, model, items_file, capsys)
    shutil.rmtree(model)
    monkeypatch.setenv("WIF_DB", str(db))
    at = run_page(PAGE, run=run_id)
    at.toggle(key="compute").set_value(False)
    at = _rescore(at, run_id, _first_item(at), gold=2)
    assert not at.exception
    [error] = [e.value for e in at.error]
    assert error.startswith(f"Editing needs a loadable model: {model} does not load here (") and "\n" not in error


def test_the_failure_browser_links_a_collected_runs_item_to_the_editor(wif_db) -> None:
    from store_factory import COLLECTED_RUN, IMPORTED_RUN

    page = str(ROOT / "pages" / "failures.py")
    at = run_page(page, run=COLLECTED_RUN, item="gen-physical-0001")
    assert not at.exception
    [link] = [m.value for m in at.markdown if "Edit this item" in m.value]
    assert f"(attribution?run={COLLECTED_RUN}&item=gen-physical-0001)" in link  # a plain link: page run alone
    at = run_page(page, run=IMPORTED_RUN)
    assert not at.exception and not [m for m in at.markdown if "Edit this item" in m.value]
