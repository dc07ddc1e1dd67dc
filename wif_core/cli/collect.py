"""``wif collect`` (score a task with a model, capturing activations) and ``wif import`` (another tool's outcomes)."""

from __future__ import annotations

import argparse
import sys
from contextlib import redirect_stdout
from dataclasses import asdict
from pathlib import Path
from typing import Any

from wif_core.cli.common import (
    AddCommon,
    add_device_options,
    cache_dir,
    device_and_dtype,
    emit,
    findings_summary,
    positive_int,
    progress_bar,
)
from wif_core.errors import InputError
from wif_core.models import DEFAULT_MAX_TOKENS, check_max_length_value


def _fractions(text: str) -> list[float]:
    """An argparse ``type``: three positive train,val,test fractions summing to 1."""
    from wif_core.errors import InputError
    from wif_core.splits import check_options

    try:
        parts = [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("give three numbers like 0.5,0.25,0.25") from None
    try:
        check_options(None, parts)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return parts


def model_specs(values: list[str]) -> list[str]:
    """``--model`` values (repeated, or comma-separated) as one list of specs; an existing path is never split."""
    out: list[str] = []
    for value in values:
        out += [value] if Path(value).exists() else [v.strip() for v in value.split(",") if v.strip()]
    return out


def collect_payload(result: Any) -> dict[str, Any]:
    """What ``wif collect`` prints of one collection."""
    return {
        "run_id": result.run.run_id,
        "task": result.run.task,
        "n_items": result.run.n_planned,
        "n_scored": result.n_new,
        "n_resumed": result.n_skipped,
        "n_truncated": result.n_truncated,
        "leakage": findings_summary(result.findings),
        "older_runs": list(result.older_runs),
        "checkpoint": result.run.config.get("checkpoint"),
    }


def _older_runs_text(result: Any, args: argparse.Namespace) -> str:
    """The note that the source changed: the runs of its earlier items stay in the store until deleted."""
    older = " ".join(result.older_runs)
    what = "a new run was started beside it" if result.n_skipped == 0 else "both runs are in the store"
    return (
        f"\nnote: {args.source} holds other items than it did for run {older} of this same command: {what}; "
        f"to delete the old run: wif runs --delete {older} --db {args.db}"
    )


def cmd_collect(args: argparse.Namespace) -> int:
    from wif_core.api import load_items
    from wif_core.runner import SplitOptions, check_collection, checkpoint_specs
    from wif_core.tasks.base import get_task

    # what can be checked without the model first: a bad file is one line at once, not after the model loaded
    get_task(args.task)
    check_max_length_value(args.max_length)
    args.requested_device = args.device  # Ray workers resolve it where they run (the driver may see no GPU)
    if args.engine != "ray":
        args.device, args.dtype = device_and_dtype(args)
    models = checkpoint_specs(model_specs(args.model))
    items = load_items(args.task, args.source, limit=args.limit, seed=args.seed, sample=args.sample)
    check_collection(items, args.task, SplitOptions(k=args.k, fractions=tuple(args.fractions), seed=args.seed))
    if args.shard is not None or args.engine == "ray":
        if len(models) != 1:
            raise InputError("--shard and --engine ray collect one model at a time; give one --model")
        if args.shard is not None and args.engine == "ray":
            raise InputError("--shard is one job's part of a run; --engine ray splits the run itself: give one")
        out, text = (_collect_shard if args.shard is not None else _collect_ray)(args, models[0][0], items)
        emit(args, out, text)
        return 0
    if args.out is not None:
        raise InputError("--out is the shard directory of --shard i/N or --engine ray; without them, use --db")
    if len(models) == 1:
        out, text = _collect_one(args, models[0][0], models[0][1], items)
        emit(args, out, text)
        return 0
    runs, lines = [], []
    for n, (spec, checkpoint) in enumerate(models, 1):  # one model in memory at a time
        out, text = _collect_one(args, spec, checkpoint, items, f" [{n}/{len(models)}]")
        runs.append(out)
        lines.append(f"{checkpoint['label'] if checkpoint else spec}: {text}")
    emit(args, {"runs": runs}, "\n".join([*lines, f"{len(runs)} checkpoint runs of {args.task} in {args.db}"]))
    return 0


def _collect_one(
    args: argparse.Namespace, spec: str, checkpoint: dict[str, Any] | None, items: Any, tag: str = ""
) -> tuple[dict[str, Any], str]:
    """Load ``spec`` and collect ``items`` with it (a run marked ``checkpoint`` when given): the payload and line."""
    from wif_core.api import collect
    from wif_core.models.loading import load_model
    from wif_core.store import Store

    lm = load_model(spec, cache_dir(args), device=args.device, dtype=args.dtype)
    with Store.open(args.db, write=True) as store:
        with progress_bar(args, f"collect {args.task}{tag}", len(items), "item") as bar:
            result = collect(
                store,
                lm,
                args.task,
                items,
                source=args.source,
                limit=args.limit,
                sample=args.sample,
                layers=args.layers,
                token_layers=args.token_layers,
                scoring=args.scoring,
                k=args.k,
                fractions=tuple(args.fractions),
                seed=args.seed,
                max_tokens=args.max_tokens,
                progress=bar.update,
                resumed=bar.resumed,
                max_length=args.max_length,
                checkpoint=checkpoint,
            )
    out = collect_payload(result)
    cut = ""
    if result.n_truncated:
        from wif_core.models.scoring import model_max_length

        n, length = result.n_truncated, args.max_length or model_max_length(lm.model)
        cut = f"{n} item{'s' if n != 1 else ''} cut from the left of the context to {length} tokens; "
    text = (
        f"run {out['run_id']}: {out['n_scored']} scored, {out['n_resumed']} already done; {cut}"
        f"leakage: {out['leakage'] or 'none'}"
    )
    return out, text + (_older_runs_text(result, args) if result.older_runs else "")


def _collect_options(args: argparse.Namespace) -> dict[str, Any]:
    """``shards.collect_shard``'s keyword arguments from the command line (the same run as ``wif collect``);
    ``layers`` and ``token_layers`` as given (resolved against the model where it is loaded)."""
    from wif_core.runner import SplitOptions

    return {
        "source": args.source,
        "layers": args.layers,
        "token_layers": args.token_layers,
        "scoring": args.scoring,
        "limit": args.limit,
        "sample": args.sample,
        "seed": args.seed,
        "split_options": SplitOptions(k=args.k, fractions=tuple(args.fractions), seed=args.seed),
        "max_tokens": args.max_tokens,
        "max_length": args.max_length,
    }


def _collect_shard(args: argparse.Namespace, spec: str, items: Any) -> tuple[dict[str, Any], str]:
    """``--shard i/N --out DIR``: one shard into a shard directory; no store is opened."""
    from wif_core.engines.shards import parse_shard, shard_block, shard_scorer
    from wif_core.models.loading import load_model

    if args.out is None:
        raise InputError("--shard i/N writes into a shard directory: give --out DIR (merge it with `wif ingest DIR`)")
    i, n = parse_shard(args.shard)
    lm = load_model(spec, cache_dir(args), device=args.device, dtype=args.dtype)
    with progress_bar(args, f"collect {args.task} shard {i}/{n}", len(shard_block(items, i, n)), "item") as bar:
        result = shard_scorer(lm)(
            items, (i, n), Path(args.out), dict(_collect_options(args), task=args.task), bar.update
        )
    out = asdict(result)
    what = "finished before: reused" if result.reused else f"{result.n_items} items scored in {result.seconds:.0f} s"
    return out, f"run {result.run_id} shard {i}/{n}: {what}; in {result.path} (merge with `wif ingest {args.out}`)"


def default_shard_dir(args: argparse.Namespace, spec: str) -> Path:
    """Where ``--engine ray`` keeps a run's shards without ``--out``: beside the store, named by the command (so
    the same command, run again after a kill, finds the shards it wrote)."""
    import hashlib
    import json

    from wif_core.runner import _slug

    keys = ("task", "source", "limit", "sample", "seed", "layers", "token_layers", "scoring", "k", "fractions")
    doc = {k: getattr(args, k) for k in keys} | {"model": spec, "max_length": args.max_length, "shards": args.shards}
    digest = hashlib.sha1(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:10]
    from wif_core.paths import shard_root

    return shard_root(args.db) / f"{_slug(spec)}--{args.task}--{digest}"


def _collect_ray(args: argparse.Namespace, spec: str, items: Any) -> tuple[dict[str, Any], str]:
    """``--engine ray``: shards scored by Ray actors, each merged into ``--db`` as it finishes."""
    from wif_core.engines.ray_engine import collect_on_ray

    n_shards = args.shards or max(2 * args.workers, -(-len(items) // 250))
    out_dir = Path(args.out) if args.out else default_shard_dir(args, spec)
    options = _collect_options(args)  # the model loads on the workers only
    # Ray's threads print retries and worker errors to stdout: they go to stderr, so --json stays one document
    with progress_bar(args, f"collect {args.task} on ray", len(items), "item") as bar, redirect_stdout(sys.stderr):
        result = collect_on_ray(
            Path(args.db),
            spec,
            args.task,
            items,
            out=out_dir,
            n_shards=n_shards,
            workers=args.workers,
            threads_per_worker=args.threads_per_worker,
            gpus_per_worker=args.gpus_per_worker,
            address=args.address,
            cache_dir=cache_dir(args),
            load={"device": args.requested_device, "dtype": args.dtype},
            options=options,
            progress=bar.update,
        )
    state = "complete" if result.complete else "incomplete (run the same command again to go on)"
    text = (
        f"run {result.run_id}: {result.n_items} items in {args.db}, {state}; {len(result.scored)} of "
        f"{result.n_shards} shards scored now on {result.workers} Ray workers, {len(result.reused)} reused from "
        f"{result.out}; {result.seconds:.0f} s ({result.merge_seconds:.1f} s merging)"
    )
    return asdict(result), text


def cmd_import(args: argparse.Namespace) -> int:
    from wif_core.cli.runs import runs_payload
    from wif_core.runner import SplitOptions, import_outcomes
    from wif_core.store import Store

    with Store.open(args.db, write=True) as store:
        result = import_outcomes(store, Path(args.path), args.task, args.model_name, SplitOptions(seed=args.seed))
        run = next(r for r in runs_payload(store) if r["run_id"] == result.run.run_id)
    out = {**run, "leakage": findings_summary(result.findings)}
    text = (
        f"imported {out['n_items']} items as run {out['run_id']} (accuracy {out['accuracy']:.3f}); "
        f"leakage: {out['leakage'] or 'none'}, {out['n_duplicates']} items excluded from evaluation"
    )
    emit(args, out, text)
    return 0


def add_commands(sub: Any, common: AddCommon) -> None:
    """Add ``wif collect`` and ``wif import``."""
    p = common(sub.add_parser("collect", help="score a task with a model, capturing activations"))
    p.add_argument(
        "--model",
        required=True,
        action="append",
        help="'smollm2-135m' or 'gemma3-270m' (embedded), a local directory, a hub id, or a hub id at a revision (org/name@REV); "
        "several checkpoints of one model (DIR1,DIR2 or repeated --model: directories, or revisions of one hub "
        "id) give one run each, marked with its checkpoint",
    )
    p.add_argument("--task", required=True, help="piqa, boolq, winogrande, siqa, gen-physical, …")
    p.add_argument("--source", default="hf", help="'hf', 'hf:ORG/NAME[:CONFIG]', 'generated', or a file/dir")
    p.add_argument("--limit", type=positive_int, default=None, help="the first N items")
    p.add_argument("--sample", type=positive_int, default=None, help="a seeded random N items (order kept)")
    p.add_argument("--layers", default=None, help="blocks to capture, e.g. 5,10,15 (default: 5 spread evenly)")
    p.add_argument(
        "--token-layers", default=None, help="layers whose per-token activations are kept (attention probes, SAEs)"
    )
    p.add_argument("--scoring", choices=["sum", "norm"], default="sum", help="log-likelihood sum or per byte")
    p.add_argument(
        "--k", type=positive_int, default=None, help="items per outcome in the balanced splits (default: all)"
    )
    p.add_argument("--fractions", type=_fractions, default=[0.5, 0.25, 0.25], help="train,val,test fractions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--max-tokens",
        type=positive_int,
        default=None,
        help=f"padded tokens per forward batch (default: {DEFAULT_MAX_TOKENS} on the CPU; on a GPU, what its free "
        "memory holds)",
    )
    p.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="most tokens per scored sequence; longer items lose context from the left (default: the model's)",
    )
    add_device_options(p)
    p.add_argument("--cache-dir", default=None, help="where converted model copies are cached")
    scale = p.add_argument_group("scaling out (README: Scaling out)")
    scale.add_argument(
        "--shard",
        default=None,
        help="i/N: score only shard i (0-based) of N into --out, without a store (a cluster job)",
    )
    scale.add_argument("--out", default=None, help="the shard directory of --shard or --engine ray")
    scale.add_argument("--engine", choices=["process", "ray"], default="process", help="where to score (default here)")
    scale.add_argument("--address", default=None, help="Ray cluster: 'auto' or HOST:PORT (default: start one here)")
    scale.add_argument("--workers", type=positive_int, default=2, help="Ray actors, each loading the model once")
    scale.add_argument("--threads-per-worker", type=positive_int, default=1, help="torch threads (CPUs) per actor")
    scale.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per actor (fractions share one)")
    scale.add_argument(
        "--shards", type=positive_int, default=None, help="shards of the run (default: 2 per worker, ≤ 250 items each)"
    )
    p.set_defaults(func=cmd_collect)

    p = common(sub.add_parser("import", help="import another tool's outcomes as a run"))
    p.add_argument("path", help="an outcome file or directory (train/val/test.json), or lm-eval samples JSONL")
    p.add_argument("--task", required=True)
    p.add_argument("--model-name", required=True, help="the model that produced the outcomes")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_import)
