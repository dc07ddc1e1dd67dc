"""The Ray engine on a local cluster (num_cpus=2) with the tiny random Llama: distributed collection equals
in-process collection; a worker killed mid-shard still yields every item once; a restarted driver merges
nothing twice."""

from __future__ import annotations

import json
import os

import pytest
import ray
from test_shards import _collect, _same_rows, _tables

from wif_core.cli import main
from wif_core.engines import shards as sh
from wif_core.store import Store

TABLES = ("outcomes", "activations", "token_activations", "tokens", "items")


def _json(capsys, argv: list[str]):
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


@pytest.fixture()
def local_ray(request):
    """A local Ray cluster of 2 CPUs for one test (``env`` from the test's ``ray_env`` mark reaches the workers)."""
    mark = request.node.get_closest_marker("ray_env")
    env = mark.args[0] if mark else {}
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": env} if env else None,
        configure_logging=False,
    )
    yield
    ray.shutdown()


def _reference(tmp_path, capsys, tiny_model_dir, items_file):
    db = tmp_path / "one.duckdb"
    run_id = _json(capsys, [*_collect(tiny_model_dir, items_file), "--db", str(db)])["run_id"]
    return run_id, _tables(db, run_id)


def _ray_collect(tiny_model_dir, items_file, db, out, shards: int = 4) -> list[str]:
    return [
        *_collect(tiny_model_dir, items_file),
        "--engine",
        "ray",
        "--workers",
        "2",
        "--shards",
        str(shards),
        "--out",
        str(out),
        "--db",
        str(db),
    ]


def test_ray_collection_equals_in_process(tmp_path, capsys, tiny_model_dir, items_file, local_ray):
    run_id, want = _reference(tmp_path, capsys, tiny_model_dir, items_file)
    db = tmp_path / "ray.duckdb"
    got = _json(capsys, _ray_collect(tiny_model_dir, items_file, db, tmp_path / "shards"))
    assert got["run_id"] == run_id and got["complete"] and got["scored"] == [0, 1, 2, 3] and got["n_items"] == 40
    rows = _tables(db, run_id)
    for table in TABLES:
        _same_rows(rows[table], want[table])
    assert rows["status"] == "complete" and rows["splits"] == want["splits"]
    # the same command again: every shard is merged already, nothing is scored or merged twice
    again = _json(capsys, _ray_collect(tiny_model_dir, items_file, db, tmp_path / "shards"))
    assert again["scored"] == [] and again["complete"]
    with Store.open(db) as store:
        assert store.counts(run_id)["outcomes"] == 40


@pytest.mark.ray_env({sh.CRASH_ONCE_ENV: "/tmp/wif-test-ray-crash-flag"})
def test_worker_killed_mid_shard_is_retried(tmp_path, capsys, tiny_model_dir, items_file, local_ray):
    flag = "/tmp/wif-test-ray-crash-flag"
    if os.path.exists(flag):
        os.unlink(flag)
    run_id, want = _reference(tmp_path, capsys, tiny_model_dir, items_file)
    db = tmp_path / "ray.duckdb"
    try:
        got = _json(capsys, _ray_collect(tiny_model_dir, items_file, db, tmp_path / "shards"))
        assert os.path.exists(flag)  # a worker did die mid-shard (after its first batch, before writing)
    finally:
        if os.path.exists(flag):
            os.unlink(flag)
    assert got["complete"] and got["n_items"] == 40
    rows = _tables(db, run_id)
    for table in TABLES:
        _same_rows(rows[table], want[table])  # every item once, as in one process
    assert not list((tmp_path / "shards").glob("*.partial-*"))  # the dead attempt's directory was cleaned


def test_restarted_driver_merges_nothing_twice(tmp_path, capsys, tiny_model_dir, items_file, local_ray):
    """What a driver killed mid-run leaves: shards 0 and 1 finished on disk, only shard 0 merged. Run again, the
    engine merges shard 1 as it is, scores shards 2 and 3 only, and the store ends as one collection's."""
    run_id, want = _reference(tmp_path, capsys, tiny_model_dir, items_file)
    out, db = tmp_path / "shards", tmp_path / "ray.duckdb"
    for i in (0, 1):
        _json(capsys, [*_collect(tiny_model_dir, items_file), "--shard", f"{i}/4", "--out", str(out)])
    with Store.open(db, write=True) as store:
        sh.ingest(store, out, shards=[0])
    got = _json(capsys, _ray_collect(tiny_model_dir, items_file, db, out))
    assert got["reused"] == [0, 1] and got["scored"] == [2, 3] and got["complete"]
    with Store.open(db) as store:
        assert sorted(store.merged_shards(run_id)) == [0, 1, 2, 3]
    rows = _tables(db, run_id)
    for table in TABLES:
        _same_rows(rows[table], want[table])
    # another shard count into the same directory: refused before anything is scored
    assert main(_ray_collect(tiny_model_dir, items_file, db, out, shards=3)) == 2
    assert "split into 4 shards, not 3" in capsys.readouterr().err


def test_unreachable_address_is_one_line(tmp_path, capsys, tiny_model_dir, items_file):
    argv = [
        *_ray_collect(tiny_model_dir, items_file, tmp_path / "x.duckdb", tmp_path / "s"),
        "--address",
        "127.0.0.1:1",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "cannot connect to the Ray cluster at 127.0.0.1:1" in err
    assert not ray.is_initialized()
