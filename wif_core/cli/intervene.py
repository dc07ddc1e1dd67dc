"""``wif intervene``: does an explainer's direction change what the model does? (steering against random controls)"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

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


def _alphas(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a list of numbers; give strengths like 0,0.5,1,2") from None
    if not values:
        raise argparse.ArgumentTypeError("the strength grid is empty; give strengths like 0,0.5,1,2")
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"strengths must be 0 or more, not {min(values)}")
    return values


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def cmd_intervene(args: argparse.Namespace) -> int:
    from wif_core.interventions.run import InterventionCache, check_key, check_request, steering_check
    from wif_core.models.loading import load_model
    from wif_core.store import Store

    args.device, args.dtype = device_and_dtype(args)
    with Store.open(args.db) as store:
        run = store.run(args.run)
        if not run.has_lm and not args.model:
            raise InputError(
                f"run {run.run_id} has no language model wif can load (a {run.kind} run of '{run.model}'); "
                "steering re-scores its items with the model: pass --model DIR_OR_HUB_ID"
            )
        grid = check_request(run, explainer=args.explainer, layer=args.layer, site=args.site, alphas=args.alphas)
        spec = args.model or run.model
        cache = InterventionCache.beside(args.db)
        key = check_key(
            args.run,
            spec,
            explainer=args.explainer,
            layer=args.layer,
            site=args.site,
            alphas=grid,
            controls=args.controls,
            seed=args.seed,
            limit=args.limit,
            dtype=args.dtype,
        )
        score = None if args.recompute else cache.get(key)
    if score is None:
        with Store.open(args.db) as store:
            lm = load_model(spec, cache_dir(args), device=args.device, dtype=args.dtype)
            with progress_bar(args, f"steer {args.run}", 2 * len(grid), "strength") as bar:
                score = steering_check(
                    store,
                    lm,
                    args.run,
                    explainer=args.explainer,
                    layer=args.layer,
                    site=args.site,
                    alphas=args.alphas,
                    n_controls=args.controls,
                    seed=args.seed,
                    limit=args.limit,
                    max_tokens=args.max_tokens,
                    progress=bar.update,
                )
        cache.put(key, score)
    lines = [
        f"{score.direction} of run {args.run}: steering strength chosen on val α = {score.alpha:g} "
        f"(× mean residual norm {score.source['unit']:.2f})",
        "split  α      flip   control  broken  control  Δ change  control",
    ]
    for split, rows in (("val", score.val), ("test", score.test)):
        for r in rows:
            dc = "—" if r.delta_change is None else f"{r.delta_change:+.3f}"
            dcc = "—" if r.delta_change_control is None else f"{r.delta_change_control:+.3f}"
            lines.append(
                f"{split:5}  {r.alpha:<5g}  {_pct(r.flip_rate):>6} {_pct(r.flip_rate_control):>8}  "
                f"{_pct(r.broken_rate):>6} {_pct(r.broken_rate_control):>8}  {dc:>8}  {dcc:>7}"
            )
    ci = "" if score.ci is None else f" [{100 * score.ci[0]:+.1f}, {100 * score.ci[1]:+.1f}]"
    value = "—" if score.score is None else f"{100 * score.score:+.1f} points"
    lines.append(
        f"causal score (test flip rate minus the random control's at α = {score.alpha:g}): {value}{ci} "
        f"({score.ci_level:.1%} interval, n = {score.n_test_failures} test failures)"
    )
    emit(args, asdict(score), "\n".join(lines))
    return 0


def add_commands(sub: Any, common: AddCommon) -> None:
    """Add ``wif intervene``."""
    p = common(sub.add_parser("intervene", help="steer the model along an explainer's direction: what flips?"))
    p.add_argument("--run", required=True)
    p.add_argument("--explainer", default="probe", help="whose direction to steer along (probe)")
    p.add_argument("--layer", type=int, required=True, help="the block whose output is steered (the probe's layer)")
    p.add_argument("--site", default="last", choices=["last", "mean"], help="the probe's site")
    p.add_argument(
        "--alphas", type=_alphas, default=[0.0, 0.25, 0.5, 1.0, 2.0], help="strengths, × the mean residual norm"
    )
    p.add_argument("--controls", type=positive_int, default=1, help="random directions of the same norm per strength")
    p.add_argument("--limit", type=positive_int, default=None, help="a seeded sample of at most N items per split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=None, help="another copy of the run's model (default: the run's own)")
    p.add_argument("--max-tokens", type=positive_int, default=None, help="padded tokens per forward batch")
    add_device_options(p)
    p.add_argument("--cache-dir", default=None, help="where converted model copies are cached")
    p.add_argument("--recompute", action="store_true", help="compute again even if this check is stored")
    p.set_defaults(func=cmd_intervene)
