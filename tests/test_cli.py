"""The CLI contract: JSON shapes, resume after a kill, leakage reporting, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from conftest import BENCH

from wif_core.cli import main
from wif_core.store import Store


def _json(capsys, argv: list[str]):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_collect_runs_items_json(tmp_path, capsys, tiny_model_dir, items_file):
    db = str(tmp_path / "w.duckdb")
    out = _json(
        capsys,
        [
            "collect",
            "--model",
            str(tiny_model_dir),
            "--task",
            "piqa",
            "--source",
            str(items_file),
            "--layers",
            "2,4",
            "--db",
            db,
            "--json",
        ],
    )
    assert out["n_items"] == 40 and out["n_scored"] == 40
    runs = _json(capsys, ["runs", "--db", db, "--json"])
    assert len(runs) == 1
    run = runs[0]
    for key in ("run_id", "model", "task", "n_items", "accuracy", "n_duplicates", "layers"):
        assert key in run
    assert run["layers"] == [2, 4] and run["n_items"] == 40 and 0 <= run["accuracy"] <= 1
    items = _json(capsys, ["items", "--run", run["run_id"], "--db", db, "--json"])
    assert len(items) == 40
    assert set(items[0]) >= {"item_id", "split", "correct", "pred", "gold"}
    assert all(it["correct"] == (it["pred"] == it["gold"]) for it in items)
    wrong = _json(capsys, ["items", "--run", run["run_id"], "--outcome", "incorrect", "--db", db, "--json"])
    assert len(wrong) == 40 - round(run["accuracy"] * 40) and not any(it["correct"] for it in wrong)
    test = _json(capsys, ["items", "--run", run["run_id"], "--split", "test", "--db", db, "--json"])
    assert sum(it["correct"] for it in test) == sum(not it["correct"] for it in test) > 0
    with Store.open(db) as store:
        assert store.activations(run["run_id"], 4, "choice")[1].shape == (40, 2, 32)


CRASH = textwrap.dedent(
    """
    import os, sys
    from wif_core.store import store as store_mod
    original = store_mod.Store.write_outcomes
    calls = 0
    def crashing(self, run_id, rows, act_dtype="float16"):
        global calls
        calls += 1
        if calls == 3:  # die with a transaction open and part of the batch written
            cur = self._cur()
            cur.execute("BEGIN TRANSACTION")
            cur.execute("INSERT INTO outcomes (run_id, item_id, correct) VALUES (?, ?, true)", [run_id, rows[0].item_id])
            os._exit(137)
        return original(self, run_id, rows, act_dtype)
    store_mod.Store.write_outcomes = crashing
    from wif_core.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def test_resume_after_kill_mid_write(tmp_path, capsys, tiny_model_dir, items_file):
    db = str(tmp_path / "w.duckdb")
    argv = [
        "collect",
        "--model",
        str(tiny_model_dir),
        "--task",
        "piqa",
        "--source",
        str(items_file),
        "--layers",
        "1,3",
        "--token-layers",
        "2",
        "--max-tokens",
        "300",
        "--db",
        db,
        "--json",
    ]
    killed = subprocess.run([sys.executable, "-c", CRASH, *argv], capture_output=True, text=True)
    assert killed.returncode == 137, killed.stderr
    with Store.open(db) as store:
        run_id = store.run_ids()[0]
        partial = store.counts(run_id)
        assert 0 < partial["outcomes"] < 40 and store.run(run_id).status == "collecting"
        assert partial["activations"] == partial["outcomes"] * 2 * 3  # no row of the killed batch survived
        assert partial["token_activations"] == partial["outcomes"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["n_resumed"] == partial["outcomes"] and out["n_scored"] == 40 - partial["outcomes"]
    # the progress of a resumed collection counts what was done before: its last line says all 40
    assert "collect piqa: done, 40 items in" in captured.err, captured.err
    reference = str(tmp_path / "ref.duckdb")
    _json(capsys, [*argv[:-3], "--db", reference, "--json"])
    with Store.open(db) as store, Store.open(reference) as ref:
        assert (
            store.counts(run_id)
            == ref.counts(run_id)
            == {
                "items": 40,
                "outcomes": 40,
                "activations": 240,
                "token_activations": 40,
                "tokens": 120,
                "splits": 40,
                "attributions": 0,
            }
        )
        a = store.items(run_id).sort_values("item_id")
        b = ref.items(run_id).sort_values("item_id")
        assert a["pred"].tolist() == b["pred"].tolist()
        assert a["margin"].round(4).tolist() == b["margin"].round(4).tolist()
        assert store.run(run_id).status == "complete"


@pytest.mark.skipif(not BENCH.exists(), reason="../shared/benchmarks not present")
def test_import_reports_piqa_leakage(tmp_path, capsys):
    db = str(tmp_path / "w.duckdb")
    out = _json(
        capsys, ["import", str(BENCH / "piqa"), "--task", "piqa", "--model-name", "gemma-2-2b", "--db", db, "--json"]
    )
    assert out["n_items"] == 4000 and out["accuracy"] == 0.5
    assert out["leakage"]["gold_conflict"] > 0 and out["n_duplicates"] > 0
    items = _json(capsys, ["items", "--run", out["run_id"], "--db", db, "--json"])
    excluded = [it for it in items if it["excluded"]]
    assert len(excluded) == out["n_duplicates"] and {it["reason"] for it in excluded} == {"gold_conflict"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["runs"], "no store at"),
        (["collect", "--model", "smollm2-135m", "--task", "nope"], "unknown task 'nope'"),
        (["collect", "--model", "not-a-model", "--task", "piqa"], "unknown model 'not-a-model'"),
        (["items", "--run", "nope"], "no store at"),
        (["migrate"], "no store at"),
    ],
)
def test_errors_are_one_line(tmp_path, capsys, argv, message):
    assert main([*argv, "--db", str(tmp_path / "none.duckdb")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and err.startswith("wif: error:")


def test_layer_beyond_depth(tmp_path, capsys, tiny_model_dir, items_file):
    argv = [
        "collect",
        "--model",
        str(tiny_model_dir),
        "--task",
        "piqa",
        "--source",
        str(items_file),
        "--layers",
        "2,9",
        "--db",
        str(tmp_path / "w.duckdb"),
    ]
    assert main(argv) == 2
    assert "the model has blocks 1..4" in capsys.readouterr().err


def test_same_source_from_another_directory_resumes(tmp_path, capsys, monkeypatch, tiny_model_dir, items_file):
    db = str(tmp_path / "w.duckdb")
    common = ["collect", "--model", str(tiny_model_dir), "--task", "piqa", "--layers", "2", "--db", db, "--json"]
    monkeypatch.chdir(items_file.parent)
    first = _json(capsys, [*common, "--source", items_file.name])
    monkeypatch.chdir(tmp_path.parent)
    again = _json(capsys, [*common, "--source", str(items_file)])
    assert again["run_id"] == first["run_id"] and again["n_scored"] == 0 and again["n_resumed"] == 40
