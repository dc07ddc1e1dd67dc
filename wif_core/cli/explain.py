"""``wif explain`` (fit explainers on a run's train split, score its test split) and ``wif reproduce``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from wif_core.cli.common import AddCommon, emit, key_value, positive_int, progress_bar, unit_interval
from wif_core.errors import InputError


def _results_cache(args: argparse.Namespace) -> Any:
    from wif_core.explainers.evaluate import ResultCache

    return ResultCache(None) if args.no_cache else ResultCache.beside(Path(args.db))


def _explain(data: Any, args: argparse.Namespace, settings: dict[str, Any], names: list[str] | None) -> list[Any]:
    """Every result `wif explain` asks for on one RunData."""
    from wif_core.explainers.evaluate import evaluate, evaluate_all, variants

    common = {"seed": args.seed, "level": args.level, "n_resamples": args.resamples, "cache": _results_cache(args)}
    if args.all:
        with progress_bar(args, f"explainers on {args.run}", len(variants(data, names)), "explainer") as bar:
            return evaluate_all(data, names, progress=lambda _: bar.update(), **common)
    return [evaluate(data, args.explainer, args.layer, args.site, **common, **settings)]


def _payload(results: list[Any], as_list: bool) -> Any:
    """The JSON of a set of results: each one's summary, with ``vs_best`` beside every other result."""
    from wif_core.explainers.evaluate import SELECTED_ON, best_of, compare

    payload = [r.summary() for r in results]
    best = best_of(results)  # chosen on val, over every tier: what `vs_best` pairs against
    chosen = {tier: best_of(results, tier) for tier in ("input", "output", "gold")}
    for p, r in zip(payload, results, strict=True):
        if len(results) > 1:
            p["selected"] = r is chosen[r.tier]  # the val-selected best of its tier; the others are shown, not chosen
            p["selected_on"] = SELECTED_ON
            if best is not None and r is not best:
                p["vs_best"] = compare(r, best)
    return payload if as_list else payload[0]


def _print_results(results: list[Any]) -> None:
    from wif_core.explainers.evaluate import SELECTED_ON, best_of

    chosen = {tier: best_of(results, tier) for tier in ("input", "output", "gold")}
    for tier in ("input", "output", "gold"):
        rows = [r for r in results if r.tier == tier]
        if rows:
            print(f"[{tier} tier]")
        for r in sorted(rows, key=lambda r: -r.auc):
            mark = "*" if len(results) > 1 and r is chosen[tier] else " "
            val = "   -  " if r.val_auc is None else f"{r.val_auc:.3f}"
            print(
                f" {mark}{r.label:<32} AUC {r.auc:.3f}  {r.ci_level:.1%} CI [{r.ci_low:.3f}, {r.ci_high:.3f}]  "
                f"n={r.n_test}  val AUC {val}"
            )
    if len(results) > 1:
        print(f"* the best of its tier, chosen by val AUC; report its test AUC (selected on {SELECTED_ON})")


def cmd_explain(args: argparse.Namespace) -> int:
    from wif_core.explainers.data import RunData
    from wif_core.store import Store

    settings = dict(args.set or [])
    if args.other_run:
        settings["other_run"] = args.other_run
    names = args.explainer.split(",") if args.explainer else None
    with Store.open(args.db) as store:
        data = RunData.load(store, args.run)
        if not args.all and not args.explainer:
            raise InputError("give --explainer NAME or --all")
        kept = RunData.load(store, args.run, exclude=args.exclude) if args.exclude else None  # refused before fitting
        results = _explain(data, args, settings, names)
        without = _explain(kept, args, settings, names) if kept is not None else []
    if kept is None:
        if args.json:
            emit(args, _payload(results, args.all), "")
        else:
            _print_results(results)
        return 0
    n_left_out = kept.excluded["n_suspect"]
    if args.json:
        doc = {
            "exclude": args.exclude,
            "n_left_out": n_left_out,
            "all_items": _payload(results, args.all),
            f"without_{args.exclude}": _payload(without, args.all),
        }
        emit(args, doc, "")
        return 0
    print("all items (leakage excluded as always):")
    _print_results(results)
    shown = ", ".join(f"{n} {split}" for split, n in n_left_out.items())
    print(f"without the {args.exclude} items ({shown} left out; `wif quality --run {args.run}` lists them):")
    _print_results(without)
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from wif_core.explainers.data import RunData
    from wif_core.explainers.evaluate import reproduce
    from wif_core.store import Store

    with Store.open(args.db) as store:
        out = reproduce(RunData.load(store, args.run), seed=args.seed, cache=_results_cache(args))
    if args.json:
        emit(args, out, "")
        return 0
    print(f"{out['run_id']}: probe-paper (last token, C=100) vs the paper ({out['paper_model']}, {out['paper_task']})")
    for r in out["results"]:
        paper = "" if r["paper_auc"] is None else f"   paper L{r['paper_layer']}: {r['paper_auc']:.3f}"
        print(
            f"  L{r['layer']:<3} depth {r['relative_depth']:.2f}  AUC {r['auc']:.3f} "
            f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}] n={r['n_test']}{paper}"
        )
    return 0


def add_commands(sub: Any, common: AddCommon) -> None:
    """Add ``wif explain`` and ``wif reproduce``."""
    p = common(sub.add_parser("explain", help="fit an explainer on a run's train split and score its test split"))
    p.add_argument("--run", required=True)
    p.add_argument("--explainer", default=None, help="a registered name (with --all: a comma list to restrict to)")
    p.add_argument("--all", action="store_true", help="every explainer and setting that applies to the run")
    p.add_argument("--layer", type=int, default=None)
    p.add_argument("--site", choices=["last", "mean", "choice", "tokens"], default=None)
    p.add_argument("--other-run", default=None, help="for cross-model: the run whose outcomes predict")
    p.add_argument(
        "--set", action="append", type=key_value, metavar="KEY=VALUE", help="extra explainer setting (repeatable)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--level", type=unit_interval, default=0.999, help="confidence level of the bootstrap CI")
    p.add_argument("--resamples", type=positive_int, default=2000, help="bootstrap resamples of the CI")
    p.add_argument("--no-cache", action="store_true", help="ignore and do not write cached results")
    p.add_argument(
        "--exclude",
        choices=["suspect"],
        default=None,
        help="also evaluate without the items `wif quality` flagged as suspect labels, and report both",
    )
    p.set_defaults(func=cmd_explain)

    p = common(sub.add_parser("reproduce", help="the paper's probe protocol on a run, beside the paper's AUCs"))
    p.add_argument("--run", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-cache", action="store_true")
    p.set_defaults(func=cmd_reproduce)
