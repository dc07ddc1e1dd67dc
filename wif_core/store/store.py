"""The DuckDB store: the only place in wif with SQL.

Writers open the file read-write and wrap every batch in one transaction, so a process
killed mid-write leaves no partial rows (DuckDB rolls the open transaction back on the
next open) and a resumed collection writes each item exactly once. Readers (the app)
open it read-only and take a fresh cursor per call, so several browser sessions can
read at once without sharing a connection across threads.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import pandas as pd

from wif_core.errors import StoreBusy, StoreError, one_line
from wif_core.store.schema import DDL, MIGRATIONS, SCHEMA_VERSION
from wif_core.tasks.base import TaskItem, item_key

WRITER_WAIT_S = 10.0  # how long a writer waits for readers (the app reads for moments) to let go
READER_WAIT_S = 3.0  # how long the app's reads wait for a writer's short transaction to end

RunKind = Literal["collected", "imported", "zoo"]
LM_KIND: RunKind = "collected"  # the one kind whose model is a language model wif loads and runs (attribution)


@dataclass(kw_only=True)
class RunInfo:
    """One model on one task with one template and one set of layers.

    ``kind`` says where the outcomes came from: ``collected`` (wif scored a language model it can load by
    ``model``: see ``has_lm``), ``imported`` (another tool's outcomes; no model) or ``zoo`` (an AlgZoo model
    run by ``wif_core.zoo``; not a language model). ``n_choices`` and ``family`` say what the run's items are,
    so that no reader looks them up by task name: ``family`` is a language-model task's format
    (``two_choice``, ``yes_no``, ``fill_blank``, ``three_choice``), ``zoo-position`` (the answer is a
    position in the input sequence) or ``zoo-class`` (a class, such as a cycle length); ``unknown`` only on a
    run migrated from schema 2 whose task wif could not name.
    """

    run_id: str
    model: str
    task: str
    source: str
    kind: RunKind = "collected"
    n_choices: int
    family: str
    template: str | None = None
    scoring: str | None = "sum"
    layers: list[int] = field(default_factory=list)
    sites: list[str] = field(default_factory=list)
    token_layers: list[int] = field(default_factory=list)
    n_layers: int | None = None
    d_model: int | None = None
    act_dtype: str = "float16"
    seed: int = 0
    split_config: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    status: str = "collecting"
    n_planned: int = 0

    @property
    def has_lm(self) -> bool:
        """Whether wif can load this run's model as a language model and run it (to attribute, for one)."""
        return self.kind == LM_KIND


@dataclass(kw_only=True)
class OutcomeRow:
    """A scored outcome to write; activations and tokens are optional (imports have none).

    ``ll_sum`` may hold None for a choice that was never scored (an imported file's null); it is stored as a
    NULL element, and ``Store.items`` reads it back as NaN.
    """

    item_id: str
    pred: int | None
    correct: bool
    margin: float | None = None
    ll_sum: Sequence[float | None] | None = None
    ll_norm: list[float] | None = None
    n_tokens: list[int] | None = None
    acts: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)
    tokens: dict[str, tuple[list[str], list[int], int]] = field(default_factory=dict)
    truncated: int | None = None  # context tokens cut from the left to fit the model; None: not scored by wif


@dataclass(kw_only=True)
class AttributionRow:
    """One item's contrastive attribution by one method (see wif_core.attribution)."""

    item_id: str
    method: str
    wrong_choice: int
    right_choice: int
    tokens: list[str]
    segments: list[str]
    scores: list[float]
    delta: float
    sum_scores: float
    layer_profile: list[float] | None = None
    deletion: dict[str, list[float]] | None = None
    faithfulness: float | None = None
    seconds: float | None = None
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class SuspectRow:
    """One item that an item-quality pass (``wif_core.label_quality``) flags as a suspect label, with its evidence."""

    item_id: str
    key: str
    reasons: list[str]  # 'gold_conflict', 'consensus', 'confident_learning'
    score: float  # 1 - P(the given answer is right) under the pass's probabilities; 1.0 where it has none
    suggested: int | None  # the choice the evidence favours (the run's option order), when one does
    evidence: dict[str, Any] = field(default_factory=dict)


_ATTR_COLS = [
    "item_id",
    "method",
    "wrong_choice",
    "right_choice",
    "tokens",
    "segments",
    "scores",
    "delta",
    "sum_scores",
    "layer_profile",
    "deletion",
    "faithfulness",
    "seconds",
    "config",
]

_RUN_COLS = [
    "run_id",
    "model",
    "task",
    "source",
    "kind",
    "template",
    "scoring",
    "layers",
    "sites",
    "token_layers",
    "n_layers",
    "d_model",
    "act_dtype",
    "seed",
    "split_config",
    "config",
    "status",
    "n_planned",
    "n_choices",
    "family",
]


def _connect(path: Path, write: bool, wait: float) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection to ``path``, retried for up to ``wait`` seconds while another process holds its lock."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return duckdb.connect(str(path), read_only=not write)
        except duckdb.IOException as exc:
            msg = one_line(exc)
            if "lock" not in msg.lower():
                raise StoreError(f"{path} is not a DuckDB store ({msg}); point --db at a wif store") from None
            if time.monotonic() >= deadline:
                raise StoreBusy(f"{path} is in use by another wif process ({msg}); close it and retry") from None
            time.sleep(0.1)


class Store:
    """A wif store file. Use ``Store.open(path)`` to read, ``Store.open(path, write=True)`` to write."""

    _holds = True  # holds its connection from open to close; False for ``Store.reader``

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, read_only: bool, created: bool = False) -> None:
        self._con = con
        self.path = path
        self.read_only = read_only
        self.created = created  # this Store made the file: a failed `with` block leaves no empty store behind
        self._lock = threading.Lock()

    # ---- opening -----------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, write: bool = False, wait: float = WRITER_WAIT_S) -> Store:
        """Open a store; create it when writing to a new path. Checks the schema version.

        DuckDB lets one process write a file or several read it, never both. A writer waits up to
        ``wait`` seconds for readers to let go (the app holds the file only while it reads); a
        reader, or a writer still locked out, gets ``StoreBusy``.
        """
        path = Path(path)
        if not write and not path.exists():
            raise StoreError(f"no store at {path}; build one with `wif demo` or `wif collect --db {path} ...`")
        is_new = not path.exists()
        if is_new:
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = _connect(path, write, wait if write else 0.0)
        except duckdb.Error as exc:
            raise StoreError(f"cannot open {path}: {one_line(exc)}") from None
        store = cls(con, path, not write, created=is_new)
        if is_new:
            store._create()
        else:
            store._check_version()
        return store

    @classmethod
    def reader(cls, path: str | Path) -> Store:
        """A read-only store that holds the file only while a call reads it, so that a writer in another
        process can take it between reads (the app's store).

        Each call opens a connection of its own, closed when the call is done; while a writer holds
        the file, a call raises ``StoreBusy``. Opening here checks the file once, as ``open`` does.
        """
        store = cls.open(path)
        store._con.close()
        store._holds = False
        return store

    def _create(self) -> None:
        with self.transaction() as cur:
            for stmt in DDL:
                cur.execute(stmt)
            cur.execute("INSERT INTO wif_meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])

    def _check_version(self) -> None:
        try:
            row = self._cur().execute("SELECT value FROM wif_meta WHERE key = 'schema_version'").fetchone()
        except duckdb.CatalogException:
            raise StoreError(f"{self.path} is a DuckDB file but not a wif store (no wif_meta table)") from None
        version = int(row[0]) if row else -1
        if version < SCHEMA_VERSION and all(v in MIGRATIONS for v in range(version, SCHEMA_VERSION)):
            if self.read_only:
                raise StoreError(
                    f"{self.path} has store schema version {version}; this wif reads version {SCHEMA_VERSION}: "
                    f"upgrade it in place with `wif migrate --db {self.path}`"
                )
            self._migrate(version)
            return
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has store schema version {version}; this wif reads version {SCHEMA_VERSION}: "
                "rebuild it with `wif collect`/`wif import`, or use the wif release that wrote it"
            )

    def _migrate(self, version: int) -> None:
        """Upgrade an older store in place, one all-or-nothing transaction."""
        with self.transaction() as cur:
            for v in range(version, SCHEMA_VERSION):
                for stmt in MIGRATIONS[v]:
                    cur.execute(stmt)
            cur.execute("UPDATE wif_meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)])

    def close(self) -> None:
        if self._holds:
            self._con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        """Close; when the block failed on a store file this Store created and no run was written, remove the
        file too, so a failed command leaves no empty store where there was none."""
        empty = False
        if exc_type is not None and self.created:
            try:
                empty = not self.run_ids()
            except duckdb.Error:
                empty = False
        self.close()
        if empty:
            for path in (self.path, self.path.with_name(self.path.name + ".wal")):
                path.unlink(missing_ok=True)

    def _cur(self) -> duckdb.DuckDBPyConnection:
        """A cursor of its own for this call: DuckDB connections must not be shared across threads.

        A ``reader`` opens a connection instead; it closes when the call drops it, and with the
        process's last connection to the file goes its lock.
        """
        if not self._holds:  # a writer's short transaction (a demo build copying a run in) is waited out
            return _connect(self.path, False, READER_WAIT_S)
        return self._con.cursor()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One all-or-nothing write."""
        if self.read_only:
            raise StoreError(f"{self.path} was opened read-only")
        with self._lock:
            cur = self._cur()
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    # ---- writes ------------------------------------------------------------------
    def create_run(self, run: RunInfo, items: Sequence[TaskItem]) -> None:
        """Register a run and all its planned items in one transaction."""
        run.n_planned = len(items)
        with self.transaction() as cur:
            cur.execute(
                f"INSERT INTO runs ({', '.join(_RUN_COLS)}) VALUES ({', '.join('?' * len(_RUN_COLS))})",
                [_run_value(run, c) for c in _RUN_COLS],
            )
            cur.register("new_items", items_frame(run.run_id, items))
            cur.execute("INSERT INTO items SELECT * FROM new_items")
            cur.unregister("new_items")

    def write_outcomes(self, run_id: str, rows: Sequence[OutcomeRow], act_dtype: str = "float16") -> None:
        """Write one batch of outcomes with their activations and tokens, all or nothing."""
        if not rows:
            return
        frames = outcome_frames(run_id, rows, act_dtype)
        with self.transaction() as cur:
            # registered frames, not executemany: one row at a time costs ~1 ms per row
            for table, frame in frames.items():
                if len(frame):
                    cur.register("new_rows", frame)
                    cur.execute(f"INSERT INTO {table} BY NAME SELECT * FROM new_rows")  # noqa: S608 - fixed names
                    cur.unregister("new_rows")

    # ---- shards and Parquet (wif_core.engines.shards says what the files are) -----------------------------------
    def merged_shards(self, run_id: str) -> dict[int, str]:
        """The shards of ``run_id`` already merged into this store: shard index → the directory it came from."""
        rows = self._cur().execute("SELECT shard, source FROM shards WHERE run_id = ?", [run_id]).fetchall()
        return {int(r[0]): str(r[1]) for r in rows}

    def merge_shard(
        self, run_id: str, *, shard: int, n_shards: int, source: str, files: dict[str, Path], item_ids: Sequence[str]
    ) -> int:
        """Merge one finished shard's Parquet files (table → file; tables of ``SHARD_TABLES``) into run ``run_id``,
        in one transaction with the row that records it, so that a shard is merged exactly once: a shard merged
        before, an item the run does not plan, or an item that already has an outcome is refused and nothing of
        the shard is written. Returns the outcomes merged."""
        planned = {r[0] for r in self._cur().execute("SELECT item_id FROM items WHERE run_id = ?", [run_id]).fetchall()}
        foreign = [i for i in item_ids if i not in planned]
        if foreign:
            raise StoreError(
                f"{source}: item '{foreign[0]}' is not an item of run {run_id} ({len(foreign)} such); this shard "
                "was written for other items: collect it again with the run's command"
            )
        with self.transaction() as cur:
            row = cur.execute("SELECT source FROM shards WHERE run_id = ? AND shard = ?", [run_id, shard]).fetchone()
            if row is not None:
                raise StoreError(f"{source}: shard {shard} of run {run_id} was merged before (from {row[0]})")
            cur.execute(
                "INSERT INTO shards (run_id, shard, n_shards, n_items, source) VALUES (?, ?, ?, ?, ?)",
                [run_id, shard, n_shards, len(item_ids), source],
            )
            cur.register("shard_items", pd.DataFrame({"item_id": list(item_ids)}))
            done = cur.execute(
                "SELECT item_id FROM outcomes JOIN shard_items USING (item_id) WHERE run_id = ? LIMIT 1", [run_id]
            ).fetchone()
            cur.unregister("shard_items")
            if done is not None:
                raise StoreError(
                    f"{source}: item '{done[0]}' of run {run_id} already has an outcome in {self.path}; a shard "
                    "overlaps items merged before (from another split into shards?), so nothing of it is merged"
                )
            if "activations" in files:
                run = self.run(run_id)
                stray = cur.execute(
                    "SELECT DISTINCT layer, site FROM read_parquet(?) WHERE NOT list_contains(?::INTEGER[], layer) "
                    "OR NOT list_contains(?::VARCHAR[], site) LIMIT 1",
                    [str(files["activations"]), run.layers, run.sites],
                ).fetchone()
                if stray is not None:
                    raise StoreError(
                        f"{files['activations']}: activations at layer {stray[0]}, site '{stray[1]}', but run "
                        f"{run_id} records layers {run.layers} and sites {run.sites}; the shard belongs to another run"
                    )
            for table in SHARD_TABLES:
                if table not in files:
                    continue
                got = cur.execute(
                    "SELECT count(*) FROM read_parquet(?) WHERE item_id NOT IN (SELECT unnest(?::VARCHAR[]))",  # noqa: S608
                    [str(files[table]), list(item_ids)],
                ).fetchone()
                if got and got[0]:
                    raise StoreError(
                        f"{files[table]}: {got[0]} rows of items the shard does not list; the shard is damaged: "
                        "delete its directory and collect it again"
                    )
                cur.execute(
                    f"INSERT INTO {table} BY NAME SELECT * REPLACE (? AS run_id) FROM read_parquet(?)",  # noqa: S608
                    [run_id, str(files[table])],
                )
        return len(item_ids)

    def write_parquet(self, table: str, run_id: str, path: Path, where: str = "", params: Sequence[Any] = ()) -> int:
        """Write the rows of ``run_id`` in ``table`` (one of wif's tables; ``where`` a fixed extra condition on
        its columns, ``params`` its values) as one Parquet file; returns the rows written."""
        if table not in _PARQUET_TABLES:
            raise StoreError(f"no table '{table}' to export (tables: {', '.join(_PARQUET_TABLES)})")
        query = f"SELECT * FROM {table} WHERE run_id = ?{' AND ' + where if where else ''}"  # noqa: S608 - fixed
        cur = self._cur()
        cur.sql(query, params=[run_id, *params]).write_parquet(str(path))
        row = cur.execute("SELECT count(*) FROM read_parquet(?)", [str(path)]).fetchone()
        return int(row[0]) if row else 0

    def activation_keys(self, run_id: str) -> list[tuple[int, str]]:
        """The (layer, site) pairs of a run that have stored activations."""
        rows = (
            self._cur()
            .execute("SELECT DISTINCT layer, site FROM activations WHERE run_id = ? ORDER BY layer, site", [run_id])
            .fetchall()
        )
        return [(int(r[0]), str(r[1])) for r in rows]

    def set_status(self, run_id: str, status: str) -> None:
        with self.transaction() as cur:
            cur.execute("UPDATE runs SET status = ? WHERE run_id = ?", [status, run_id])

    def write_splits(
        self,
        run_id: str,
        splits: pd.DataFrame,
        findings: Iterable[tuple[str, str, list[str], str]],
        split_config: dict[str, Any],
    ) -> None:
        """Replace a run's splits and leakage findings (``splits``: item_id, split, excluded, reason)."""
        frame = splits[["item_id", "split", "excluded", "reason"]].copy()
        frame.insert(0, "run_id", run_id)
        with self.transaction() as cur:
            cur.execute("DELETE FROM splits WHERE run_id = ?", [run_id])
            cur.execute("DELETE FROM findings WHERE run_id = ?", [run_id])
            cur.register("new_splits", frame)
            cur.execute("INSERT INTO splits SELECT * FROM new_splits")
            cur.unregister("new_splits")
            rows = [(run_id, kind, key, ids, detail) for kind, key, ids, detail in findings]
            if rows:
                cur.executemany("INSERT INTO findings VALUES (?, ?, ?, ?, ?)", rows)
            cur.execute("UPDATE runs SET split_config = ? WHERE run_id = ?", [json.dumps(split_config), run_id])

    def write_quality(
        self,
        run_id: str,
        rows: Sequence[SuspectRow],
        *,
        n_items: int,
        signals: Sequence[str],
        config: dict[str, Any],
    ) -> None:
        """Replace a run's item-quality pass: what it used (``config``) and the items it flagged, all or nothing.

        Kept apart from the leakage findings, which a split rewrite replaces."""
        self.run(run_id)
        flags = [
            (run_id, r.item_id, r.key, list(r.reasons), float(r.score), r.suggested, json.dumps(r.evidence))
            for r in rows
        ]
        with self.transaction() as cur:
            cur.execute("DELETE FROM quality_flags WHERE run_id = ?", [run_id])
            cur.execute("DELETE FROM quality_passes WHERE run_id = ?", [run_id])
            cur.execute(
                "INSERT INTO quality_passes (run_id, n_items, n_flagged, signals, config) VALUES (?, ?, ?, ?, ?)",
                [run_id, int(n_items), len(rows), list(signals), json.dumps(config)],
            )
            if flags:
                cur.executemany("INSERT INTO quality_flags VALUES (?, ?, ?, ?, ?, ?, ?)", flags)

    def write_attributions(self, run_id: str, rows: Sequence[AttributionRow]) -> None:
        """Store (or replace) attributions of items by method, all or nothing."""
        if not rows:
            return
        self.run(run_id)
        frame = pd.DataFrame(
            {
                c: [json.dumps(getattr(r, c)) if c in ("deletion", "config") else getattr(r, c) for r in rows]
                for c in _ATTR_COLS
            }
        )
        frame.insert(0, "run_id", run_id)
        for col in ("wrong_choice", "right_choice"):
            frame[col] = frame[col].astype("int32")
        for col in ("faithfulness", "seconds"):
            frame[col] = pd.array(frame[col], dtype="Float64")
        cols = ", ".join(["run_id", *_ATTR_COLS])
        with self.transaction() as cur:
            cur.register("new_attributions", frame)
            cur.execute(
                """DELETE FROM attributions a USING new_attributions n
                   WHERE a.run_id = n.run_id AND a.item_id = n.item_id AND a.method = n.method"""
            )
            cur.execute(f"INSERT INTO attributions ({cols}) SELECT {cols} FROM new_attributions")  # noqa: S608
            cur.unregister("new_attributions")

    def delete_run(self, run_id: str) -> dict[str, int]:
        """Remove a run's rows from every table that has a ``run_id``, in one transaction: a run is deleted
        whole or not at all. Returns the rows removed per table (``runs`` last)."""
        with self.transaction() as cur:
            removed = {}
            for table in _run_tables(cur):
                row = cur.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id]).fetchone()  # noqa: S608
                removed[table] = int(row[0]) if row else 0
        return removed

    def copy_runs(self, source: Store, run_ids: Sequence[str]) -> dict[str, int]:
        """Copy runs whole from ``source`` (another store of this schema, open for reading) into this one, in
        one transaction: a run already here is replaced by the copy, and a kill leaves either the old rows or
        the new. Returns the rows copied per table. How work done elsewhere (a demo build's part store, a
        collection in another file) lands in a store that the app reads between writes."""
        missing = [r for r in run_ids if r not in set(source.run_ids())]
        if missing:
            raise StoreError(f"{source.path} has no run '{missing[0]}' to copy (it has {', '.join(source.run_ids())})")
        copied: dict[str, int] = {}
        src = source._cur()
        with self.transaction() as cur:
            tables = _run_tables(cur)
            for run_id in run_ids:
                for table in tables:
                    cur.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])  # noqa: S608 - wif's table names
                for table in reversed(tables):  # the runs row first
                    cols = ", ".join(
                        r[0]
                        for r in cur.execute(
                            "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                            "AND table_catalog = current_database() AND table_schema = 'main' ORDER BY ordinal_position",
                            [table],
                        ).fetchall()
                    )
                    rows = src.execute(f"SELECT {cols} FROM {table} WHERE run_id = ?", [run_id]).df()  # noqa: S608
                    if len(rows):
                        cur.register("copied_rows", rows)
                        cur.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM copied_rows")  # noqa: S608
                        cur.unregister("copied_rows")
                    copied[table] = copied.get(table, 0) + len(rows)
        return copied

    # ---- reads -------------------------------------------------------------------
    def run(self, run_id: str) -> RunInfo:
        """A run's record, or a clear error listing the runs the store has."""
        row = self._cur().execute(f"SELECT {', '.join(_RUN_COLS)} FROM runs WHERE run_id = ?", [run_id]).fetchone()
        if row is None:
            known = ", ".join(self.run_ids()[:8]) or "none"
            raise StoreError(f"no run '{run_id}' in {self.path}; runs there: {known} (see `wif runs`)")
        values = dict(zip(_RUN_COLS, row, strict=True))
        values["split_config"] = json.loads(values["split_config"] or "{}")
        values["config"] = json.loads(values["config"] or "{}")
        values["layers"] = list(values["layers"] or [])
        values["sites"] = list(values["sites"] or [])
        values["token_layers"] = list(values["token_layers"] or [])
        return RunInfo(**values)

    def run_ids(self) -> list[str]:
        return [r[0] for r in self._cur().execute("SELECT run_id FROM runs ORDER BY created, run_id").fetchall()]

    def runs(self) -> pd.DataFrame:
        """One row per run: what it is, how it went, its class balance and leakage count."""
        return (
            self._cur()
            .execute(
                """
            SELECT r.run_id, r.model, r.task, r.source, r.kind, r.status, r.layers, r.sites, r.scoring,
                   r.n_planned, r.created,
                   count(o.item_id) AS n_items,
                   avg(o.correct::INT) AS accuracy,
                   count(o.item_id) FILTER (WHERE o.correct) AS n_correct,
                   count(o.item_id) FILTER (WHERE NOT o.correct) AS n_incorrect,
                   coalesce(max(s.n_split), 0) AS n_in_splits,
                   coalesce(max(s.n_excluded), 0) AS n_duplicates
            FROM runs r
            LEFT JOIN outcomes o USING (run_id)
            LEFT JOIN (SELECT run_id, count(*) AS n_split, count(*) FILTER (WHERE excluded) AS n_excluded
                       FROM splits GROUP BY run_id) s USING (run_id)
            GROUP BY ALL
            ORDER BY r.created, r.run_id
            """
            )
            .df()
        )

    def done_item_ids(self, run_id: str) -> set[str]:
        rows = self._cur().execute("SELECT item_id FROM outcomes WHERE run_id = ?", [run_id]).fetchall()
        return {r[0] for r in rows}

    def n_truncated(self, run_id: str) -> int:
        """How many of a run's scored items lost context tokens to fit the model."""
        row = (
            self._cur().execute("SELECT count(*) FROM outcomes WHERE run_id = ? AND truncated > 0", [run_id]).fetchone()
        )
        return int(row[0]) if row else 0

    def task_items(self, run_id: str) -> list[TaskItem]:
        """A run's items as TaskItems, in their planned order."""
        task = self.run(run_id).task
        rows = (
            self._cur()
            .execute(
                "SELECT item_id, context, choices, gold, meta FROM items WHERE run_id = ? ORDER BY position",
                [run_id],
            )
            .fetchall()
        )
        return [
            TaskItem(item_id=i, task=task, context=c, choices=tuple(ch), gold=g, meta=json.loads(m or "{}"))
            for i, c, ch, g, m in rows
        ]

    def items(
        self,
        run_id: str,
        outcome: str | None = None,
        split: str | None = None,
        search: str | None = None,
        limit: int | None = None,
        include_excluded: bool = True,
        *,
        item_ids: Sequence[str] | None = None,
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Items of a run joined with outcomes and splits, filtered; every value is a SQL parameter.

        ``item_ids`` keeps only those items (still in item order); ``columns`` reads only those of ``ITEM_COLUMNS``
        (the list columns and the texts are what a read of a large run spends its time on); ``limit`` the first
        rows in item order."""
        where, params = _item_filter(
            run_id, outcome=outcome, split=split, search=search, include_excluded=include_excluded, item_ids=item_ids
        )
        cols = list(ITEM_COLUMNS) if columns is None else list(columns)
        unknown = [c for c in cols if c not in ITEM_COLUMNS]
        if unknown:
            raise StoreError(f"no item column '{unknown[0]}' (columns: {', '.join(ITEM_COLUMNS)})")
        sql = f"""
            SELECT {", ".join(ITEM_COLUMNS[c] for c in cols)}
            FROM items i
            JOIN outcomes o ON o.run_id = i.run_id AND o.item_id = i.item_id
            LEFT JOIN splits s ON s.run_id = i.run_id AND s.item_id = i.item_id
            WHERE {where}
            ORDER BY i.position
        """  # noqa: S608 - the column names and WHERE parts are fixed strings; values are parameters
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        frame = self._cur().execute(sql, params).df()
        for col in ("ll_sum", "ll_norm"):
            if col in frame:
                frame[col] = frame[col].map(_scores_cell)
        return frame

    def count_items(
        self,
        run_id: str,
        outcome: str | None = None,
        split: str | None = None,
        search: str | None = None,
        include_excluded: bool = True,
        *,
        item_ids: Sequence[str] | None = None,
    ) -> int:
        """How many items ``items`` returns with these filters (and no limit), counted in SQL."""
        where, params = _item_filter(
            run_id, outcome=outcome, split=split, search=search, include_excluded=include_excluded, item_ids=item_ids
        )
        sql = f"""SELECT count(*) FROM items i
            JOIN outcomes o ON o.run_id = i.run_id AND o.item_id = i.item_id
            LEFT JOIN splits s ON s.run_id = i.run_id AND s.item_id = i.item_id
            WHERE {where}"""  # noqa: S608 - the WHERE parts are fixed strings; values are parameters
        row = self._cur().execute(sql, params).fetchone()
        return int(row[0]) if row else 0

    def failed_by_key(self, run_id: str) -> dict[str, float]:
        """A run's outcome per item key (1.0 = failed), over all its scored items; NaN for a key whose
        duplicates it scored both ways."""
        rows = (
            self._cur()
            .execute(
                """SELECT i.key, avg((NOT o.correct)::INT) FROM items i JOIN outcomes o USING (run_id, item_id)
                   WHERE i.run_id = ? GROUP BY i.key""",
                [run_id],
            )
            .fetchall()
        )
        return {k: (float(v) if v in (0.0, 1.0) else float("nan")) for k, v in rows}

    def split_counts(self, run_id: str | None = None) -> pd.DataFrame:
        """Scored items per (run_id, split, correct, excluded), with count ``n``: each split's class balance.

        Items without a split row (splits not drawn yet) have split ``None``.
        """
        where, params = ("WHERE o.run_id = ?", [run_id]) if run_id is not None else ("", [])
        sql = f"""
            SELECT o.run_id, s.split, o.correct, coalesce(s.excluded, false) AS excluded, count(*) AS n
            FROM outcomes o
            LEFT JOIN splits s ON s.run_id = o.run_id AND s.item_id = o.item_id
            {where}
            GROUP BY ALL
            ORDER BY o.run_id, s.split, o.correct, excluded
        """  # noqa: S608 - the WHERE part is a fixed string; the value is a parameter
        return self._cur().execute(sql, params).df()

    def findings(self, run_id: str | None = None) -> pd.DataFrame:
        if run_id is None:
            return self._cur().execute("SELECT * FROM findings ORDER BY run_id, kind").df()
        return self._cur().execute("SELECT * FROM findings WHERE run_id = ? ORDER BY kind", [run_id]).df()

    def quality_passes(self, run_id: str | None = None) -> pd.DataFrame:
        """One row per run that had an item-quality pass: run_id, n_items, n_flagged, signals, config (a dict)."""
        cols = "run_id, n_items, n_flagged, signals, config, created"
        if run_id is None:
            frame = self._cur().execute(f"SELECT {cols} FROM quality_passes ORDER BY run_id").df()  # noqa: S608
        else:
            frame = self._cur().execute(f"SELECT {cols} FROM quality_passes WHERE run_id = ?", [run_id]).df()  # noqa: S608
        frame["config"] = frame["config"].map(lambda v: json.loads(v or "{}"))
        frame["signals"] = frame["signals"].map(list)
        return frame

    def quality_flags(self, run_id: str | None = None) -> pd.DataFrame:
        """Suspect labels (item-quality flags), in item order: run_id, item_id, key, reasons, score, suggested,
        evidence (a dict)."""
        where, params = ("WHERE q.run_id = ?", [run_id]) if run_id is not None else ("", [])
        sql = f"""SELECT q.run_id, q.item_id, q.key, q.reasons, q.score, q.suggested, q.evidence
                  FROM quality_flags q LEFT JOIN items i USING (run_id, item_id)
                  {where} ORDER BY q.run_id, i.position"""  # noqa: S608 - the WHERE part is a fixed string
        frame = self._cur().execute(sql, params).df()
        frame["evidence"] = frame["evidence"].map(lambda v: json.loads(v or "{}"))
        frame["reasons"] = frame["reasons"].map(list)
        frame["suggested"] = frame["suggested"].astype("Int64")
        return frame

    def activations(
        self, run_id: str, layer: int, site: str, item_ids: Sequence[str] | None = None
    ) -> tuple[list[str], np.ndarray]:
        """Activations at (layer, site) as ``[n, d]`` (or ``[n, k, d]`` for ``choice``), in item order."""
        run = self.run(run_id)
        if layer not in run.layers or site not in run.sites:
            raise StoreError(
                f"run {run_id} has no activations at layer {layer}, site '{site}'; "
                f"it has layers {run.layers} and sites {run.sites}"
            )
        where, params = "a.run_id = ? AND a.layer = ? AND a.site = ?", [run_id, layer, site]
        if item_ids is not None:
            where += " AND a.item_id IN (SELECT unnest(?::VARCHAR[]))"
            params.append(list(item_ids))
        cur = self._cur()
        count = cur.execute(f"SELECT count(*) FROM activations a WHERE {where}", params).fetchone()  # noqa: S608
        n = int(count[0]) if count else 0
        dtype = np.dtype(run.act_dtype).newbyteorder("<")
        d = run.d_model or 0
        cur.execute(
            f"""SELECT a.item_id, a.vec FROM activations a JOIN items i USING (run_id, item_id)
                WHERE {where} ORDER BY i.position""",  # noqa: S608 - fixed strings; values are parameters
            params,
        )
        # streamed into one float32 array: a layer of a large run is read once, never held as bytes beside it
        ids: list[str] = []
        out: np.ndarray | None = None
        while rows := cur.fetchmany(_ACT_ROWS):
            block = np.frombuffer(b"".join(r[1] for r in rows), dtype=dtype).reshape(len(rows), -1)
            if out is None:
                out = np.empty((n, block.shape[1]), dtype=np.float32)
            out[len(ids) : len(ids) + len(rows)] = block
            ids += [r[0] for r in rows]
        if out is None:
            return ids, np.zeros((0, d), dtype=np.float32)
        out = out[: len(ids)]
        if item_ids is not None:  # the order asked for (item order when ``item_ids`` is, as RunData asks)
            wanted = {i: k for k, i in enumerate(item_ids)}
            order = np.argsort([wanted[i] for i in ids], kind="stable")
            if (np.diff(order) < 0).any():
                out, ids = out[order], [ids[k] for k in order]
        return ids, out.reshape((len(ids), -1, d) if site == "choice" else (len(ids), d))

    def token_activations(
        self, run_id: str, layer: int, item_ids: Sequence[str] | None = None
    ) -> tuple[list[str], list[np.ndarray]]:
        """Per-token activations of the listing prompt at ``layer``: one ``[n_tokens, d]`` array per item."""
        run = self.run(run_id)
        if layer not in run.token_layers:
            raise StoreError(
                f"run {run_id} has no per-token activations at layer {layer} (it has {run.token_layers or 'none'}); "
                "collect with --token-layers"
            )
        rows = _in_order(self._token_rows(run_id, layer, with_vectors=True), item_ids)
        dtype = np.dtype(run.act_dtype).newbyteorder("<")
        d = run.d_model or 0
        return [r[0] for r in rows], [np.frombuffer(r[2], dtype=dtype).reshape(r[1], d) for r in rows]

    def token_item_ids(self, run_id: str, layer: int) -> list[str]:
        """The items that have per-token activations at ``layer``, in item order (no vectors read)."""
        return [r[0] for r in self._token_rows(run_id, layer, with_vectors=False)]

    def _token_rows(self, run_id: str, layer: int, with_vectors: bool) -> list[Any]:
        """(item_id[, n_tokens, vec]) of the per-token activations at ``layer``, in item order."""
        cols = "a.item_id, a.n_tokens, a.vec" if with_vectors else "a.item_id"
        sql = f"""SELECT {cols} FROM token_activations a JOIN items i USING (run_id, item_id)
                  WHERE a.run_id = ? AND a.layer = ? ORDER BY i.position"""  # noqa: S608 - fixed column lists
        return self._cur().execute(sql, [run_id, layer]).fetchall()

    def tokens(self, run_id: str, item_id: str) -> dict[str, tuple[list[str], list[int], int]]:
        rows = (
            self._cur()
            .execute(
                "SELECT seq, tokens, ids, cont_start FROM tokens WHERE run_id = ? AND item_id = ? ORDER BY seq",
                [run_id, item_id],
            )
            .fetchall()
        )
        return {seq: (list(t), list(i), int(s)) for seq, t, i, s in rows}

    def attributions(
        self, run_id: str, method: str | None = None, item_ids: Sequence[str] | None = None
    ) -> list[AttributionRow]:
        """Stored attributions of a run (one method, or all), in item order."""
        where, params = "a.run_id = ?", [run_id]
        if method is not None:
            where += " AND a.method = ?"
            params.append(method)
        cols = ", ".join(f"a.{c}" for c in _ATTR_COLS)
        sql = f"""SELECT {cols} FROM attributions a JOIN items i USING (run_id, item_id)
                  WHERE {where} ORDER BY i.position, a.method"""  # noqa: S608 - fixed strings; values are parameters
        rows = _in_order(self._cur().execute(sql, params).fetchall(), item_ids)
        out = []
        for row in rows:
            values = dict(zip(_ATTR_COLS, row, strict=True))
            values["deletion"] = json.loads(values["deletion"]) if values["deletion"] else None
            values["config"] = json.loads(values["config"] or "{}")
            for key in ("tokens", "segments", "scores", "layer_profile"):
                values[key] = list(values[key]) if values[key] is not None else None
            out.append(AttributionRow(**values))
        return out

    def attribution_counts(self, run_id: str | None = None) -> pd.DataFrame:
        """Attributed items per (run_id, method, correct), with the mean faithfulness."""
        where, params = ("WHERE a.run_id = ?", [run_id]) if run_id is not None else ("", [])
        sql = f"""
            SELECT a.run_id, a.method, o.correct, count(*) AS n, avg(a.faithfulness) AS faithfulness
            FROM attributions a JOIN outcomes o USING (run_id, item_id)
            {where}
            GROUP BY ALL ORDER BY a.run_id, a.method, o.correct
        """  # noqa: S608 - the WHERE part is a fixed string; the value is a parameter
        return self._cur().execute(sql, params).df()

    def counts(self, run_id: str) -> dict[str, int]:
        """Row counts per table for a run (used to check resume wrote nothing twice)."""
        out = {}
        for table in ("items", "outcomes", "activations", "token_activations", "tokens", "splits", "attributions"):
            q = f"SELECT count(*) FROM {table} WHERE run_id = ?"  # noqa: S608 - fixed names
            out[table] = int(self._cur().execute(q, [run_id]).fetchone()[0])  # type: ignore[index]
        return out

    def attribution_keys(self, run_id: str) -> set[tuple[str, str]]:
        """The (item_id, method) pairs of a run that have a stored attribution (no scores read)."""
        rows = self._cur().execute("SELECT item_id, method FROM attributions WHERE run_id = ?", [run_id]).fetchall()
        return {(r[0], r[1]) for r in rows}


_ACT_ROWS = 2048  # activation rows fetched at a time (about 10 MB at width 2304 in float16)

# the tables whose rows a shard carries (an item's outcome, its activations and its tokens), in merge order
SHARD_TABLES = ("outcomes", "activations", "token_activations", "tokens")
_PARQUET_TABLES = ("items", *SHARD_TABLES, "splits")


def items_frame(run_id: str, items: Sequence[TaskItem]) -> pd.DataFrame:
    """A run's planned items in the ``items`` table's columns (what ``create_run`` inserts, a shard directory's
    ``items.parquet``)."""
    return pd.DataFrame(
        {
            "run_id": run_id,
            "item_id": [it.item_id for it in items],
            "position": np.arange(len(items), dtype=np.int32),
            "context": [it.context for it in items],
            "choices": [list(it.choices) for it in items],
            "gold": np.array([it.gold for it in items], dtype=np.int32),
            "meta": [json.dumps(dict(it.meta), default=str) for it in items],
            "key": [item_key(it) for it in items],
        }
    )


def outcome_frames(run_id: str, rows: Sequence[OutcomeRow], act_dtype: str = "float16") -> dict[str, pd.DataFrame]:
    """The rows of ``SHARD_TABLES`` that a batch of outcomes writes, as frames in the store's column layout
    (activations as little-endian ``act_dtype`` bytes): what ``Store.write_outcomes`` inserts and a shard
    writes as Parquet, so that both hold the same bytes."""
    dtype = np.dtype(act_dtype).newbyteorder("<")
    outcomes = pd.DataFrame(
        {
            "run_id": run_id,
            "item_id": [r.item_id for r in rows],
            "pred": pd.array([r.pred for r in rows], dtype="Int32"),
            "correct": [bool(r.correct) for r in rows],
            "margin": pd.array([r.margin for r in rows], dtype="Float64"),
            "ll_sum": [None if r.ll_sum is None else list(r.ll_sum) for r in rows],
            "ll_norm": [r.ll_norm for r in rows],
            "n_tokens": [r.n_tokens for r in rows],
            "truncated": pd.array([r.truncated for r in rows], dtype="Int32"),
        }
    )
    # rows grouped by (layer, site), items in batch order within each: a reader of one layer and site (an
    # explainer) then reads the file's blocks of that layer and site, not every block of every item
    acts = [
        (run_id, r.item_id, layer, site, np.ascontiguousarray(v, dtype=dtype).tobytes())
        for (layer, site) in sorted({key for r in rows for key in r.acts if key[1] != "tokens"})
        for r in rows
        if (v := r.acts.get((layer, site))) is not None
    ]
    token_acts = [
        (run_id, r.item_id, layer, len(v), np.ascontiguousarray(v, dtype=dtype).tobytes())
        for layer in sorted({key[0] for r in rows for key in r.acts if key[1] == "tokens"})
        for r in rows
        if (v := r.acts.get((layer, "tokens"))) is not None
    ]
    toks = [(run_id, r.item_id, seq, list(t), list(i), int(s)) for r in rows for seq, (t, i, s) in r.tokens.items()]
    return {
        "outcomes": outcomes,
        "activations": pd.DataFrame(acts, columns=["run_id", "item_id", "layer", "site", "vec"]).astype(
            {"layer": "int32"}
        ),
        "token_activations": pd.DataFrame(token_acts, columns=["run_id", "item_id", "layer", "n_tokens", "vec"]).astype(
            {"layer": "int32", "n_tokens": "int32"}
        ),
        "tokens": pd.DataFrame(toks, columns=["run_id", "item_id", "seq", "tokens", "ids", "cont_start"]).astype(
            {"cont_start": "int32"}
        ),
    }


def write_parquet_frames(frames: dict[str, pd.DataFrame], directory: Path) -> dict[str, int]:
    """Write each frame as ``directory/<name>.parquet`` (an empty frame writes no file); returns rows per file.
    Column types are the store's (see ``outcome_frames``), so a merge inserts the same bytes."""
    written = {}
    con = duckdb.connect()
    try:
        for name, frame in frames.items():
            if not len(frame):
                continue
            con.register("frame", frame)
            con.sql("SELECT * FROM frame").write_parquet(str(directory / f"{name}.parquet"))
            con.unregister("frame")
            written[name] = len(frame)
    finally:
        con.close()
    return written


def read_parquet_frame(path: Path) -> pd.DataFrame:
    """A Parquet file as a frame; a file that is no Parquet (half written, another format) is one clear line."""
    con = duckdb.connect()
    try:
        return con.execute("SELECT * FROM read_parquet(?)", [str(path)]).df()
    except duckdb.Error as exc:
        raise StoreError(f"{path} is not a readable Parquet file ({one_line(exc)}); write it again") from None
    finally:
        con.close()


def _run_tables(cur: duckdb.DuckDBPyConnection) -> list[str]:
    """Every table of the store that holds rows of runs (has a ``run_id`` column), the ``runs`` table last."""
    rows = cur.execute(
        """SELECT DISTINCT c.table_name FROM information_schema.columns c
           JOIN information_schema.tables t USING (table_catalog, table_schema, table_name)
           WHERE c.column_name = 'run_id' AND t.table_type = 'BASE TABLE'
             AND t.table_catalog = current_database() AND t.table_schema = 'main'
           ORDER BY 1"""
    ).fetchall()
    names = [r[0] for r in rows]
    return [t for t in names if t != "runs"] + ["runs"]


# the columns ``Store.items`` reads, by name, with the SQL expression of each (all fixed strings)
ITEM_COLUMNS: dict[str, str] = {
    "item_id": "i.item_id",
    "split": "s.split",
    "correct": "o.correct",
    "pred": "o.pred",
    "gold": "i.gold",
    "margin": "o.margin",
    "excluded": "s.excluded",
    "reason": "s.reason",
    "context": "i.context",
    "choices": "i.choices",
    "ll_sum": "o.ll_sum",
    "ll_norm": "o.ll_norm",
    "n_tokens": "o.n_tokens",
    "truncated": "o.truncated",
    "meta": "i.meta",
    "key": "i.key",
}


def _item_filter(
    run_id: str,
    *,
    outcome: str | None,
    split: str | None,
    search: str | None,
    include_excluded: bool,
    item_ids: Sequence[str] | None,
) -> tuple[str, list[Any]]:
    """The WHERE clause of ``Store.items`` over items ``i``, outcomes ``o`` and splits ``s``, and its parameters."""
    where: list[str] = ["i.run_id = ?"]
    params: list[Any] = [run_id]
    if outcome == "correct":
        where.append("o.correct")
    elif outcome == "incorrect":
        where.append("NOT o.correct")
    if split:
        where.append("s.split = ?")
        params.append(split)
    if search:  # the text itself: '%', '_' and '\\' in it match only themselves
        where.append(
            "(i.context ILIKE ? ESCAPE '\\' OR array_to_string(i.choices, ' ') ILIKE ? ESCAPE '\\'"
            " OR i.item_id ILIKE ? ESCAPE '\\')"
        )
        params += [f"%{_like_literal(search)}%"] * 3
    if not include_excluded:
        where.append("NOT coalesce(s.excluded, false)")
    if item_ids is not None:
        where.append("i.item_id IN (SELECT unnest(?::VARCHAR[]))")
        params.append(list(item_ids))
    return " AND ".join(where), params


def _like_literal(text: str) -> str:
    """``text`` for a LIKE pattern that matches it literally (escape character ``\\``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _scores_cell(value: Any) -> Any:
    """A per-choice score list as read: NULL elements (an unscored choice) become NaN, not a masked array."""
    if isinstance(value, np.ma.MaskedArray):
        return np.ma.filled(value.astype(float), np.nan)
    return value


def _in_order(rows: list[Any], item_ids: Sequence[str] | None) -> list[Any]:
    """Rows keyed by their first column, kept to ``item_ids`` and in that order (all rows if None)."""
    if item_ids is None:
        return rows
    wanted = {i: n for n, i in enumerate(item_ids)}
    return sorted((r for r in rows if r[0] in wanted), key=lambda r: wanted[r[0]])


def _run_value(run: RunInfo, col: str) -> Any:
    value = getattr(run, col)
    if col in ("split_config", "config"):
        return json.dumps(value)
    return value
