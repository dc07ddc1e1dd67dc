"""The store: schema version, bad files, transactions, read-only opening."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest

from wif_core.errors import StoreError
from wif_core.store import SCHEMA_VERSION, AttributionRow, OutcomeRow, RunInfo, Store
from wif_core.tasks.base import TaskItem


def _items(n: int = 4) -> list[TaskItem]:
    return [
        TaskItem(item_id=f"i{j}", task="piqa", context=f"Question: q{j}?\nAnswer:", choices=("a", "b"), gold=j % 2)
        for j in range(n)
    ]


def _store(path) -> Store:
    store = Store.open(path, write=True)
    run = RunInfo(
        run_id="r1",
        model="m",
        task="piqa",
        source="test",
        n_choices=2,
        family="two_choice",
        layers=[1],
        sites=["last", "choice"],
        token_layers=[1],
        d_model=3,
    )
    store.create_run(run, _items())
    return store


def test_roundtrip_activations_and_tokens(tmp_path):
    store = _store(tmp_path / "s.duckdb")
    rows = [
        OutcomeRow(
            item_id=f"i{j}",
            pred=0,
            correct=j % 2 == 0,
            margin=0.5,
            ll_sum=[-1.0, -2.0],
            ll_norm=[-0.1, -0.2],
            n_tokens=[1, 1],
            acts={
                (1, "last"): np.full(3, j, np.float32),
                (1, "choice"): np.arange(6, dtype=np.float32).reshape(2, 3),
                (1, "tokens"): np.full((j + 1, 3), j, np.float16),
            },
            tokens={"listing": (["a", "b"], [1, 2], 2)},
        )
        for j in range(4)
    ]
    store.write_outcomes("r1", rows[::-1])
    ids, acts = store.activations("r1", 1, "last")
    assert ids == ["i0", "i1", "i2", "i3"] and acts[:, 0].tolist() == [0, 1, 2, 3]  # item order, not write order
    ids, acts = store.activations("r1", 1, "choice", item_ids=["i3", "i1"])
    assert ids == ["i3", "i1"] and acts.shape == (2, 2, 3)
    assert store.tokens("r1", "i2") == {"listing": (["a", "b"], [1, 2], 2)}
    ids, per_token = store.token_activations("r1", 1, item_ids=["i2", "i0"])
    assert ids == ["i2", "i0"] and [a.shape for a in per_token] == [(3, 3), (1, 3)] and per_token[0][0, 0] == 2
    with pytest.raises(StoreError, match="no per-token activations at layer 2"):
        store.token_activations("r1", 2)
    with pytest.raises(StoreError, match="no activations at layer 2"):
        store.activations("r1", 2, "last")
    store.close()


def test_failed_batch_leaves_no_rows(tmp_path):
    store = _store(tmp_path / "s.duckdb")
    good = OutcomeRow(item_id="i0", pred=0, correct=True)
    duplicate = OutcomeRow(item_id="i0", pred=1, correct=False)
    with pytest.raises(duckdb.ConstraintException):
        store.write_outcomes("r1", [good, OutcomeRow(item_id="i1", pred=0, correct=False), duplicate])
    assert store.done_item_ids("r1") == set()
    store.write_outcomes("r1", [good])
    assert store.done_item_ids("r1") == {"i0"}
    store.close()


def test_read_only_refuses_writes_and_missing_store(tmp_path):
    path = tmp_path / "s.duckdb"
    _store(path).close()
    with Store.open(path) as ro:
        assert ro.run_ids() == ["r1"]
        with pytest.raises(StoreError, match="read-only"):
            ro.set_status("r1", "x")
    with pytest.raises(StoreError, match="no store at"):
        Store.open(tmp_path / "missing.duckdb")


def test_other_schema_version_and_non_duckdb_files(tmp_path):
    path = tmp_path / "s.duckdb"
    _store(path).close()
    con = duckdb.connect(str(path))
    con.execute("UPDATE wif_meta SET value = '99' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(StoreError, match=f"schema version 99; this wif reads version {SCHEMA_VERSION}"):
        Store.open(path)
    junk = tmp_path / "junk.duckdb"
    junk.write_text("hello")
    with pytest.raises(StoreError, match="not a DuckDB store"):
        Store.open(junk)
    other = tmp_path / "other.duckdb"
    duckdb.connect(str(other)).close()
    with pytest.raises(StoreError, match="not a wif store"):
        Store.open(other)


def test_unknown_run_lists_known_runs(tmp_path):
    with _store(tmp_path / "s.duckdb") as store, pytest.raises(StoreError, match="no run 'zz'.*runs there: r1"):
        store.run("zz")


def test_search_is_a_parameter(tmp_path):
    with _store(tmp_path / "s.duckdb") as store:
        store.write_outcomes("r1", [OutcomeRow(item_id=f"i{j}", pred=0, correct=j == 0) for j in range(4)])
        assert len(store.items("r1", search="q2")) == 1
        assert len(store.items("r1", search="'; DROP TABLE runs; --")) == 0
        assert store.run_ids() == ["r1"]
        assert len(store.items("r1", outcome="incorrect")) == 3


def test_version_1_store_is_migrated_in_place_and_keeps_its_data(tmp_path):
    path = tmp_path / "s.duckdb"
    _store(path).close()
    con = duckdb.connect(str(path))  # what a wif of schema 1 wrote: no attributions table
    con.execute("DROP TABLE attributions")
    con.execute("UPDATE wif_meta SET value = '1' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(StoreError, match="schema version 1; .*`wif migrate --db"):
        Store.open(path)  # the app opens read-only and must not write
    Store.open(path, write=True).close()
    with Store.open(path) as store:
        assert store.run_ids() == ["r1"] and store.counts("r1")["items"] == 4
        assert store.attributions("r1") == []


def test_attributions_roundtrip_replace_and_delete(tmp_path):
    store = _store(tmp_path / "s.duckdb")
    store.write_outcomes("r1", [OutcomeRow(item_id=f"i{j}", pred=0, correct=j % 2 == 0) for j in range(4)])

    def row(item: str, method: str, scale: float) -> AttributionRow:
        return AttributionRow(
            item_id=item,
            method=method,
            wrong_choice=1,
            right_choice=0,
            tokens=["a", "b"],
            segments=["context", "wrong"],
            scores=[scale, -1.0],
            delta=0.5,
            sum_scores=scale - 1.0,
            layer_profile=[0.1, 0.9],
            deletion={"k": [0, 1], "top": [0.5, 0.0], "random": [0.5, 0.3]},
            faithfulness=0.15,
            seconds=0.01,
            config={"steps": 8},
        )

    store.write_attributions("r1", [row("i2", "grad_x_input", 1.0), row("i0", "grad_x_input", 2.0)])
    store.write_attributions("r1", [row("i0", "grad_x_input", 3.0), row("i0", "attnlrp", 4.0)])  # replaces i0
    got = store.attributions("r1", "grad_x_input")
    assert [(a.item_id, a.scores[0]) for a in got] == [("i0", 3.0), ("i2", 1.0)]  # item order, replaced once
    assert got[0].deletion == {"k": [0, 1], "top": [0.5, 0.0], "random": [0.5, 0.3]} and got[0].config == {"steps": 8}
    assert len(store.attributions("r1")) == 3 and store.attributions("r1", item_ids=["i2"])[0].method == "grad_x_input"
    counts = store.attribution_counts("r1")
    assert counts["n"].sum() == 3 and set(counts["method"]) == {"attnlrp", "grad_x_input"}
    with pytest.raises(StoreError, match="no run 'zz'"):
        store.write_attributions("zz", [row("i0", "attnlrp", 1.0)])
    store.delete_run("r1")
    assert store.attributions("r1") == []


def test_version_2_store_is_migrated_and_its_runs_say_what_they_are(tmp_path):
    from wif_core.store.schema import _V3, _V4, _V5, _V6, DDL

    path = tmp_path / "v2.duckdb"
    con = duckdb.connect(str(path))  # what a wif of schema 2 wrote: no n_choices or family, zoo runs 'collected'
    for stmt in DDL[: len(DDL) - len(_V3) - len(_V4) - len(_V5) - len(_V6)]:
        con.execute(stmt)
    con.execute("INSERT INTO wif_meta VALUES ('schema_version', '2')")
    runs = [  # run_id, model, task, kind, config
        ("lm", "m", "piqa", "collected", "{}"),
        ("wg", "other", "winogrande", "imported", '{"kind": "imported"}'),
        ("zoo", "zoo:m16", "zoo-2nd_argmax-n10", "collected", '{"kind": "zoo"}'),
        ("cyc", "zoo:c", "zoo-longest_cycle-n5", "collected", '{"kind": "zoo"}'),
        ("odd", "m", "custom", "imported", "{}"),
    ]
    for run_id, model, task, kind, config in runs:
        con.execute(
            "INSERT INTO runs (run_id, model, task, source, kind, config, status, n_planned) "
            "VALUES (?, ?, ?, 'test', ?, ?, 'complete', 1)",
            [run_id, model, task, kind, config],
        )
        con.execute("INSERT INTO items VALUES (?, 'i0', 0, 'c', ['a', 'b', 'c', 'd'], 0, '{}', 'k')", [run_id])
    con.close()
    with pytest.raises(StoreError, match="schema version 2; .*`wif migrate --db"):
        Store.open(path)
    Store.open(path, write=True).close()
    with Store.open(path) as store:
        got = {r: (store.run(r).kind, store.run(r).n_choices, store.run(r).family) for r in store.run_ids()}
        assert store.counts("zoo")["items"] == 1
        assert store.run("lm").has_lm and not store.run("zoo").has_lm and not store.run("wg").has_lm
    assert got == {
        "lm": ("collected", 2, "two_choice"),  # named tasks: from the task table
        "wg": ("imported", 2, "fill_blank"),
        "zoo": ("zoo", 10, "zoo-position"),  # zoo names parsed; zoo runs get their own kind
        "cyc": ("zoo", 5, "zoo-class"),
        "odd": ("imported", 4, "unknown"),  # otherwise: the items' number of choices
    }
    fresh = tmp_path / "fresh.duckdb"
    Store.open(fresh, write=True).close()

    def columns(p) -> list[tuple]:
        with duckdb.connect(str(p), read_only=True) as c:
            return c.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns ORDER BY ALL"
            ).fetchall()

    assert columns(path) == columns(fresh)  # a migrated store has the schema of a new one


def test_run_record_carries_what_the_run_is(tmp_path):
    with _store(tmp_path / "s.duckdb") as store:
        run = store.run("r1")
    assert (run.kind, run.n_choices, run.family, run.has_lm) == ("collected", 2, "two_choice", True)
    with pytest.raises(TypeError):
        RunInfo("r2", "m", "piqa", "test", n_choices=2, family="two_choice")  # type: ignore[misc]  # by keyword only


def _columns(path) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as c:
        return c.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns ORDER BY ALL"
        ).fetchall()


def test_version_3_store_is_migrated_and_its_outcomes_say_nothing_was_cut(tmp_path):
    from wif_core.store.schema import _V4, _V5, _V6, DDL

    path = tmp_path / "v3.duckdb"
    con = duckdb.connect(str(path))  # what a wif of schema 3 wrote: no outcomes.truncated
    for stmt in DDL[: len(DDL) - len(_V4) - len(_V5) - len(_V6)]:
        con.execute(stmt)
    con.execute("INSERT INTO wif_meta VALUES ('schema_version', '3')")
    con.execute(
        "INSERT INTO runs (run_id, model, task, source, kind, status, n_planned, n_choices, family) "
        "VALUES ('r1', 'm', 'piqa', 'test', 'collected', 'complete', 2, 2, 'two_choice')"
    )
    for j in range(2):
        con.execute("INSERT INTO items VALUES ('r1', ?, ?, 'c', ['a', 'b'], 0, '{}', 'k')", [f"i{j}", j])
    con.execute("INSERT INTO outcomes VALUES ('r1', 'i0', 0, true, 1.0, [-1.0, -2.0], [-1.0, -2.0], [1, 1])")
    con.close()
    with pytest.raises(StoreError, match="schema version 3; .*`wif migrate --db"):
        Store.open(path)
    Store.open(path, write=True).close()
    with Store.open(path, write=True) as store:
        store.write_outcomes("r1", [OutcomeRow(item_id="i1", pred=1, correct=False, truncated=7)])
        frame = store.items("r1")
        assert frame["truncated"].isna().tolist() == [True, False] and int(frame["truncated"].iloc[1]) == 7
        assert store.n_truncated("r1") == 1
    fresh = tmp_path / "fresh.duckdb"
    Store.open(fresh, write=True).close()
    assert _columns(path) == _columns(fresh)  # a migrated store has the schema of a new one


def test_version_4_store_is_migrated_and_gains_the_quality_tables(tmp_path):
    from wif_core.store.schema import _V5, _V6, DDL

    path = tmp_path / "v4.duckdb"
    con = duckdb.connect(str(path))  # what a wif of schema 4 wrote: no item-quality tables
    for stmt in DDL[: len(DDL) - len(_V5) - len(_V6)]:
        con.execute(stmt)
    con.execute("INSERT INTO wif_meta VALUES ('schema_version', '4')")
    con.execute(
        "INSERT INTO runs (run_id, model, task, source, kind, status, n_planned, n_choices, family) "
        "VALUES ('r1', 'm', 'piqa', 'test', 'collected', 'complete', 1, 2, 'two_choice')"
    )
    con.execute("INSERT INTO items VALUES ('r1', 'i0', 0, 'c', ['a', 'b'], 0, '{}', 'k')")
    con.close()
    with pytest.raises(StoreError, match="schema version 4; .*`wif migrate --db"):
        Store.open(path)  # the app opens read-only and must not write
    Store.open(path, write=True).close()
    with Store.open(path) as store:
        assert store.run_ids() == ["r1"] and store.counts("r1")["items"] == 1
        assert store.quality_passes().empty and store.quality_flags().empty
    fresh = tmp_path / "fresh.duckdb"
    Store.open(fresh, write=True).close()
    assert _columns(path) == _columns(fresh)  # a migrated store has the schema of a new one
