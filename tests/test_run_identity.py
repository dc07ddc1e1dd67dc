"""A run is defined by the items it scored: an edited or repaired source makes a new run (never a resume of
stale items), an unchanged one resumes; `wif runs --delete` removes a run whole, rows and side files."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import wif_core
from wif_core.cli import main
from wif_core.errors import InputError, StoreError
from wif_core.paths import beside
from wif_core.runner import SplitOptions, write_run
from wif_core.store import AttributionRow, OutcomeRow, RunInfo, Store
from wif_core.tasks.base import TaskItem, items_digest


def _collect_argv(model_dir: Path, source: Path, db: Path) -> list[str]:
    return ["collect", "--model", str(model_dir), "--task", "piqa", "--source", str(source), "--layers", "2"] + [
        "--db",
        str(db),
    ]


def _collect(capsys, argv: list[str]) -> dict:
    assert main([*argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _rewrite(path: Path, edit) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    edit(rows)
    path.write_text("\n".join(json.dumps(r) for r in rows))


# ---- an edited source, a repaired source ------------------------------------------------------------


def test_an_edited_source_makes_a_new_run_beside_the_old_one(tmp_path, capsys, tiny_model_dir, items_file):
    db = tmp_path / "w.duckdb"
    argv = _collect_argv(tiny_model_dir, items_file, db)
    first = _collect(capsys, argv)
    assert first["n_scored"] == 40 and first["older_runs"] == []

    def flip(rows):
        rows[3]["label"] = 1 - rows[3]["label"]  # a label flipped
        rows[5]["sol2"] = "a changed answer"  # a choice changed

    _rewrite(items_file, flip)
    assert main(argv) == 0
    text = capsys.readouterr().out
    with Store.open(db) as store:
        assert len(store.run_ids()) == 2
        new_id = next(r for r in store.run_ids() if r != first["run_id"])
        assert store.run(new_id).status == "complete" and store.counts(new_id)["outcomes"] == 40
        new = {it.item_id: it for it in store.task_items(new_id)}
        old = {it.item_id: it for it in store.task_items(first["run_id"])}
    assert f"run {new_id}: 40 scored, 0 already done" in text  # not "0 scored, 40 already done"
    ids = sorted(new)
    assert new[ids[3]].gold == 1 - old[ids[3]].gold and new[ids[5]].choices[1] == "a changed answer"
    assert first["run_id"] in text and f"wif runs --delete {first['run_id']} --db {db}" in text
    assert "new run was started beside it" in text

    again = _collect(capsys, argv)  # the edited source, unchanged since: resumes the new run
    assert again["run_id"] == new_id and again["n_scored"] == 0 and again["n_resumed"] == 40
    assert again["older_runs"] == [first["run_id"]]


def test_a_source_repaired_after_a_failure_resumes_nothing_broken(
    tmp_path, capsys, monkeypatch, tiny_model_dir, items_file
):
    from wif_core import runner

    original = runner.score_items

    def failing_on_broken(model, tokenizer, todo, *args, **kwargs):  # a record that fails once scoring began
        for batch in original(model, tokenizer, todo, *args, **kwargs):
            if any("BROKEN" in s.item_id for s in batch):
                raise InputError("record BROKEN cannot be scored")
            yield batch

    monkeypatch.setattr(runner, "score_items", failing_on_broken)
    _rewrite(items_file, lambda rows: rows[-1].update(id="BROKEN-39"))
    db = tmp_path / "w.duckdb"
    argv = _collect_argv(tiny_model_dir, items_file, db)
    assert main(argv) == 2
    assert "record BROKEN cannot be scored" in capsys.readouterr().err
    with Store.open(db) as store:
        (broken,) = store.run_ids()
        assert store.run(broken).status == "collecting"
        assert "BROKEN-39" in {it.item_id for it in store.task_items(broken)}

    _rewrite(items_file, lambda rows: rows[-1].update(id="repaired-39"))
    repaired = _collect(capsys, argv)
    assert repaired["run_id"] != broken and repaired["n_scored"] == 40 and repaired["older_runs"] == [broken]
    with Store.open(db) as store:
        assert store.run(repaired["run_id"]).status == "complete"
        assert "BROKEN-39" not in {it.item_id for it in store.task_items(repaired["run_id"])}

    deleted = _collect(capsys, ["runs", "--delete", broken, "--db", str(db)])
    assert [d["run_id"] for d in deleted["deleted"]] == [broken] and deleted["deleted"][0]["rows"]["items"] == 40
    with Store.open(db) as store:
        assert store.run_ids() == [repaired["run_id"]]
    again = _collect(capsys, argv)
    assert again["run_id"] == repaired["run_id"] and again["n_scored"] == 0 and again["older_runs"] == []


def test_a_run_collected_before_runs_carried_a_digest_is_resumed_when_its_items_are_the_same(
    tmp_path, capsys, tiny_model_dir, items_file
):
    db = tmp_path / "w.duckdb"
    argv = _collect_argv(tiny_model_dir, items_file, db)
    first = _collect(capsys, argv)
    with Store.open(db) as store:
        config = store.run(first["run_id"]).config
        assert config["items"] == items_digest(store.task_items(first["run_id"]))
    legacy = "tiny--piqa--0ld0ld00"
    con = __import__("duckdb").connect(str(db))
    config.pop("items")
    con.execute(
        "UPDATE runs SET run_id = ?, config = ? WHERE run_id = ?", [legacy, json.dumps(config), first["run_id"]]
    )
    for table in ("items", "outcomes", "activations", "token_activations", "tokens", "splits", "findings"):
        con.execute(f"UPDATE {table} SET run_id = ? WHERE run_id = ?", [legacy, first["run_id"]])  # noqa: S608
    con.close()
    again = _collect(capsys, argv)
    assert again["run_id"] == legacy and again["n_scored"] == 0 and again["n_resumed"] == 40


# ---- deleting runs ---------------------------------------------------------------------------------


def _items(prefix: str, n: int = 16) -> list[TaskItem]:
    """Items of one run; the last repeats the content of the one before last but one (a ``repeat`` finding)."""
    return [
        TaskItem(
            item_id=f"{prefix}{j:02d}",
            task="piqa",
            context=f"Q {prefix} {n - 3 if j == n - 1 else j}?",
            choices=("a", "b"),
            gold=j % 2,
        )
        for j in range(n)
    ]


def _run(run_id: str) -> RunInfo:
    return RunInfo(
        run_id=run_id,
        model="m",
        task="piqa",
        source="test",
        n_choices=2,
        family="two_choice",
        layers=[1],
        sites=["last"],
        token_layers=[1],
        d_model=3,
    )


def _score(todo: list[TaskItem]):
    rng = np.random.default_rng(0)
    yield [
        OutcomeRow(
            item_id=it.item_id,
            pred=0,
            correct=n % 2 == 0,
            acts={(1, "last"): rng.normal(size=3), (1, "tokens"): rng.normal(size=(4, 3))},
            tokens={"listing": (["a", "b"], [1, 2], 0)},
        )
        for n, it in enumerate(todo)
    ]


def _two_runs(db: Path) -> None:
    with Store.open(db, write=True) as store:
        for run_id in ("r1", "r2"):
            write_run(store, _run(run_id), _items(run_id), _score, split_options=SplitOptions())
            store.write_attributions(
                run_id,
                [
                    AttributionRow(
                        item_id=f"{run_id}00",
                        method="grad_x_input",
                        wrong_choice=1,
                        right_choice=0,
                        tokens=["a"],
                        segments=["context"],
                        scores=[0.5],
                        delta=0.5,
                        sum_scores=0.5,
                    )
                ],
            )
    for run_id in ("r1", "r2"):  # the files beside the store that belong to each run
        sae = beside(db, "saes") / run_id / "L1"
        sae.mkdir(parents=True)
        (sae / "cfg.json").write_text("{}")
        emb = beside(db, "embeddings")
        emb.mkdir(exist_ok=True)
        (emb / f"{run_id}.npy").write_bytes(b"")
        (emb / f"{run_id}.json").write_text("{}")
        for kind in ("results", "clusters"):
            d = beside(db, kind)
            d.mkdir(exist_ok=True)
            (d / f"key-{run_id}.json").write_text(json.dumps({"run_id": run_id, "auc": 0.5}))
    (beside(db, "results") / "not-json.json").write_text("{")


def _all_counts(db: Path, run_id: str) -> dict[str, int]:
    with Store.open(db) as store:
        return {**store.counts(run_id), "findings": len(store.findings(run_id)), "runs": run_id in store.run_ids()}


def test_delete_removes_the_run_from_every_table_and_its_files_beside_the_store(tmp_path, capsys):
    db = tmp_path / "s.duckdb"
    _two_runs(db)
    kept = _all_counts(db, "r2")
    assert all(kept.values())
    out = _collect(capsys, ["runs", "--delete", "r1", "--db", str(db)])
    (report,) = out["deleted"]
    assert report["run_id"] == "r1" and report["rows"]["runs"] == 1 and report["rows"]["outcomes"] == 16
    assert report["rows"]["activations"] == 16 and report["rows"]["attributions"] == 1 and report["kept"] == []
    assert not any(_all_counts(db, "r1").values())
    with Store.open(db) as store:
        con = store._cur()
        tables = [
            r[0] for r in con.execute("SELECT table_name FROM duckdb_columns() WHERE column_name = 'run_id'").fetchall()
        ]
        for table in tables:  # every table that holds runs' rows, whatever the schema adds later
            n = con.execute(f"SELECT count(*) FROM {table} WHERE run_id = 'r1'").fetchone()[0]  # noqa: S608
            assert n == 0, table
    assert _all_counts(db, "r2") == kept
    gone = [
        beside(db, "saes") / "r1",
        beside(db, "embeddings") / "r1.npy",
        beside(db, "embeddings") / "r1.json",
        beside(db, "results") / "key-r1.json",
        beside(db, "clusters") / "key-r1.json",
    ]
    assert sorted(report["files"]) == sorted(str(p) for p in gone) and not any(p.exists() for p in gone)
    assert (beside(db, "saes") / "r2" / "L1" / "cfg.json").exists()
    assert (beside(db, "results") / "key-r2.json").exists() and (beside(db, "embeddings") / "r2.npy").exists()

    assert main(["runs", "--delete", "r2", "--db", str(db)]) == 0
    text = capsys.readouterr().out.strip()
    assert text.startswith("deleted run r2 (") and "16 outcomes" in text and "removed 5 file(s)" in text


def test_delete_refuses_an_unknown_id_before_removing_any(tmp_path, capsys):
    db = tmp_path / "s.duckdb"
    _two_runs(db)
    assert main(["runs", "--delete", "r1", "nope", "--db", str(db)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("wif: error: no run 'nope'") and "\n" not in err
    assert all(_all_counts(db, "r1").values()) and (beside(db, "saes") / "r1").exists()
    assert main(["runs", "--delete", "r1", "--db", str(tmp_path / "absent.duckdb")]) == 2
    assert "no store at" in capsys.readouterr().err and not (tmp_path / "absent.duckdb").exists()


def test_a_failing_delete_leaves_the_run_whole(tmp_path, monkeypatch):
    from wif_core.store import store as store_mod

    db = tmp_path / "s.duckdb"
    _two_runs(db)
    before = _all_counts(db, "r1")
    real = store_mod._run_tables
    monkeypatch.setattr(store_mod, "_run_tables", lambda cur: [*real(cur)[:3], "no_such_table", "runs"])
    with Store.open(db, write=True) as store, pytest.raises(Exception, match="no_such_table"):
        wif_core.delete_run(store, "r1")
    assert _all_counts(db, "r1") == before


KILL_MID_DELETE = textwrap.dedent(
    """
    import os, sys
    from wif_core.store import store as store_mod
    real = store_mod._run_tables
    def dying(cur):
        for n, table in enumerate(real(cur)):
            if n == 4:  # four tables' rows deleted, the transaction still open
                os._exit(137)
            yield table
    store_mod._run_tables = dying
    import wif_core
    with wif_core.open_store(sys.argv[1], write=True) as store:
        wif_core.delete_run(store, "r1")
    """
)


def test_a_process_killed_mid_delete_leaves_the_run_whole(tmp_path):
    db = tmp_path / "s.duckdb"
    _two_runs(db)
    before = _all_counts(db, "r1")
    killed = subprocess.run([sys.executable, "-c", KILL_MID_DELETE, str(db)], capture_output=True, text=True)
    assert killed.returncode == 137, killed.stderr
    assert _all_counts(db, "r1") == before
    assert (beside(db, "saes") / "r1").exists()  # files go only after the rows are gone


def test_delete_run_is_an_api_verb(tmp_path):
    db = tmp_path / "s.duckdb"
    _two_runs(db)
    assert "delete_run" in wif_core.__all__ and "DeletedRun" in wif_core.__all__
    with wif_core.open_store(db) as store, pytest.raises(StoreError, match="read-only"):
        wif_core.delete_run(store, "r1")
    with wif_core.open_store(db, write=True) as store:
        result = wif_core.delete_run(store, "r1")
        assert isinstance(result, wif_core.DeletedRun) and result.rows["items"] == 16
        assert [r.run_id for r in wif_core.runs(store)] == ["r2"]
        with pytest.raises(StoreError, match="no run 'r1'"):
            wif_core.delete_run(store, "r1")


def test_a_reimport_of_an_edited_file_replaces_the_run_whole(tmp_path, capsys):
    """Imports stay keyed by their file and replace the run wholesale: the stored run is what the file holds."""
    path = tmp_path / "out.json"
    rows = [{"goal": f"g{j}", "sol1": "a", "sol2": "b", "label": j % 2} for j in range(8)]
    path.write_text(json.dumps({"correct": rows[:4], "incorrect": rows[4:]}))
    db = str(tmp_path / "s.duckdb")
    argv = ["import", str(path), "--task", "piqa", "--model-name", "m", "--db", db, "--json"]
    first = _collect(capsys, argv[:-1])
    rows[0]["label"] = 1
    path.write_text(json.dumps({"correct": rows[:4], "incorrect": rows[4:]}))
    again = _collect(capsys, argv[:-1])
    assert again["run_id"] == first["run_id"]
    with Store.open(db) as store:
        assert store.run_ids() == [first["run_id"]]
        assert store.task_items(first["run_id"])[0].gold == 1
