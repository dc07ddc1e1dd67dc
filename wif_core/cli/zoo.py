"""``wif zoo …``: train, list, evaluate, estimate, deduce by regions, account surprise and store the zoo's tiny models.

``add_commands(sub, common)`` adds the ``zoo`` command group to the ``wif`` parser; every
handler returns an exit code and prints one JSON document with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from wif_core.cli.common import AddCommon, emit, progress_bar, unit_interval
from wif_core.errors import InputError
from wif_core.paths import DEFAULT_ZOO_DIR


def _zoo_dir(args: argparse.Namespace) -> Path:
    """Where this command looks for models first (then among the shipped ones)."""
    return Path(args.zoo_dir)


def _out_dir(args: argparse.Namespace) -> Path:
    """Where a trained model or an estimate curve is saved: ``--out``, else ``--zoo-dir``."""
    return Path(args.out) if args.out else _zoo_dir(args)


def cmd_list(args: argparse.Namespace) -> int:
    from wif_core.zoo.analysis import model_summary
    from wif_core.zoo.weights import available

    rows = [model_summary(name, _zoo_dir(args)) for name in available(_zoo_dir(args))]
    lines = [
        f"{r['name']:<28} {r['task']:<12} n={r['n']:<3} d={r['hidden']:<3} params={r['parameters']:<5} "
        + ("handcrafted" if r["handcrafted"] else f"steps={r['steps']} ({r['train_seconds']} s)")
        + ("" if r["accuracy"] is None else f"  accuracy {r['accuracy']:.5f}")
        for r in rows
    ]
    emit(args, rows, "\n".join(lines) or "no zoo models; train one with `wif zoo train 2nd_argmax --hidden 4 --seq 3`")
    return 0


def _progress(bar: Any) -> Callable[[int, float], None]:
    """``train``'s (step, loss) callback as updates of ``bar``, over every seed's run (each counts from 1)."""
    last = [0]

    def show(step: int, loss: float) -> None:
        if step < last[0]:  # the next seed's run
            last[0] = 0
        bar.update(step - last[0])
        last[0] = step

    return show


def cmd_train(args: argparse.Namespace) -> int:
    from wif_core.zoo.analysis import accuracy_fields
    from wif_core.zoo.evaluate import evaluate
    from wif_core.zoo.train import TrainConfig, checkpoint_steps, train_best
    from wif_core.zoo.weights import save, save_checkpoints

    cfg = TrainConfig(
        args.task,
        args.hidden,
        args.seq,
        steps=args.steps,
        lr=args.lr,
        seed=args.seed,
        arch=args.arch,
        layers=args.layers,
        name=args.name,
    )
    cfg.check()
    if args.eval_samples < 1:
        raise InputError(f"--eval-samples {args.eval_samples} must be at least 1")
    keep = not args.no_checkpoints
    if keep:
        checkpoint_steps(cfg.steps, cfg.batch, args.first_checkpoint)  # a bad --first-checkpoint: before training
    snaps: list[Any] = []
    with progress_bar(
        args, f"training {args.task} (d={args.hidden}, n={args.seq})", args.steps * args.seeds, "step"
    ) as bar:
        model = train_best(
            cfg,
            args.seeds,
            progress=_progress(bar),
            on_checkpoint=snaps.append if keep else None,
            first_checkpoint=args.first_checkpoint,
        )
    acc = evaluate(model, args.eval_samples, seed=args.seed + 1)
    model.spec.meta.update(accuracy_fields(acc))
    model.spec.meta["command"] = " ".join(["wif", "zoo", "train", *sys.argv[3:]]) if len(sys.argv) > 3 else ""
    path = save(model, _out_dir(args) / f"{model.spec.name}.safetensors")
    out = {"name": model.spec.name, "path": str(path), **model.spec.meta, "eval": asdict(acc), "checkpoints": []}
    if keep:
        for snap in snaps:  # each checkpoint's accuracy on the same fresh samples as the final model's
            snap.spec.meta.update(accuracy_fields(evaluate(snap, args.eval_samples, seed=args.seed + 1)))
        ckpt_dir = path.with_name(path.stem + ".ckpt")
        files = save_checkpoints(snaps, ckpt_dir)
        out["checkpoints"] = [
            {
                **s.spec.meta["checkpoint"],
                "accuracy": s.spec.meta["accuracy"],
                "rmse": s.spec.meta["rmse"],
                "path": str(f),
            }
            for s, f in zip(snaps, files, strict=True)
        ]
    score = f"accuracy {acc.accuracy:.4f}" if acc.accuracy is not None else f"RMSE {acc.rmse:.4f}"
    saved = f"; {len(snaps)} checkpoints in {ckpt_dir}" if keep else ""
    emit(
        args,
        out,
        f"trained {model.spec.name} ({model.spec.meta['steps']} steps, "
        f"{model.spec.meta['train_seconds_all_seeds']} s): {score} on {acc.n:,} fresh samples; saved to {path}{saved}",
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from wif_core.zoo.evaluate import evaluate
    from wif_core.zoo.weights import load

    if args.samples < 1:
        raise InputError(f"--samples {args.samples} must be at least 1")
    acc = evaluate(load(args.name, _zoo_dir(args)), args.samples, seed=args.seed, level=args.level)
    if acc.accuracy is None:
        text = f"{acc.model}: RMSE {acc.rmse:.5f} on {acc.n:,} samples"
    else:
        text = (
            f"{acc.model}: accuracy {acc.accuracy:.6f}, {acc.level:.1%} CI [{acc.ci_low:.6f}, {acc.ci_high:.6f}] "
            f"on {acc.n:,} fresh samples ({acc.samples_per_second / 1e6:.1f} M samples/s)"
        )
    emit(args, asdict(acc), text)
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from wif_core.interventions.zoo_ablation import ablate
    from wif_core.zoo.weights import load

    try:
        neurons = [int(x) for x in args.neurons.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--neurons '{args.neurons}' must be comma-separated neuron indices like 1,2,4,6,7") from None
    if args.samples < 1:
        raise InputError(f"--samples {args.samples} must be at least 1")
    r = ablate(
        load(args.name, _zoo_dir(args)),
        neurons,
        samples=args.samples,
        n_random=args.random,
        seed=args.seed,
        level=args.level,
    )
    rnd = r.random_mean_change
    lines = [
        f"{r.model}: intact accuracy {r.accuracy:.6f} on {r.n:,} fresh inputs (seed {r.seed})",
        f"neurons {r.named.neurons} silenced: accuracy {r.named.accuracy:.6f}, change {r.named.change:+.6f} "
        f"[{r.named.change_ci[0]:+.6f}, {r.named.change_ci[1]:+.6f}] ({r.ci_level:.1%}, paired on the same inputs)",
    ]
    if rnd is not None:
        lines.append(
            f"{len(r.random)} random sets of {len(r.named.neurons)} other neurons: mean change {rnd:+.6f} "
            f"(from {min(x.change for x in r.random):+.6f} to {max(x.change for x in r.random):+.6f}); "
            f"random sets costing as much or more: p = {r.p_random:.3f}"
        )
    emit(args, asdict(r) | {"random_mean_change": rnd}, "\n".join(lines))
    return 0


def cmd_estimate(args: argparse.Namespace) -> int:
    from wif_core.zoo.estimators import default_budgets, get_estimator, mse_curve
    from wif_core.zoo.weights import load

    model = load(args.name, _zoo_dir(args))
    if args.curve:
        return _curve(args, model, default_budgets, mse_curve)
    est = get_estimator(args.method)
    why = est.applicable(model)
    if why:
        raise InputError(why)
    e = est.estimate(model, args.budget, seed=args.seed)
    emit(
        args,
        {"model": model.spec.name, **asdict(e)},
        f"{model.spec.name}: {e.method} estimate {e.accuracy:.6f} ({e.flops:.3g} FLOPs, {e.seconds:.3f} s)",
    )
    return 0


def _curve(args: argparse.Namespace, model: Any, default_budgets: Any, mse_curve: Any) -> int:
    from wif_core.zoo.models import ZooRNN

    if not isinstance(model, ZooRNN):
        raise InputError(f"model {model.spec.name} is a {model.spec.arch}; the MSE curve covers the RNNs")
    methods = [m for m in args.methods.split(",") if m]
    budgets = default_budgets(args.low, args.high, args.per_decade)
    curve = mse_curve(
        model,
        methods,
        budgets,
        copies=args.copies,
        repeats=args.repeats,
        noise=args.noise,
        truth_samples=args.truth_samples,
        seed=args.seed,
    )
    path = _out_dir(args) / f"estimates_{model.spec.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(curve.as_dict(), indent=1))
    lines = [
        f"{p.method:<11} budget {p.budget or '-':>7}  {p.flops:10.3g} FLOPs  MSE {p.mse:.3g}" for p in curve.points
    ]
    emit(args, {"path": str(path), **curve.as_dict()}, "\n".join(lines + [f"saved to {path}"]))
    return 0


def cmd_surprise(args: argparse.Namespace) -> int:
    from wif_core.zoo.surprise import surprise
    from wif_core.zoo.weights import load

    if args.target_error is not None and not 0 <= args.target_error < 1:
        raise InputError(f"--target-error {args.target_error} must be in [0, 1)")
    s = surprise(load(args.name, _zoo_dir(args)), target_error=args.target_error, max_regions=args.max_regions)
    lines = [f"{s.model}: {s.method}, estimate {s.estimate:.8f} (true {s.truth:.8f})"]
    lines += [f"  {group:<24} {bits:8.2f} bits" for group, bits in s.groups.items()]
    lines.append(
        f"  {'total':<24} {s.total_bits:8.2f} bits (explanation {s.explanation_bits:.2f} + observation "
        f"{s.observation_bits:.2f}); the weights hold {s.weight_bits:,} bits ({s.parameters} float32)"
    )
    lines += [f"  note: {note}" for note in s.notes]
    emit(args, s.as_dict(), "\n".join(lines))
    return 0


def cmd_regions(args: argparse.Namespace) -> int:
    from wif_core.zoo.regions import deduce_regions
    from wif_core.zoo.weights import load

    d = deduce_regions(load(args.name, _zoo_dir(args)), max_regions=args.max_regions, seed=args.seed)
    out = {k: v for k, v in asdict(d).items() if k != "regions"}
    out["n_regions"] = d.n_regions
    if args.list_regions:
        out["regions"] = [asdict(r) for r in d.regions]
    emit(
        args,
        out,
        f"{d.model}: accuracy {d.accuracy:.8f}" + ("" if d.exact else f" ± {d.stderr:.2g}") + f" ({d.method}); "
        f"{d.n_regions:,} regions (per step {d.regions_per_step}), {d.lp_calls:,} LPs, {d.flops:.3g} FLOPs, "
        f"{d.seconds:.2f} s; masses sum to {d.mass_total:.12f}",
    )
    return 0


def _cause_lines(rows: list[dict[str, Any]]) -> list[str]:
    return [
        f"  {c['label']:<28} {c['tier']:<6} AUC {c['auc']:.3f} [{c['ci_low']:.3f}, {c['ci_high']:.3f}]  "
        f"Spearman with gap12 {c['spearman_gap12']:+.3f}"
        for c in rows
    ]


def _store_checkpoints(args: argparse.Namespace) -> int:
    from wif_core.store import Store
    from wif_core.zoo.runs import cause_recovery, store_checkpoints
    from wif_core.zoo.weights import checkpoints

    n = len(checkpoints(args.name, _zoo_dir(args)))  # none: one line before the store is opened
    with Store.open(args.db, write=True) as store:
        with progress_bar(args, f"zoo runs of {n} checkpoints of {args.name}", n * args.samples, "input") as bar:
            runs, skipped = store_checkpoints(
                store, args.name, args.samples, zoo_dir=_zoo_dir(args), seed=args.seed, progress=bar.update
            )
        causes = [
            [asdict(c) for c in cause_recovery(store, r.run_id, seed=args.seed)] if args.cause else [] for r in runs
        ]
    out = {
        "runs": [{**asdict(r), "cause_recovery": c} for r, c in zip(runs, causes, strict=True)],
        "skipped": [asdict(s) for s in skipped],
    }
    lines = []
    for r, c in zip(runs, causes, strict=True):
        label = r.checkpoint["label"] if r.checkpoint else ""
        lines.append(
            f"{label:<26} run {r.run_id}: accuracy {r.accuracy:.4f}" + (" (already stored)" if r.resumed else "")
        )
        lines += _cause_lines(c)
    lines += [f"{s.label:<26} skipped: {s.reason}" for s in skipped]
    lines.append(
        f"{len(runs)} checkpoint runs of {args.name} in {args.db}" + (f", {len(skipped)} skipped" if skipped else "")
    )
    emit(args, out, "\n".join(lines))
    return 0


def cmd_store(args: argparse.Namespace) -> int:
    from wif_core.store import Store
    from wif_core.zoo.runs import cause_recovery, checkpoint_entry, store_run
    from wif_core.zoo.weights import load, model_path

    if args.checkpoints:
        return _store_checkpoints(args)
    model = load(args.name, _zoo_dir(args))
    # one checkpoint (NAME.ckpt/SAMPLES) is stored as --checkpoints stores it: the same run
    entry = checkpoint_entry(model, model_path(args.name, _zoo_dir(args))) if "checkpoint" in model.spec.meta else None
    with Store.open(args.db, write=True) as store:
        with progress_bar(args, f"zoo run {args.name}", args.samples, "input") as bar:
            r = store_run(
                store,
                model,
                args.samples,
                seed=args.seed,
                split_seed=args.seed,
                progress=bar.update,
                checkpoint=entry,
            )
        rows = [asdict(c) for c in cause_recovery(store, r.run_id, seed=args.seed)] if args.cause else []
    out = {**asdict(r), "cause_recovery": rows}
    text = [
        f"run {r.run_id}: {r.n_items} items of {r.model}, accuracy {r.accuracy:.4f}, {r.n_in_splits} in the "
        f"balanced splits" + (" (already stored)" if r.resumed else "")
    ]
    text += _cause_lines(rows)
    emit(args, out, "\n".join(text))
    return 0


def add_commands(sub: Any, common: AddCommon) -> None:
    """Add ``wif zoo {list,train,eval,estimate,regions,surprise,store}`` to the ``wif`` subparsers ``sub``."""
    from wif_core.zoo import DEFAULT_STEPS, ESTIMATORS, FIRST_CHECKPOINT, TASKS

    zoo = sub.add_parser("zoo", help="tiny algorithmic models (AlgZoo): train, evaluate, estimate, store as runs")
    zsub = zoo.add_subparsers(dest="zoo_command", required=True)

    def with_dir(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        common(p)
        p.add_argument(
            "--zoo-dir",
            default=str(DEFAULT_ZOO_DIR),
            help=f"your models: looked up here first, then among the shipped ones (default {DEFAULT_ZOO_DIR})",
        )
        return p

    p = with_dir(zsub.add_parser("list", help="the shipped, trained and handcrafted zoo models"))
    p.set_defaults(func=cmd_list)

    p = with_dir(zsub.add_parser("train", help="train a zoo model on fresh samples (CPU)"))
    p.add_argument("task", help=f"one of: {', '.join(TASKS.names())}")
    p.add_argument("--hidden", type=int, required=True, help="hidden width d")
    p.add_argument("--seq", type=int, required=True, help="sequence length n")
    p.add_argument(
        "--steps",
        type=int,
        default=DEFAULT_STEPS,
        help=f"optimiser steps of 1024 samples (default {DEFAULT_STEPS:,}: about 4 min for d=16, n=10 on one core)",
    )
    p.add_argument("--seeds", type=int, default=1, help="train this many seeds and keep the best (ARC: 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 0.04/√hidden)")
    p.add_argument("--arch", choices=["rnn", "transformer"], default="rnn")
    p.add_argument("--layers", type=int, default=1, help="attention layers (transformer)")
    p.add_argument("--name", default=None, help="model name (default TASK_dHIDDEN_nSEQ)")
    p.add_argument("--out", default=None, help="directory to save into (default: --zoo-dir)")
    p.add_argument("--eval-samples", type=int, default=1_000_000)
    p.add_argument(
        "--first-checkpoint",
        type=int,
        default=FIRST_CHECKPOINT,
        help="samples seen at the first checkpoint, a power of two; then one at each power of two and at the end "
        f"(default 2^{FIRST_CHECKPOINT.bit_length() - 1}); saved in --out/NAME.ckpt/SAMPLES.safetensors",
    )
    p.add_argument("--no-checkpoints", action="store_true", help="save the final model only")
    p.set_defaults(func=cmd_train)

    p = with_dir(zsub.add_parser("eval", help="accuracy on fresh samples with a Clopper–Pearson CI"))
    p.add_argument("name", help="a model name from `wif zoo list` or a .safetensors path")
    p.add_argument("--samples", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--level", type=unit_interval, default=0.999)
    p.set_defaults(func=cmd_eval)

    p = with_dir(zsub.add_parser("ablate", help="silence named hidden neurons: the exact accuracy cost vs random ones"))
    p.add_argument("name", help="a zoo RNN from `wif zoo list` or a .safetensors path")
    p.add_argument("--neurons", required=True, help="0-based hidden neuron indices, e.g. 1,2,4,6,7")
    p.add_argument("--samples", type=int, default=1_000_000)
    p.add_argument("--random", type=int, default=20, help="random sets of as many other neurons (the control)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--level", type=unit_interval, default=0.999)
    p.set_defaults(func=cmd_ablate)

    p = with_dir(
        zsub.add_parser("estimate", help="estimate accuracy (sampling, deductive, importance) or its MSE curve")
    )
    p.add_argument("name")
    p.add_argument("--method", default="sampling", help=f"one of: {', '.join(ESTIMATORS.names())}")
    p.add_argument("--budget", type=int, default=100_000, help="forward passes the estimator may spend")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--curve", action="store_true", help="MSE vs compute over weight-noised copies; saved as JSON")
    p.add_argument("--methods", default=",".join(ESTIMATORS.names()), help="estimators on the curve")
    p.add_argument("--low", type=int, default=100, help="smallest budget on the curve")
    p.add_argument("--high", type=int, default=100_000, help="largest budget on the curve")
    p.add_argument("--per-decade", type=int, default=2)
    p.add_argument("--copies", type=int, default=8, help="weight-noised copies of the model")
    p.add_argument("--repeats", type=int, default=12, help="estimates per copy and budget")
    p.add_argument("--noise", type=float, default=0.05, help="noise std as a fraction of each matrix's RMS")
    p.add_argument("--truth-samples", type=int, default=4_000_000, help="samples for a copy's true accuracy")
    p.add_argument("--out", default=None, help="directory for estimates_NAME.json (default: --zoo-dir)")
    p.set_defaults(func=cmd_estimate)

    p = with_dir(zsub.add_parser("regions", help="exact accuracy by activation regions (LP-pruned; exact for n ≤ 3)"))
    p.add_argument("name", help="a model name from `wif zoo list` or a .safetensors path (any checkpoint)")
    p.add_argument("--max-regions", type=int, default=20_000, help="stop with an error past this many regions")
    p.add_argument("--seed", type=int, default=0, help="QMC scrambling seed (n ≥ 4 only)")
    p.add_argument("--list-regions", action="store_true", help="with --json: every region's pattern and masses")
    p.set_defaults(func=cmd_regions)

    p = with_dir(zsub.add_parser("surprise", help="surprise accounting of the deductive estimate, in bits"))
    p.add_argument("name", help="a model name from `wif zoo list` or a .safetensors path (any checkpoint)")
    p.add_argument(
        "--target-error",
        type=float,
        default=None,
        help="n = 2: explain 'error at most this' (default: the model's own exact error)",
    )
    p.add_argument("--max-regions", type=int, default=20_000, help="region method: stop past this many regions")
    p.set_defaults(func=cmd_surprise)

    p = with_dir(zsub.add_parser("store", help="run a zoo model on fresh inputs and store it as a run"))
    p.add_argument("name", help="a model name, a .safetensors path, or a checkpoint (NAME.ckpt/SAMPLES)")
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--cause", action="store_true", help="then report which explainer recovers the top-2 gap (of each checkpoint)"
    )
    p.add_argument(
        "--checkpoints",
        action="store_true",
        help="one run per checkpoint of the model, in order of samples seen (resumable: stored ones are kept)",
    )
    p.set_defaults(func=cmd_store)
