"""``wif attribute``: contrastive token attribution of a run's items, stored or for one item."""

from __future__ import annotations

import argparse
from typing import Any

from wif_core.attribution import DEFAULT_METHOD, METHODS
from wif_core.cli.common import (
    AddCommon,
    add_device_options,
    cache_dir,
    device_and_dtype,
    emit,
    positive_int,
    progress_bar,
)
from wif_core.errors import InputError


def _methods(text: str) -> list[str]:
    from wif_core.attribution import get_method

    names = METHODS.names() if text == "all" else [m.strip() for m in text.split(",") if m.strip()]
    for name in names:
        get_method(name)
    if not names:
        raise InputError(f"--method is empty; use one of: {', '.join(METHODS.names())}, a comma list, or 'all'")
    return names


def _load(args: argparse.Namespace, run: Any) -> Any:
    """The model to attribute with: ``--model``, else the run's own (refused where wif cannot load it)."""
    from wif_core.models.loading import load_model

    if not run.has_lm and not args.model:
        raise InputError(
            f"run {run.run_id} has no language model wif can load (a {run.kind} run of '{run.model}'); "
            "attribution needs the model itself: pass --model DIR_OR_HUB_ID"
        )
    return load_model(args.model or run.model, cache_dir(args), device=args.device, dtype=args.dtype)


def _item_text(a: Any, stored: bool) -> str:
    lines = [
        f"{a.item_id} [{a.method}] choice {a.wrong_choice} (wrong) vs {a.right_choice} (right): "
        f"Δ = {a.delta:+.3f} nats, sum of scores = {a.sum_scores:+.3f}"
        + (f", faithfulness {a.faithfulness:+.3f}" if a.faithfulness is not None else "")
        + (" (stored)" if stored else f" ({a.seconds:.2f} s)")
    ]
    if a.fallback:
        lines.append(f"note: {a.fallback}")
    order = sorted(range(len(a.scores)), key=lambda i: -abs(a.scores[i]))[:10]
    lines += [f"  {a.scores[i]:+.3f}  {a.segments[i]:<9} {a.tokens[i]!r}" for i in order]
    return "\n".join(lines)


def cmd_attribute(args: argparse.Namespace) -> int:
    """Attribute one item (``--item``) or a run's items into the store."""
    from wif_core.attribution.batch import attribute_run, item_attribution
    from wif_core.store import Store

    methods = _methods(args.method)
    args.device, args.dtype = device_and_dtype(args)
    if args.item and len(methods) != 1:
        raise InputError("--item takes one --method; give a single method name")
    with Store.open(args.db) as store:
        run = store.run(args.run)
        if args.item:
            a, stored = item_attribution(
                store,
                args.run,
                args.item,
                methods[0],
                lambda: _load(args, run),
                recompute=args.recompute,
                deletion=not args.no_deletion,
                seed=args.seed,
            )
    if args.item:
        if not stored:
            with Store.open(args.db, write=True) as store:
                store.write_attributions(args.run, [a.to_row()])
        emit(args, {**a.to_json(), "stored": stored}, _item_text(a, stored))
        return 0
    lm = _load(args, run)
    with progress_bar(args, f"attributing {args.run}", unit="item") as bar:
        summary = attribute_run(
            args.db,
            args.run,
            lm,
            methods,
            failures_only=args.failures_only,
            limit=args.limit,
            progress=bar.update,
            deletion=not args.no_deletion,
            seed=args.seed,
        )
    payload = {
        "run_id": summary.run_id,
        "methods": summary.methods,
        "n_items": summary.n_items,
        "n_computed": summary.n_computed,
        "n_skipped": summary.n_skipped,
        "seconds": summary.seconds,
        "errors": summary.errors,
        "per_method": summary.per_method,
    }
    lines = [
        f"run {summary.run_id}: {summary.n_computed} attributions computed, {summary.n_skipped} already stored, "
        f"{len(summary.errors)} items skipped, {summary.seconds:.1f} s"
    ]
    for name, m in summary.per_method.items():
        faith = "n/a" if m["mean_faithfulness"] is None else f"{m['mean_faithfulness']:+.3f}"
        secs = "n/a" if m["mean_seconds"] is None else f"{m['mean_seconds']:.2f} s/item"
        lines.append(f"  {name:<22} n={m['n']:<5} mean faithfulness {faith}  {secs}")
        if m["fallback"]:
            lines.append(f"    note: {m['fallback']}")
    for item_id, msg in list(summary.errors.items())[:5]:
        lines.append(f"  skipped {item_id}: {msg}")
    emit(args, payload, "\n".join(lines))
    return 0


def add_commands(sub: Any, common: AddCommon) -> None:
    """Add ``wif attribute``."""
    p = common(
        sub.add_parser("attribute", help="contrastive token attribution: which tokens pushed toward the wrong answer")
    )
    p.add_argument("--run", required=True)
    p.add_argument(
        "--method",
        default=DEFAULT_METHOD,
        help=f"{', '.join(METHODS.names())}; a comma list or 'all' (default {DEFAULT_METHOD})",
    )
    p.add_argument("--item", default=None, help="one item: print its attribution (stored, or computed and stored)")
    p.add_argument("--failures-only", action="store_true", help="only the items the model got wrong")
    p.add_argument("--limit", type=positive_int, default=None, help="the first N items (after --failures-only)")
    p.add_argument(
        "--model", default=None, help="override the run's model (an embedded name, a local directory or hub id)"
    )
    p.add_argument("--no-deletion", action="store_true", help="skip the deletion curves (no faithfulness score)")
    p.add_argument("--recompute", action="store_true", help="with --item: compute even if stored")
    p.add_argument("--seed", type=int, default=0, help="seed of the random deletion order")
    add_device_options(p)
    p.add_argument("--cache-dir", default=None, help="where converted model copies are cached")
    p.set_defaults(func=cmd_attribute)
