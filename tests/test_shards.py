"""Shard directories: `wif collect --shard i/N --out DIR` + `wif ingest DIR` equals one `wif collect`; every
shard merges once; bad shard directories get one line and merge nothing; `wif export` round-trips a run."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from wif_core.cli import main
from wif_core.engines import shards as sh
from wif_core.store import Store


def _json(capsys, argv: list[str]):
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def _collect(tiny_model_dir, items_file, *extra: str) -> list[str]:
    return [
        "collect",
        "--model",
        str(tiny_model_dir),
        "--task",
        "piqa",
        "--source",
        str(items_file),
        "--layers",
        "2,4",
        "--token-layers",
        "3",
        "--json",
        *extra,
    ]


def _tables(db, run_id: str) -> dict[str, list]:
    """Every row a run has in the tables a shard carries, in a fixed order (activations decoded)."""
    with Store.open(db) as store:
        cur = store._cur()
        out = {}
        for table, order in (
            ("outcomes", "item_id"),
            ("activations", "item_id, layer, site"),
            ("token_activations", "item_id, layer"),
            ("tokens", "item_id, seq"),
            ("items", "position"),
        ):
            out[table] = cur.execute(
                f"SELECT * EXCLUDE (run_id) FROM {table} WHERE run_id = ? ORDER BY {order}",  # noqa: S608
                [run_id],
            ).fetchall()
        out["status"] = store.run(run_id).status
        out["splits"] = store.split_counts(run_id).to_dict()
    return out


def _same_rows(a: list, b: list) -> None:
    assert len(a) == len(b)
    for ra, rb in zip(a, b, strict=True):
        for x, y in zip(ra, rb, strict=True):
            if isinstance(x, bytes):
                np.testing.assert_allclose(np.frombuffer(x, "<f2"), np.frombuffer(y, "<f2"), atol=2e-3, rtol=2e-3)
            elif isinstance(x, float):
                assert x == pytest.approx(y, abs=1e-4)
            elif isinstance(x, list) and x and isinstance(x[0], float):
                assert x == pytest.approx(y, abs=1e-4)
            else:
                assert x == y


@pytest.fixture()
def reference(tmp_path, capsys, tiny_model_dir, items_file):
    """One in-process collection of the 40 items: its run id and rows."""
    db = tmp_path / "one.duckdb"
    run_id = _json(capsys, [*_collect(tiny_model_dir, items_file), "--db", str(db)])["run_id"]
    return run_id, _tables(db, run_id)


def test_shards_then_ingest_equal_one_collection(tmp_path, capsys, tiny_model_dir, items_file, reference):
    run_id, want = reference
    out = tmp_path / "shards"
    db = tmp_path / "merged.duckdb"
    done = [
        _json(capsys, [*_collect(tiny_model_dir, items_file), "--shard", f"{i}/3", "--out", str(out)]) for i in (2, 0)
    ]
    assert {d["run_id"] for d in done} == {run_id}  # the same run id as in-process collection
    assert not db.exists()  # a shard opens no store
    first = _json(capsys, ["ingest", str(out), "--db", str(db), "--json"])["ingested"][0]
    assert first["merged"] == [0, 2] and first["unfinished"] == [1] and not first["complete"]
    with Store.open(db) as store:
        assert store.run(run_id).status == "collecting"  # never "complete" while a shard is missing
    _json(capsys, [*_collect(tiny_model_dir, items_file), "--shard", "1/3", "--out", str(out)])
    again = _json(capsys, ["ingest", str(out), "--db", str(db), "--json"])["ingested"][0]
    assert again["merged"] == [1] and again["before"] == [0, 2] and again["complete"]
    got = _tables(db, run_id)
    for table in ("outcomes", "activations", "token_activations", "tokens", "items"):
        _same_rows(got[table], want[table])
    assert got["status"] == "complete" and got["splits"] == want["splits"]  # the same splits, drawn the same way
    # ingest again: nothing merged twice
    third = _json(capsys, ["ingest", str(out), "--db", str(db), "--json"])["ingested"][0]
    assert third["merged"] == [] and third["before"] == [0, 1, 2]
    with Store.open(db) as store:
        assert store.counts(run_id)["outcomes"] == 40 and sorted(store.merged_shards(run_id)) == [0, 1, 2]
    # a finished shard is reused, not scored again
    reused = _json(capsys, [*_collect(tiny_model_dir, items_file), "--shard", "1/3", "--out", str(out)])
    assert reused["reused"]


def test_half_written_and_foreign_shards(tmp_path, capsys, tiny_model_dir, items_file):
    out = tmp_path / "shards"
    db = tmp_path / "s.duckdb"
    for i in range(2):
        _json(capsys, [*_collect(tiny_model_dir, items_file), "--shard", f"{i}/2", "--out", str(out)])
    # a writer killed mid-shard leaves a .partial directory: never read
    (out / "shard-00001-of-00002.partial-host-1").mkdir()
    # shard 1 half written: its done.json names a file that is cut short
    part = out / "shard-00001-of-00002" / "outcomes.parquet"
    part.write_bytes(part.read_bytes()[:100])
    assert main(["ingest", str(out), "--db", str(db)]) == 2
    err = capsys.readouterr().err  # progress lines of shard 0, then one error line
    assert "Traceback" not in err and err.count("wif: error") == 1
    line = err.strip().splitlines()[-1]
    assert "shard-00001-of-00002" in line and "collect it again" in line
    with Store.open(db) as store:  # shard 0 went in whole; shard 1 left nothing
        rid = store.run_ids()[0]
        assert sorted(store.merged_shards(rid)) == [0] and store.counts(rid)["outcomes"] == 20
        assert store.run(rid).status == "collecting"
    shutil.rmtree(out / "shard-00001-of-00002")
    _json(capsys, [*_collect(tiny_model_dir, items_file), "--shard", "1/2", "--out", str(out)])
    assert _json(capsys, ["ingest", str(out), "--db", str(db), "--json"])["ingested"][0]["complete"]

    # another run's shards in this directory, or another split count: one line each, nothing written
    other = [*_collect(tiny_model_dir, items_file)]
    other[other.index("2,4")] = "1,4"
    assert main([*other, "--shard", "0/2", "--out", str(out)]) == 2
    assert "holds shards of run" in capsys.readouterr().err
    assert main([*_collect(tiny_model_dir, items_file), "--shard", "0/5", "--out", str(out)]) == 2
    assert "split into 2 shards, not 5" in capsys.readouterr().err
    # a shard copied in from another run's directory
    out2 = tmp_path / "other"
    _json(capsys, [*other, "--shard", "0/2", "--out", str(out2)])
    mixed = tmp_path / "mixed"
    shutil.copytree(out, mixed)
    shutil.rmtree(mixed / "shard-00000-of-00002")
    shutil.copytree(out2 / "shard-00000-of-00002", mixed / "shard-00000-of-00002")
    assert main(["ingest", str(mixed), "--db", str(tmp_path / "m.duckdb")]) == 2
    assert "copied from another run's directory" in capsys.readouterr().err
    # not a shard directory at all; a bad --shard
    assert main(["ingest", str(tmp_path), "--db", str(db)]) == 2
    assert "not a wif shard directory" in capsys.readouterr().err
    assert main([*_collect(tiny_model_dir, items_file), "--shard", "2/2", "--out", str(out)]) == 2
    assert "--shard 2/2" in capsys.readouterr().err
    assert main([*_collect(tiny_model_dir, items_file), "--shard", "0/2"]) == 2
    assert "give --out DIR" in capsys.readouterr().err


def test_hand_written_shard_directory(tmp_path, capsys):
    """A user's own job can feed the store: write run.json, items.parquet and one shard in the documented layout."""
    import pandas as pd

    from wif_core.runner import SplitOptions
    from wif_core.store import OutcomeRow, RunInfo
    from wif_core.store.store import outcome_frames, write_parquet_frames
    from wif_core.tasks.base import TaskItem

    items = [
        TaskItem(item_id=f"i{n}", task="piqa", context=f"goal {n}", choices=("a", "b"), gold=n % 2) for n in range(8)
    ]
    run = RunInfo(
        run_id="mine--piqa--1",
        model="my-model",
        task="piqa",
        source="mine",
        n_choices=2,
        family="two_choice",
        layers=[1],
        sites=["last"],
        d_model=4,
    )
    run.n_planned = len(items)
    out = tmp_path / "mine"
    sh.ensure_manifest(out, run, items, 1, SplitOptions())
    rows = [
        OutcomeRow(
            item_id=it.item_id,
            pred=n % 3 % 2,
            correct=(n % 3 % 2) == it.gold,
            margin=0.5,
            ll_sum=[-1.0, -2.0],
            acts={(1, "last"): np.full(4, n, dtype=np.float32)},
        )
        for n, it in enumerate(items)
    ]
    shard = out / "shard-00000-of-00001"
    shard.mkdir()
    written = write_parquet_frames(outcome_frames(run.run_id, rows), shard)
    ids = [r.item_id for r in rows]
    done = {"run_id": run.run_id, "shard": 0, "n_shards": 1, "item_ids": ids, "rows": written}
    (shard / "done.json").write_text(json.dumps(done))
    db = tmp_path / "h.duckdb"
    assert _json(capsys, ["ingest", str(out), "--db", str(db), "--json"])["ingested"][0]["complete"]
    with Store.open(db) as store:
        frame = store.items(run.run_id)
        assert len(frame) == 8 and set(frame.split) <= {"train", "val", "test", "unused"}
        assert frame.set_index("item_id").correct.to_dict() == {r.item_id: r.correct for r in rows}
        ids_, x = store.activations(run.run_id, 1, "last")
        assert x[list(ids_).index("i5")].tolist() == [5.0] * 4
    assert isinstance(pd.read_parquet(out / "items.parquet"), pd.DataFrame)  # plain Parquet, any reader


def test_export_round_trips_a_run(tmp_path, capsys, tiny_model_dir, items_file, reference):
    run_id, want = reference
    src = tmp_path / "one.duckdb"
    out = tmp_path / "export"
    exported = _json(capsys, ["export", "--run", run_id, "--out", str(out), "--db", str(src), "--json"])
    assert exported["rows"]["outcomes"] == 40 and exported["rows"]["items"] == 40
    import pandas as pd

    by_site = pd.read_parquet(out / "activations" / "layer=4" / "site=choice" / "part-0.parquet")
    assert len(by_site) == 40 and np.frombuffer(by_site.vec.iloc[0], "<f2").shape == (2 * 32,)
    db = tmp_path / "copy.duckdb"
    assert _json(capsys, ["ingest", str(out), "--db", str(db), "--json"])["ingested"][0]["complete"]
    got = _tables(db, run_id)
    for table in ("outcomes", "activations", "token_activations", "tokens", "items"):
        assert got[table] == want[table]  # byte for byte
    with Store.open(db) as a, Store.open(src) as b:
        assert a.items(run_id)[["item_id", "split"]].equals(b.items(run_id)[["item_id", "split"]])
    # into the store it came from: the run is complete there, nothing merged
    again = _json(capsys, ["ingest", str(out), "--db", str(src), "--json"])["ingested"][0]
    assert again["merged"] == [] and "already complete" in again["note"]
    assert main(["export", "--run", run_id, "--out", str(out), "--db", str(src)]) == 2
    assert "not empty" in capsys.readouterr().err


def test_a_second_driver_waits_for_the_store_and_merges_nothing_twice(tmp_path, capsys, tiny_model_dir, items_file):
    """Two drivers on one store: while one holds it, the other gets one line after its wait; run again, the
    shards the first merged are not merged twice."""
    out, db = tmp_path / "shards", tmp_path / "s.duckdb"
    _json(capsys, [*_collect(tiny_model_dir, items_file), "--shard", "0/1", "--out", str(out)])
    import subprocess
    import sys

    second = [sys.executable, "-c", "import sys; from wif_core.cli import main; sys.exit(main(sys.argv[1:]))"]
    with Store.open(db, write=True) as first:  # the first driver holds the store: the second, another process, waits
        proc = subprocess.run([*second, "ingest", str(out), "--db", str(db)], capture_output=True, text=True)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert "in use by another wif process" in proc.stderr.strip().splitlines()[-1]
        sh.ingest(first, out)  # the first driver merges
    again = _json(capsys, ["ingest", str(out), "--db", str(db), "--json"])["ingested"][0]
    assert again["merged"] == [] and again["before"] == [0] and again["complete"]
    with Store.open(db) as store:
        assert store.counts(store.run_ids()[0])["outcomes"] == 40
