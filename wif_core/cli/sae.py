"""``wif sae train|add|list|diff``: sparse autoencoders on a run's tokens, and the features that separate failures."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from wif_core.cli.common import AddCommon, emit, positive_int, progress_bar, unit_interval


def cmd_sae_train(args: argparse.Namespace) -> int:
    from wif_core.sae.train import TrainConfig, train_run_sae
    from wif_core.store import Store

    cfg = TrainConfig(
        arch=args.arch,
        width=args.width,
        k=args.k,
        samples=args.samples,
        batch=args.batch,
        lr=args.lr,
        seed=args.seed,
        splits=tuple(s for s in args.splits.split(",") if s),
    )
    cfg.check()
    with Store.open(args.db) as store:
        with progress_bar(args, "training SAE", unit="sample") as bar:
            r = train_run_sae(store, args.run, args.layer, cfg, bar.update)
    text = (
        f"trained a {r.arch} SAE ({r.width} features, k={r.k}) on {r.n_tokens} tokens of "
        f"{r.n_items} {'/'.join(r.splits)} items in {r.seconds:.1f} s; on {r.n_eval_tokens} held-out {r.eval_split} "
        f"tokens: explained variance {r.explained_variance:.3f} (untrained "
        f"{r.untrained['explained_variance']:.3f}), MSE {r.mse:.4g}, mean L0 {r.mean_l0:.1f}, "
        f"dead {r.dead_fraction:.0%}; saved to {r.path}"
    )
    emit(args, asdict(r), text)
    return 0


def cmd_sae_add(args: argparse.Namespace) -> int:
    from wif_core.sae.add import add_sae
    from wif_core.store import Store

    with Store.open(args.db) as store:
        r = add_sae(store, args.run, args.layer, args.sae)
    text = (
        f"added {r['source']} ({r['arch']}, {r['width']} features) as run {r['run_id']}'s SAE at layer "
        f"{r['layer']}: explained variance {r['explained_variance']:.3f}, mean L0 {r['mean_l0']:.1f} on the run's "
        f"{r['n_eval_tokens']} tokens" + (f"; note: {r['note']}" if r["note"] else "")
    )
    emit(args, r, text)
    return 0


def cmd_sae_list(args: argparse.Namespace) -> int:
    from wif_core.sae import available, sae_info
    from wif_core.store import Store

    with Store.open(args.db) as store:
        run_ids = [store.run(args.run).run_id] if args.run else store.run_ids()
    rows = []
    for run_id in run_ids:
        for layer, path in available(args.db, run_id).items():
            info = sae_info(path)
            m = info.metrics
            rows.append(
                {
                    "run_id": run_id,
                    "layer": layer,
                    "path": str(path),
                    "arch": info.architecture,
                    "width": info.d_sae,
                    "d_in": info.d_in,
                    "source": m.get("source", "?"),
                    "explained_variance": m.get("explained_variance"),
                    "mean_l0": m.get("mean_l0"),
                    "n_tokens": m.get("n_tokens"),
                }
            )
    text = "\n".join(
        f"{r['run_id']}  L{r['layer']}  {r['arch']} {r['width']}  EV {r['explained_variance'] or float('nan'):.3f}"
        f"  L0 {r['mean_l0'] or float('nan'):.1f}  {r['path']}"
        for r in rows
    )
    emit(args, rows, text or f"no SAEs beside {args.db}; train one with `wif sae train --run RUN_ID --layer L`")
    return 0


def cmd_sae_diff(args: argparse.Namespace) -> int:
    from wif_core.sae.diff import run_diff
    from wif_core.store import Store

    with Store.open(args.db) as store:
        with progress_bar(args, "encoding items") as bar:
            d = run_diff(
                store,
                args.run,
                args.layer,
                top=args.top,
                by=args.by,
                n_contexts=args.contexts,
                level=args.level,
                n_resamples=args.resamples,
                seed=args.seed,
                path=args.sae,
                progress=bar.update,
            )
    if args.json:
        emit(args, [f.summary(contexts=bool(args.contexts)) for f in d.features], "")
        return 0
    print(
        f"{d.run_id} L{d.layer}: {d.n_live} live features of {d.d_sae} ({d.n_dead} dead); train split "
        f"{d.n_train_failed} failed / {d.n_train_success} successful items; ranked by {d.rank_by}"
    )
    print(
        f"{'#':>3} {'feature':>7} {'freq_fail':>9} {'freq_ok':>8} {'effect':>7} {'AUC':>6} {'CI':>15} {'AUC test':>8}"
    )
    for f in d.features:
        test = "—" if f.auc_test is None else f"{f.auc_test:.3f}"
        print(
            f"{f.rank:>3} {f.feature:>7} {f.freq_fail:>9.2f} {f.freq_success:>8.2f} {f.effect:>+7.2f} {f.auc:>6.3f} "
            f"[{f.ci_low:.3f}, {f.ci_high:.3f}] {test:>8}  {f.contexts[0].snippet() if f.contexts else ''}"
        )
    return 0


def add_commands(sub: Any, common: AddCommon) -> None:
    """Add the ``wif sae`` command group."""
    sae = sub.add_parser("sae", help="sparse autoencoders: train, add, list, and diff features of failures")
    sae_sub = sae.add_subparsers(dest="sae_command", required=True)
    p = common(sae_sub.add_parser("train", help="train an SAE (sae-lens) on a run's train-split token activations"))
    p.add_argument("--run", required=True)
    p.add_argument("--layer", type=int, required=True, help="a layer collected with --token-layers")
    p.add_argument("--arch", choices=["topk", "jumprelu"], default="topk")
    p.add_argument("--width", type=int, default=None, help="features (default 8 × the model's width)")
    p.add_argument("--k", type=int, default=32, help="active features per token (jumprelu: the target L0)")
    p.add_argument(
        "--samples",
        type=int,
        default=None,
        help="token vectors to train on, with repeats (default 20 passes, 20k..300k)",
    )
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--splits", default="train", help="the splits whose items train it (default train only)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_sae_train)

    p = common(sae_sub.add_parser("add", help="use a pretrained SAE (RELEASE:SAE_ID) or an SAE directory for a run"))
    p.add_argument("--run", required=True)
    p.add_argument("--layer", type=int, required=True)
    p.add_argument("--sae", required=True, help="RELEASE:SAE_ID of sae-lens's pretrained SAEs, or a directory")
    p.set_defaults(func=cmd_sae_add)

    p = common(sae_sub.add_parser("list", help="the SAEs beside a store"))
    p.add_argument("--run", default=None)
    p.set_defaults(func=cmd_sae_list)

    p = common(sae_sub.add_parser("diff", help="which SAE features separate failures from successes"))
    p.add_argument("--run", required=True)
    p.add_argument("--layer", type=int, required=True)
    p.add_argument("--top", type=int, default=20, help="features to report")
    p.add_argument("--by", choices=["auc", "effect"], default="auc", help="rank by |AUC − 0.5| or by |effect|")
    p.add_argument("--contexts", type=int, default=3, help="top-activating contexts per feature")
    p.add_argument("--sae", default=None, help="an SAE directory (default: the run's SAE beside the store)")
    p.add_argument("--level", type=unit_interval, default=0.999)
    p.add_argument("--resamples", type=positive_int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_sae_diff)
