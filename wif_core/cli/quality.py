"""``wif quality``: flag a run's suspect labels (an item-quality pass), store them, print what was found."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from wif_core.cli.common import AddCommon, emit, positive_int
from wif_core.errors import InputError


def _short(text: str, width: int = 48) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _text(result: Any, top: int) -> str:
    counts = ", ".join(f"{reason} {n}" for reason, n in result.counts().items())
    lines = [
        f"run {result.run_id} ({result.task}): {result.n_flagged} of {result.n_items} items flagged as suspect "
        f"labels ({counts})",
        f"signals used: {', '.join(result.signals)}",
    ]
    lines += [f"  not used: {why}" for why in result.skipped.values()]
    for s in result.sources:
        temperature = "" if s["temperature"] is None else f", temperature {s['temperature']:g}"
        what = "text classifier (out of fold)" if s["kind"] == "text" else f"{s['kind']} of {s['name']}"
        lines.append(
            f"  source: {what} on {s['n_items']} items: skill {s['skill']:+.3f}, weight {s['weight']:.3f}{temperature}"
        )
    worst = sorted(result.flags, key=lambda f: -f.score)[:top]
    if worst:
        lines.append(f"most suspect ({len(worst)} of {result.n_flagged}; all with --json):")
    for f in worst:
        e = f.evidence
        to = "" if e["suggested_answer"] is None else f" -> {_short(e['suggested_answer'])!r}"
        lines.append(
            f"  {f.item_id}  score {f.score:.3f}  {'+'.join(f.reasons)}: key {_short(e['given_answer'])!r}{to}"
        )
    return "\n".join(lines)


def cmd_quality(args: argparse.Namespace) -> int:
    from wif_core.label_quality import QualityConfig, run_quality
    from wif_core.store import Store

    if not Path(args.db).exists():
        raise InputError(f"no store at {args.db}; --db must name an existing wif store")
    if args.folds < 2:
        raise InputError(f"--folds {args.folds}: cross-fitting needs at least 2 folds (the default is 5)")
    config = QualityConfig(folds=args.folds, seed=args.seed)
    with Store.open(args.db, write=True) as store:
        result = run_quality(store, args.run, config)
    emit(args, result.summary(), _text(result, args.top))
    return 0


def add_commands(sub: Any, common: AddCommon) -> None:
    """Add ``wif quality``."""
    p = common(
        sub.add_parser(
            "quality",
            help="flag a run's suspect labels (contradictory copies, other models' consensus, confident learning)",
        )
    )
    p.add_argument("--run", required=True)
    p.add_argument("--folds", type=positive_int, default=5, help="folds of the text classifier's cross-fitting")
    p.add_argument("--seed", type=int, default=0, help="seed of the folds")
    p.add_argument("--top", type=positive_int, default=10, help="how many of the most suspect items to list")
    p.set_defaults(func=cmd_quality)
