"""``wif ingest`` (merge shard directories into the store) and ``wif export`` (a run as Parquet files)."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import Any

from wif_core.cli.common import AddCommon, emit, progress_bar


def cmd_ingest(args: argparse.Namespace) -> int:
    from wif_core.engines.shards import ingest
    from wif_core.store import Store

    results, lines = [], []
    with Store.open(args.db, write=True) as store:
        for directory in args.dirs:
            with progress_bar(args, f"ingest {Path(directory).name}", None, "item") as bar:
                r = ingest(store, Path(directory), progress=bar.update)
            results.append(asdict(r))
            if r.note:
                lines.append(f"{directory}: {r.note}")
                continue
            state = "complete" if r.complete else f"{len(r.unfinished)} shards not finished yet: {_few(r.unfinished)}"
            lines.append(
                f"{directory}: run {r.run_id}: merged {len(r.merged)} shards ({r.n_items} items) into {args.db}, "
                f"{len(r.before)} were merged before; {state}"
            )
    emit(args, {"ingested": results}, "\n".join(lines))
    return 0


def _few(xs: list[int], k: int = 8) -> str:
    return ", ".join(map(str, xs[:k])) + (" …" if len(xs) > k else "")


def cmd_export(args: argparse.Namespace) -> int:
    from wif_core.engines.shards import export_run
    from wif_core.store import Store

    with Store.open(args.db) as store:
        out = export_run(store, args.run, Path(args.out))
    rows = ", ".join(f"{k} {v}" for k, v in out["rows"].items())
    emit(args, out, f"run {args.run} written to {args.out} as Parquet ({rows}); merge it elsewhere with `wif ingest`")
    return 0


def add_commands(sub: Any, common: AddCommon) -> None:
    """Add ``wif ingest`` and ``wif export``."""
    p = common(
        sub.add_parser("ingest", help="merge shard directories (collect --shard, --engine ray, export) into the store")
    )
    p.add_argument("dirs", nargs="+", help="shard directories: run.json, items.parquet, shard-*-of-*/")
    p.set_defaults(func=cmd_ingest)
    p = common(sub.add_parser("export", help="write a run as Parquet (items, outcomes, activations, tokens, splits)"))
    p.add_argument("--run", required=True)
    p.add_argument("--out", required=True, help="a new directory")
    p.set_defaults(func=cmd_export)
