"""The ``wif`` command. Every command takes ``--db PATH``; ``--json`` prints one JSON document."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wif_core.errors import InputError, WifError
from wif_core.models import DEFAULT_MAX_TOKENS

DEFAULT_DB = "data/wif.duckdb"
DEMO_DB = "data/demo.duckdb"
DEMO_TASKS = ("gen-physical", "gen-passage", "gen-coref", "gen-social")
DEMO_ZOO_MODEL, DEMO_ZOO_SAMPLES = "2nd_argmax_d16_n10", 4000
DEMO_ATTRIBUTION_METHODS = ("attnlrp", "grad_x_input")  # the paper's method and the cheapest baseline
DEMO_TOKEN_LAYERS = "18"  # per-token activations of one middle layer, for attention probes and SAEs
REPO_ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("wif")


def _clean(value: Any) -> Any:
    """JSON-safe values: NaN → null, numpy scalars and arrays → Python."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    if args.json:
        print(json.dumps(_clean(payload), indent=None))
    else:
        print(text)


def _findings_summary(findings: Sequence[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in findings:
        out[f.kind] = out.get(f.kind, 0) + 1
    return out


def _runs_payload(store: Any) -> list[dict[str, Any]]:
    frame = store.runs()
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
        }  # fmt: skip
        for r in frame.itertuples()
    ]


def _collect_one(args: argparse.Namespace, store: Any, lm: Any, task: str, source: str, limit: int | None) -> dict:
    from tqdm import tqdm

    from wif_core.models.loading import parse_layers
    from wif_core.runner import SplitOptions, collect
    from wif_core.tasks.sources import load_items

    items = load_items(task, source, limit, args.seed, getattr(args, "sample", None))
    layers = parse_layers(args.layers, lm.n_layers)
    token_layers = parse_layers(args.token_layers, lm.n_layers) if args.token_layers else []
    with tqdm(total=len(items), desc=f"{task}", unit="item", disable=args.json or not sys.stderr.isatty()) as bar:
        result = collect(
            store, lm, task, items, source, layers, args.scoring, limit, args.seed,
            SplitOptions(args.k, tuple(args.fractions), args.seed), args.max_tokens, bar.update, token_layers,
            getattr(args, "sample", None),
        )  # fmt: skip
    return {
        "run_id": result.run.run_id, "task": task, "n_items": result.run.n_planned, "n_scored": result.n_new,
        "n_resumed": result.n_skipped, "leakage": _findings_summary(result.findings),
    }  # fmt: skip


def cmd_collect(args: argparse.Namespace) -> int:
    from wif_core.models.loading import load_model
    from wif_core.store import Store
    from wif_core.tasks.base import get_task

    get_task(args.task)
    lm = load_model(args.model, Path(args.cache_dir) if args.cache_dir else None)
    with Store.open(args.db, write=True) as store:
        out = _collect_one(args, store, lm, args.task, args.source, args.limit)
    _emit(args, out, f"run {out['run_id']}: {out['n_scored']} scored, {out['n_resumed']} already done; "
          f"leakage: {out['leakage'] or 'none'}")  # fmt: skip
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from wif_core.runner import SplitOptions, import_outcomes
    from wif_core.store import Store

    with Store.open(args.db, write=True) as store:
        result = import_outcomes(store, Path(args.path), args.task, args.model_name, SplitOptions(seed=args.seed))
        run = next(r for r in _runs_payload(store) if r["run_id"] == result.run.run_id)
    out = {**run, "leakage": _findings_summary(result.findings)}
    _emit(args, out, f"imported {out['n_items']} items as run {out['run_id']} (accuracy {out['accuracy']:.3f}); "
          f"leakage: {out['leakage'] or 'none'}, {out['n_duplicates']} items excluded from evaluation")  # fmt: skip
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from wif_core.store import Store

    with Store.open(args.db) as store:
        runs = _runs_payload(store)
    if args.json:
        _emit(args, runs, "")
        return 0
    if not runs:
        print(f"no runs in {args.db}")
    for r in runs:
        acc = "n/a" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
        print(f"{r['run_id']}  {r['model']}  {r['task']}  items={r['n_items']}/{r['n_planned']}  acc={acc}  "
              f"dups={r['n_duplicates']}  layers={r['layers']}  {r['status']}")  # fmt: skip
    return 0


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
            "pred": None if r.pred is None or (isinstance(r.pred, float) and math.isnan(r.pred)) else int(r.pred),
            "gold": int(r.gold),
            "margin": r.margin,
            "excluded": bool(r.excluded),
            "reason": r.reason,
            "context": r.context,
            "choices": list(r.choices),
        }  # fmt: skip
        for r in frame.itertuples()
    ]
    if args.json:
        _emit(args, rows, "")
        return 0
    for r in rows:
        mark = "✓" if r["correct"] else "✗"
        ctx = " ".join(r["context"].split())[:70]
        print(f"{mark} {r['item_id']:<24} {r['split'] or '-':<6} gold={r['gold']} pred={r['pred']}  {ctx}")
    return 0


def build_demo(db: Path, limit: int, cache_dir: Path | None, quiet: bool) -> list[dict[str, Any]]:
    """Build the demo store: the embedded model on each generated task and a zoo run (resumes if interrupted),
    then its SAEs, the comparison page's default results and the attributions of every failure."""
    from wif_core.models.loading import EMBEDDED, load_model
    from wif_core.store import Store

    lm = load_model(EMBEDDED, cache_dir)
    args = argparse.Namespace(
        layers=None, token_layers=DEMO_TOKEN_LAYERS, seed=0, k=None, fractions=[0.5, 0.25, 0.25], scoring="sum",
        max_tokens=DEFAULT_MAX_TOKENS, json=quiet,
    )  # fmt: skip
    tmp = db.with_name(db.name + ".building")
    out = []
    with Store.open(tmp, write=True) as store:
        for task in DEMO_TASKS:
            out.append(_collect_one(args, store, lm, task, "generated", limit))
        out.append(build_demo_zoo(store))
    tmp.rename(db)  # the demo store appears only once it is whole
    build_demo_saes(db, quiet)
    prefit_demo(db)
    build_demo_attributions(db, lm, quiet)
    return out


def build_demo_zoo(store: Any) -> dict[str, Any]:
    """The demo's zoo run: the shipped M16,10 on fresh inputs, with its known cause in every item's factors."""
    from wif_core.zoo.runs import store_run
    from wif_core.zoo.weights import load

    r = store_run(store, load(DEMO_ZOO_MODEL), DEMO_ZOO_SAMPLES)
    return {"run_id": r.run_id, "n_items": r.n_items, "accuracy": r.accuracy}


def build_demo_attributions(db: Path, lm: Any, quiet: bool) -> int:
    """Attribute every failure of the demo's language-model runs with the demo's methods (resumes)."""
    from tqdm import tqdm

    from wif_core.attribution import attribute_failures
    from wif_core.store import Store

    with Store.open(db) as store:
        runs = store.runs()
    total = int(runs.loc[(runs["model"] == lm.name) & (runs["kind"] == "collected"), "n_incorrect"].sum())
    with tqdm(total=total, desc="attributing failures", unit="item", disable=quiet or not sys.stderr.isatty()) as bar:
        summaries = attribute_failures(db, lm, DEMO_ATTRIBUTION_METHODS, progress=bar.update)
    return sum(s.n_computed for s in summaries)


def prefit_demo(db: Path) -> int:
    """Fit the comparison page's default explainers on every demo run into the result cache,
    so a workshop audience's first visit is instant. Returns how many results were fitted."""
    from wif_core.explainers.data import RunData
    from wif_core.explainers.evaluate import DEFAULT_COMPARISON, ResultCache, evaluate_all
    from wif_core.store import Store

    n = 0
    with Store.open(db) as store:
        for run_id in store.run_ids():
            try:
                data = RunData.load(store, run_id)
            except WifError as exc:  # a run too small to evaluate: the page says why
                log.warning("not pre-fitting %s: %s", run_id, exc)
                continue
            n += len(evaluate_all(data, list(DEFAULT_COMPARISON), cache=ResultCache.beside(db)))
    return n


def build_demo_saes(db: Path, quiet: bool) -> list[dict[str, Any]]:
    """Train the demo's SAEs: one per run at DEMO_TOKEN_LAYERS, where none is saved yet (a small budget)."""
    from tqdm import tqdm

    from wif_core.sae import available
    from wif_core.sae.train import DEMO_SAMPLES, TrainConfig, train_run_sae
    from wif_core.store import Store

    layer, out = int(DEMO_TOKEN_LAYERS), []
    with Store.open(db) as store:
        todo = [r for r in store.run_ids() if layer in store.run(r).token_layers and layer not in available(db, r)]
        for run_id in todo:
            with tqdm(total=DEMO_SAMPLES, desc=f"SAE {run_id.split('--')[1]}", unit="tok",
                      disable=quiet or not sys.stderr.isatty()) as bar:  # fmt: skip
                result = train_run_sae(store, run_id, layer, TrainConfig(samples=DEMO_SAMPLES), bar.update)
            out.append({"run_id": run_id, "layer": layer, "explained_variance": result.explained_variance})
    return out


def _launch_app(db: str, port: int | None, headless: bool) -> int:
    from wif_core.store import Store

    Store.open(db).close()  # fail here, in one line, rather than inside the browser
    cmd = [sys.executable, "-m", "streamlit", "run", str(REPO_ROOT / "app.py"), "--browser.gatherUsageStats=false",
           "--server.fileWatcherType=none"]  # fmt: skip
    if port:
        cmd += ["--server.port", str(port)]
    if headless:
        cmd += ["--server.headless=true"]
    env = {**os.environ, "WIF_DB": str(Path(db).resolve())}
    return subprocess.call(cmd, env=env)


def _upgrade_demo(db: Path, args: argparse.Namespace) -> None:
    """Add what a demo store from an older wif lacks: SAEs, the zoo run, attributions."""
    from wif_core.models.loading import EMBEDDED, load_model
    from wif_core.store import Store

    with Store.open(db, write=True) as store:  # upgrades a demo store of schema 1 in place
        if not any(store.run(r).task.startswith("zoo-") for r in store.run_ids()):
            build_demo_zoo(store)
        counts = store.attribution_counts()
        lm_runs = {r for r in store.run_ids() if store.run(r).task in DEMO_TASKS}
        has_attributions = bool(lm_runs & set(counts["run_id"]))
    build_demo_saes(db, args.json)
    if not has_attributions:
        build_demo_attributions(db, load_model(EMBEDDED, Path(args.cache_dir) if args.cache_dir else None), args.json)


def cmd_demo(args: argparse.Namespace) -> int:
    db = Path(args.db if args.db != DEFAULT_DB else DEMO_DB)
    if not db.exists():
        built = build_demo(db, args.limit, Path(args.cache_dir) if args.cache_dir else None, args.json)
        if not args.json:
            for b in built:
                print(f"built {b['run_id']}: {b['n_items']} items")
    else:
        _upgrade_demo(db, args)
    if args.no_app:
        from wif_core.store import Store

        with Store.open(db) as store:
            _emit(args, _runs_payload(store), f"demo store ready at {db}")
        return 0
    return _launch_app(str(db), args.port, args.headless)


def cmd_migrate(args: argparse.Namespace) -> int:
    from wif_core.store import SCHEMA_VERSION, Store

    if not Path(args.db).exists():
        raise InputError(f"no store at {args.db}; --db must name an existing wif store")
    with Store.open(args.db, write=True):  # opening for writing upgrades an older schema in place
        pass
    _emit(args, {"db": args.db, "schema_version": SCHEMA_VERSION}, f"{args.db}: store schema version {SCHEMA_VERSION}")
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    return _launch_app(args.db, args.port, args.headless)


def _results_cache(args: argparse.Namespace):
    from wif_core.explainers.evaluate import ResultCache

    return ResultCache(None) if args.no_cache else ResultCache.beside(Path(args.db))


def cmd_explain(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from wif_core.explainers.data import RunData
    from wif_core.explainers.evaluate import best_of, compare, evaluate, evaluate_all, variants
    from wif_core.store import Store

    settings = dict(kv.split("=", 1) for kv in args.set or [])
    if args.other_run:
        settings["other_run"] = args.other_run
    with Store.open(args.db) as store:
        data = RunData.load(store, args.run)
        cache = _results_cache(args)
        common = {"seed": args.seed, "level": args.level, "n_resamples": args.resamples, "cache": cache}
        if args.all:
            todo = variants(data, args.explainer.split(",") if args.explainer else None)
            with tqdm(total=len(todo), disable=args.json or not sys.stderr.isatty(), unit="explainer") as bar:
                results = evaluate_all(data, args.explainer.split(",") if args.explainer else None,
                                       progress=lambda _: bar.update(), **common)  # fmt: skip
        elif args.explainer:
            results = [evaluate(data, args.explainer, args.layer, args.site, **common, **settings)]
        else:
            raise InputError("give --explainer NAME or --all")
    payload = [r.summary() for r in results]
    best = best_of(results)
    for p, r in zip(payload, results, strict=True):
        if best is not None and r is not best and len(results) > 1:
            p["vs_best"] = compare(r, best)
    if args.json:
        _emit(args, payload if args.all else payload[0], "")
        return 0
    for tier in ("input", "output", "gold"):
        rows = [r for r in results if r.tier == tier]
        if rows:
            print(f"[{tier} tier]")
        for r in sorted(rows, key=lambda r: -r.auc):
            print(
                f"  {r.label:<32} AUC {r.auc:.3f}  {r.ci_level:.1%} CI [{r.ci_low:.3f}, {r.ci_high:.3f}]  n={r.n_test}"
            )
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from wif_core.explainers.data import RunData
    from wif_core.explainers.evaluate import reproduce
    from wif_core.store import Store

    with Store.open(args.db) as store:
        out = reproduce(RunData.load(store, args.run), seed=args.seed, cache=_results_cache(args))
    if args.json:
        _emit(args, out, "")
        return 0
    print(f"{out['run_id']}: probe-paper (last token, C=100) vs the paper ({out['paper_model']}, {out['paper_task']})")
    for r in out["results"]:
        paper = "" if r["paper_auc"] is None else f"   paper L{r['paper_layer']}: {r['paper_auc']:.3f}"
        print(f"  L{r['layer']:<3} depth {r['relative_depth']:.2f}  AUC {r['auc']:.3f} "
              f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}] n={r['n_test']}{paper}")  # fmt: skip
    return 0


def cmd_sae_train(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from tqdm import tqdm

    from wif_core.sae.train import TrainConfig, train_run_sae
    from wif_core.store import Store

    cfg = TrainConfig(arch=args.arch, width=args.width, k=args.k, samples=args.samples, batch=args.batch, lr=args.lr,
                      seed=args.seed, splits=tuple(s for s in args.splits.split(",") if s))  # fmt: skip
    cfg.check()
    with Store.open(args.db) as store:
        with tqdm(desc="training SAE", unit="tok", disable=args.json or not sys.stderr.isatty()) as bar:
            r = train_run_sae(store, args.run, args.layer, cfg, bar.update)
    _emit(args, asdict(r), f"trained a {r.arch} SAE ({r.width} features, k={r.k}) on {r.n_tokens} tokens of "
          f"{r.n_items} {'/'.join(r.splits)} items in {r.seconds:.1f} s; on {r.n_eval_tokens} held-out {r.eval_split} "
          f"tokens: explained variance {r.explained_variance:.3f} (untrained "
          f"{r.untrained['explained_variance']:.3f}), MSE {r.mse:.4g}, mean L0 {r.mean_l0:.1f}, "
          f"dead {r.dead_fraction:.0%}; saved to {r.path}")  # fmt: skip
    return 0


def cmd_sae_add(args: argparse.Namespace) -> int:
    from wif_core.sae.load import add_sae
    from wif_core.store import Store

    with Store.open(args.db) as store:
        r = add_sae(store, args.run, args.layer, args.sae)
    _emit(args, r, f"added {r['source']} ({r['arch']}, {r['width']} features) as run {r['run_id']}'s SAE at layer "
          f"{r['layer']}: explained variance {r['explained_variance']:.3f}, mean L0 {r['mean_l0']:.1f} on the run's "
          f"{r['n_eval_tokens']} tokens" + (f"; note: {r['note']}" if r["note"] else ""))  # fmt: skip
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
            rows.append({"run_id": run_id, "layer": layer, "path": str(path), "arch": info.architecture,
                         "width": info.d_sae, "d_in": info.d_in, "source": m.get("source", "?"),
                         "explained_variance": m.get("explained_variance"), "mean_l0": m.get("mean_l0"),
                         "n_tokens": m.get("n_tokens")})  # fmt: skip
    text = "\n".join(f"{r['run_id']}  L{r['layer']}  {r['arch']} {r['width']}  EV {r['explained_variance'] or float('nan'):.3f}"
                     f"  L0 {r['mean_l0'] or float('nan'):.1f}  {r['path']}" for r in rows)  # fmt: skip
    _emit(args, rows, text or f"no SAEs beside {args.db}; train one with `wif sae train --run RUN_ID --layer L`")
    return 0


def cmd_sae_diff(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from wif_core.sae.diff import run_diff
    from wif_core.store import Store

    with Store.open(args.db) as store:
        with tqdm(desc="encoding", unit="item", disable=args.json or not sys.stderr.isatty()) as bar:
            d = run_diff(store, args.run, args.layer, top=args.top, by=args.by, n_contexts=args.contexts,
                         level=args.level, n_resamples=args.resamples, seed=args.seed, path=args.sae,
                         progress=bar.update)  # fmt: skip
    if args.json:
        _emit(args, [f.summary(contexts=bool(args.contexts)) for f in d.features], "")
        return 0
    print(f"{d.run_id} L{d.layer}: {d.n_live} live features of {d.d_sae} ({d.n_dead} dead); train split "
          f"{d.n_train_failed} failed / {d.n_train_success} successful items; ranked by {d.rank_by}")  # fmt: skip
    print(
        f"{'#':>3} {'feature':>7} {'freq_fail':>9} {'freq_ok':>8} {'effect':>7} {'AUC':>6} {'CI':>15} {'AUC test':>8}"
    )
    for f in d.features:
        test = "—" if f.auc_test is None else f"{f.auc_test:.3f}"
        print(f"{f.rank:>3} {f.feature:>7} {f.freq_fail:>9.2f} {f.freq_success:>8.2f} {f.effect:>+7.2f} {f.auc:>6.3f} "
              f"[{f.ci_low:.3f}, {f.ci_high:.3f}] {test:>8}  {f.contexts[0].snippet() if f.contexts else ''}")  # fmt: skip
    return 0


def _fractions(text: str) -> list[float]:
    try:
        parts = [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("give three numbers like 0.5,0.25,0.25") from None
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("give three numbers like 0.5,0.25,0.25")
    return parts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wif", description="Why It Failed: failure analysis for language models")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--db", default=DEFAULT_DB, help=f"store path (default {DEFAULT_DB})")
        p.add_argument("--json", action="store_true", help="print one JSON document")
        p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
        return p

    p = common(sub.add_parser("collect", help="score a task with a model, capturing activations"))
    p.add_argument("--model", required=True, help="'smollm2-135m' (embedded), a local directory, or a hub id")
    p.add_argument("--task", required=True, help="piqa, boolq, winogrande, siqa, gen-physical, …")
    p.add_argument("--source", default="hf", help="'hf', 'hf:ORG/NAME[:CONFIG]', 'generated', or a file/dir")
    p.add_argument("--limit", type=int, default=None, help="the first N items")
    p.add_argument("--sample", type=int, default=None, help="a seeded random N items (order kept)")
    p.add_argument("--layers", default=None, help="blocks to capture, e.g. 5,10,15 (default: 5 spread evenly)")
    p.add_argument(
        "--token-layers", default=None, help="layers whose per-token activations are kept (attention probes, SAEs)"
    )
    p.add_argument("--scoring", choices=["sum", "norm"], default="sum", help="log-likelihood sum or per byte")
    p.add_argument("--k", type=int, default=None, help="items per outcome in the balanced splits (default: all)")
    p.add_argument("--fractions", type=_fractions, default=[0.5, 0.25, 0.25], help="train,val,test fractions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS, help="padded tokens per forward batch")
    p.add_argument("--cache-dir", default=None, help="where converted model copies are cached")
    p.set_defaults(func=cmd_collect)

    p = common(sub.add_parser("import", help="import another tool's outcomes as a run"))
    p.add_argument("path", help="an outcome file or directory (train/val/test.json), or lm-eval samples JSONL")
    p.add_argument("--task", required=True)
    p.add_argument("--model-name", required=True, help="the model that produced the outcomes")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_import)

    p = common(sub.add_parser("runs", help="list the runs in a store"))
    p.set_defaults(func=cmd_runs)

    p = common(sub.add_parser("items", help="list a run's items"))
    p.add_argument("--run", required=True)
    p.add_argument("--outcome", choices=["correct", "incorrect"])
    p.add_argument("--split", choices=["train", "val", "test", "unused"])
    p.add_argument("--search", default=None, help="text to look for in the context or choices")
    p.add_argument("--limit", type=int, default=None)
    p.set_defaults(func=cmd_items)

    p = common(sub.add_parser("explain", help="fit an explainer on a run's train split and score its test split"))
    p.add_argument("--run", required=True)
    p.add_argument("--explainer", default=None, help="a registered name (with --all: a comma list to restrict to)")
    p.add_argument("--all", action="store_true", help="every explainer and setting that applies to the run")
    p.add_argument("--layer", type=int, default=None)
    p.add_argument("--site", choices=["last", "mean", "choice", "tokens"], default=None)
    p.add_argument("--other-run", default=None, help="for cross-model: the run whose outcomes predict")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="extra explainer setting (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--level", type=float, default=0.999, help="confidence level of the bootstrap CI")
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--no-cache", action="store_true", help="ignore and do not write cached results")
    p.set_defaults(func=cmd_explain)

    p = common(sub.add_parser("reproduce", help="the paper's probe protocol on a run, beside the paper's AUCs"))
    p.add_argument("--run", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-cache", action="store_true")
    p.set_defaults(func=cmd_reproduce)

    sae = sub.add_parser("sae", help="sparse autoencoders: train, add, list, and diff features of failures")
    sae_sub = sae.add_subparsers(dest="sae_command", required=True)
    p = common(sae_sub.add_parser("train", help="train an SAE (sae-lens) on a run's train-split token activations"))
    p.add_argument("--run", required=True)
    p.add_argument("--layer", type=int, required=True, help="a layer collected with --token-layers")
    p.add_argument("--arch", choices=["topk", "jumprelu"], default="topk")
    p.add_argument("--width", type=int, default=None, help="features (default 8 × the model's width)")
    p.add_argument("--k", type=int, default=32, help="active features per token (jumprelu: the target L0)")
    p.add_argument("--samples", type=int, default=None, help="token vectors to train on, with repeats "
                   "(default 20 passes, 20k..300k)")  # fmt: skip
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
    p.add_argument("--level", type=float, default=0.999)
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_sae_diff)

    from wif_core.attribution.cli import add_commands as add_attribution
    from wif_core.clusters.cli import add_commands as add_cluster
    from wif_core.zoo.cli import add_commands as add_zoo

    add_attribution(sub, common)
    add_cluster(sub, common)
    add_zoo(sub, common)

    p = common(sub.add_parser("demo", help=f"build {DEMO_DB} if absent, then open the dashboard"))
    p.add_argument("--limit", type=int, default=120, help="items per generated task")
    p.add_argument("--no-app", action="store_true", help="build the store only")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--headless", action="store_true")
    p.add_argument("--cache-dir", default=None)
    p.set_defaults(func=cmd_demo)

    p = common(sub.add_parser("migrate", help="upgrade a store written by an older wif, in place"))
    p.set_defaults(func=cmd_migrate)

    p = common(sub.add_parser("app", help="open the dashboard on a store"))
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--headless", action="store_true")
    p.set_defaults(func=cmd_app)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        import torch

        torch.set_num_threads(max(1, min(os.cpu_count() or 1, 8)))
        return int(args.func(args))
    except WifError as exc:
        print(f"wif: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("wif: interrupted; finished batches are stored, run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
