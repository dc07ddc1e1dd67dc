"""``wif runs`` (list or ``--delete`` runs), ``wif items`` (a run's items), ``wif migrate`` (upgrade a store)."""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from wif_core.cli.common import AddCommon, emit, positive_int
from wif_core.errors import InputError


def runs_payload(store: Any) -> list[dict[str, Any]]:
    """One JSON-ready row per run: what ``wif runs --json`` prints."""
    return [
        {
            "run_id": r.run_id,
            "model": r.model,
            "task": r.task,
            "source": r.source,
            "kind": r.kind,
            "status": r.status,
            "n_items": int(r.n_items),
            "n_planned": int(r.n_planned),
            "accuracy": None if r.n_items == 0 else float(r.accuracy),
            "n_correct": int(r.n_correct),
            "n_incorrect": int(r.n_incorrect),
            "n_duplicates": int(r.n_duplicates),
            "layers": [int(x) for x in r.layers] if r.layers is not None else [],
            "sites": [str(x) for x in r.sites] if r.sites is not None else [],
        }
        for r in store.runs().itertuples()
    ]


def _delete(args: argparse.Namespace) -> int:
    """``wif runs --delete RUN_ID ...``: every id is checked before any run is removed; each run goes whole."""
    from wif_core.api import delete_run
    from wif_core.store import Store

    if not Path(args.db).exists():
        raise InputError(f"no store at {args.db}; --db must name an existing wif store")
    ids = list(dict.fromkeys(args.delete))
    with Store.open(args.db, write=True) as store:
        for run_id in ids:
            store.run(run_id)  # an unknown id refuses them all, before anything is removed
        deleted = [delete_run(store, run_id) for run_id in ids]
    payload = {"db": args.db, "deleted": [asdict(d) for d in deleted]}
    lines = []
    for d in deleted:
        rows = ", ".join(f"{n} {table}" for table, n in d.rows.items() if n and table != "runs")
        files = f"; removed {len(d.files)} file(s) beside the store" if d.files else ""
        kept = f"; could not remove {', '.join(d.kept)}" if d.kept else ""
        lines.append(f"deleted run {d.run_id} ({rows or 'no rows'}){files}{kept}")
    emit(args, payload, "\n".join(lines))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from wif_core.store import Store

    if args.delete:
        return _delete(args)
    with Store.open(args.db) as store:
        runs = runs_payload(store)
    if args.json:
        emit(args, runs, "")
        return 0
    if not runs:
        print(f"no runs in {args.db}")
    for r in runs:
        acc = "n/a" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
        print(
            f"{r['run_id']}  {r['model']}  {r['task']}  items={r['n_items']}/{r['n_planned']}  acc={acc}  "
            f"dups={r['n_duplicates']}  layers={r['layers']}  {r['status']}"
        )
    return 0


def _pred(value: Any) -> int | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else int(value)


def cmd_items(args: argparse.Namespace) -> int:
    from wif_core.store import Store

    with Store.open(args.db) as store:
        store.run(args.run)
        frame = store.items(args.run, args.outcome, args.split, args.search, args.limit)
    rows = [
        {
            "item_id": r.item_id,
            "split": r.split,
            "correct": bool(r.correct),
            "pred": _pred(r.pred),
            "gold": int(r.gold),
            "margin": r.margin,
            "excluded": bool(r.excluded),
            "reason": r.reason,
            "context": r.context,
            "choices": list(r.choices),
        }
        for r in frame.itertuples()
    ]
    if args.json:
        emit(args, rows, "")
        return 0
    for r in rows:
        mark = "✓" if r["correct"] else "✗"
        ctx = " ".join(r["context"].split())[:70]
        print(f"{mark} {r['item_id']:<24} {r['split'] or '-':<6} gold={r['gold']} pred={r['pred']}  {ctx}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from wif_core.store import SCHEMA_VERSION, Store

    if not Path(args.db).exists():
        raise InputError(f"no store at {args.db}; --db must name an existing wif store")
    with Store.open(args.db, write=True):  # opening for writing upgrades an older schema in place
        pass
    emit(args, {"db": args.db, "schema_version": SCHEMA_VERSION}, f"{args.db}: store schema version {SCHEMA_VERSION}")
    return 0


def add_commands(sub: Any, common: AddCommon) -> None:
    """Add ``wif runs``, ``wif items`` and ``wif migrate``."""
    p = common(sub.add_parser("runs", help="list the runs in a store, or delete some"))
    p.add_argument(
        "--delete",
        nargs="+",
        metavar="RUN_ID",
        default=None,
        help="remove these runs: their rows in every table and their files beside the store",
    )
    p.set_defaults(func=cmd_runs)

    p = common(sub.add_parser("items", help="list a run's items"))
    p.add_argument("--run", required=True)
    p.add_argument("--outcome", choices=["correct", "incorrect"])
    p.add_argument("--split", choices=["train", "val", "test", "unused"])
    p.add_argument("--search", default=None, help="text to look for in the context or choices")
    p.add_argument("--limit", type=positive_int, default=None, help="the first N matching items")
    p.set_defaults(func=cmd_items)

    p = common(sub.add_parser("migrate", help="upgrade a store written by an older wif, in place"))
    p.set_defaults(func=cmd_migrate)
