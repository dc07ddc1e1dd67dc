"""Both embedded models side by side: gemma3-270m's collection throughput against its own matmul roofline and a
naive per-choice loop (SmolLM2 measured in the same run), and both models' accuracy on the real items in ../shared.

``python -m bench.run models`` measures the throughput; ``python -m bench.run models-real`` the real items, on a
seeded sample of ``SAMPLES`` items per task (two shared cores cannot score all 3 × 4000 items twice within a
session); ``python -m bench.models --real 4000`` scores all of them (hours on 2 cores), into the resumable store
``data/models.duckdb``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from bench.collection import _collect_rate, _items
from bench.common import SHARED_BENCH, machine, matmul_flops, write_section
from wif_core.cli import main as wif
from wif_core.models.loading import EMBEDDED, default_layers, load_model
from wif_core.models.scoring import DEFAULT_MAX_TOKENS, score_items, score_naive
from wif_core.store import Store

DB = Path(__file__).resolve().parents[1] / "data" / "models.duckdb"
MODELS = (EMBEDDED, "gemma3-270m")
# items per task measured by default: BoolQ's passages make its items ~4x longer, so fewer of them
SAMPLES = {"piqa": 100, "winogrande": 100, "boolq": 50}
SEED = 0
LEVEL = 0.95


def _throughput(name: str, n_items: int, n_naive: int) -> dict:
    """Load time (cached copy), packed collection vs the naive loop, and the roofline of one embedded model.

    The matmul rate is measured just before this model's collection, since the shared machine's load drifts.
    """
    t = time.perf_counter()
    lm = load_model(name)
    load_s = time.perf_counter() - t
    params = sum(p.numel() for p in lm.model.parameters())
    embedding = lm.model.get_input_embeddings().weight.numel()
    layers = default_layers(lm.n_layers)
    items = _items(n_items)
    for _ in score_items(lm.model, lm.tokenizer, items[:4], layers):  # warm-up
        pass
    flops = matmul_flops()
    items_s, tokens_s, tokens = _collect_rate(lm, items, layers, DEFAULT_MAX_TOKENS)
    naive = items[: n_naive // 2] + items[len(items) // 2 : len(items) // 2 + n_naive // 2]
    t = time.perf_counter()
    for it in naive:
        score_naive(lm.model, lm.tokenizer, it, layers)
    naive_items_s = len(naive) / (time.perf_counter() - t)
    return {
        "model": name,
        "flops": flops,
        "load_s": load_s,
        "params": params,
        "embedding_params": embedding,
        # every parameter a matmul per token (the SmolLM2 method), and only the blocks' (the embedding is a lookup,
        # and the LM head runs only at the positions that predict scored tokens)
        "bound_tokens_s": flops / (2 * params),
        "bound_blocks_tokens_s": flops / (2 * (params - embedding)),
        "tokens_s": tokens_s,
        "items_s": items_s,
        "naive_items_s": naive_items_s,
        "n_items": len(items),
        "n_naive": len(naive),
        "tokens": tokens,
    }


def _run_id(store: Store, task: str, model: str, n: int) -> str | None:
    runs = store.runs()
    done = runs[(runs.task == task) & (runs.model == model) & (runs.status == "complete") & (runs.n_items == n)]
    return None if done.empty else str(done.run_id.iloc[0])


def ensure_real_runs(task: str, n: int) -> dict[str, str]:
    """Run ids of both models on a seeded sample of ``n`` items of ``task``, collecting what is missing
    (an interrupted collection resumes where it stopped)."""
    DB.parent.mkdir(parents=True, exist_ok=True)
    out = {}
    for model in MODELS:
        rid = None
        if DB.exists():
            with Store.open(DB) as store:
                rid = _run_id(store, task, model, n)
        if rid is None:
            args = ["collect", "--model", model, "--task", task, "--source", str(SHARED_BENCH / task)]
            args += ["--sample", str(n), "--seed", str(SEED), "--layers", "1", "--db", str(DB), "--json"]
            if wif(args) != 0:
                raise RuntimeError(f"collect failed for {model} on {task}")
            with Store.open(DB) as store:
                rid = _run_id(store, task, model, n)
        assert rid is not None
        out[model] = rid
    return out


def _accuracy_ci(k: int, n: int) -> tuple[float, float]:
    """Exact (Clopper–Pearson) interval of an accuracy of ``k`` out of ``n`` at ``LEVEL``."""
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=LEVEL, method="exact")
    return float(ci.low), float(ci.high)


def paired_outcomes(store: Store, run_a: str, run_b: str) -> dict:
    """Both runs' correctness on the items they share (matched by the normalised item key): the 2 × 2 table."""
    a = store.items(run_a).set_index("key")["correct"]
    b = store.items(run_b).set_index("key")["correct"]
    shared = a.index.intersection(b.index)
    ca, cb = a.loc[shared].to_numpy(bool), b.loc[shared].to_numpy(bool)
    return {
        "n": int(len(shared)),
        "both_right": int((ca & cb).sum()),
        "a_only_wrong": int((~ca & cb).sum()),
        "b_only_wrong": int((ca & ~cb).sum()),
        "both_wrong": int((~ca & ~cb).sum()),
        "acc_a": float(ca.mean()),
        "acc_b": float(cb.mean()),
        "ci_a": _accuracy_ci(int(ca.sum()), len(ca)),
        "ci_b": _accuracy_ci(int(cb.sum()), len(cb)),
    }


def _fmt_acc(acc: float, ci: tuple[float, float]) -> str:
    return f"{acc:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def speed_main(n_items: int = 24, n_naive: int = 6) -> dict:
    """Throughput of both embedded models, measured side by side in one run (section ``models``)."""
    torch.set_num_threads(2)
    load_before = os.getloadavg()[0]
    speed = [_throughput(name, n_items, n_naive) for name in MODELS]
    rows = "\n".join(
        f"| {s['model']} | {s['params'] / 1e6:.1f}M ({s['embedding_params'] / 1e6:.1f}M embedding) | {s['load_s']:.1f} s "
        f"| {s['flops'] / 1e9:.1f} | {s['bound_tokens_s']:.0f} / {s['bound_blocks_tokens_s']:.0f} | {s['tokens_s']:.0f} "
        f"({s['tokens_s'] / s['bound_tokens_s']:.0%} / {s['tokens_s'] / s['bound_blocks_tokens_s']:.0%}) "
        f"| {s['items_s']:.2f} | {s['naive_items_s']:.2f} | **{s['items_s'] / s['naive_items_s']:.2f}×** |"
        for s in speed
    )
    write_section(
        "models",
        f"""
## Both embedded models: throughput (issue 14)

Machine: {machine()}; load average {load_before:.1f} before the run and {os.getloadavg()[0]:.1f} after it (2 cores
shared with other work, so absolute rates are low and drift: each model's roofline comes from a dense fp32 matmul
measured just before its own collection, and the ratios to it are what compare).
Command: `python -m bench.run models`. Activation capture at 5 layers spread over depth, sites choice/last/mean,
{speed[0]["n_items"]} real items (half BoolQ, half PIQA test items from ../shared) with store writes, batches of
≤ {DEFAULT_MAX_TOKENS} padded tokens; the naive loop (one forward pass per choice and one for the listing prompt)
on {speed[0]["n_naive"]} of the same items.
The roofline is FLOP/s ÷ (2 × parameters), given two ways: with every parameter (the method of the collection
section) and with the blocks' parameters only — {MODELS[1]}'s 262k-token embedding is
{speed[1]["embedding_params"] / speed[1]["params"]:.0%} of its parameters, a lookup per token, and the LM head runs
only at positions that predict scored tokens. Load time is the cached converted copy (the first load converts
the GGUF once: see the README).

| model | parameters | load | matmul GFLOP/s | bound, tokens/s (all / blocks) | collection, tokens/s (of the bound) | items/s | naive items/s | packed ÷ naive |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
{rows}
""",
    )
    return {"speed": speed}


def real_main(n_real: int | None = None) -> dict:
    """Both models' accuracy on real items and their shared failures (section ``models-real``).

    ``n_real`` items of every task, else ``SAMPLES``. The section is rewritten after each task, so an
    interrupted run still shows the tasks it finished (and says which are missing).
    """
    if not SHARED_BENCH.exists():
        return {"skipped": "../shared/benchmarks absent"}
    torch.set_num_threads(2)
    load_before = os.getloadavg()[0]
    sizes = {task: n_real or n for task, n in SAMPLES.items()}
    t = time.perf_counter()
    real: dict[str, dict] = {}
    for task, n in sizes.items():
        run_ids = ensure_real_runs(task, n)
        with Store.open(DB) as store:
            real[task] = paired_outcomes(store, run_ids[MODELS[0]], run_ids[MODELS[1]])
        _write_real(real, sizes, load_before, time.perf_counter() - t)
    return {"real": real, "seconds": time.perf_counter() - t}


def _write_real(real: dict[str, dict], sizes: dict[str, int], load_before: float, seconds: float) -> None:
    rows = "\n".join(
        f"| {task} | {r['n']} | {_fmt_acc(r['acc_a'], r['ci_a'])} | {_fmt_acc(r['acc_b'], r['ci_b'])} "
        f"| {r['both_wrong']} | {r['a_only_wrong']} | {r['b_only_wrong']} | {r['both_right']} |"
        for task, r in real.items()
    )
    missing = [task for task in sizes if task not in real]
    full = all(n >= 4000 for n in sizes.values())
    scope = (
        "all 4000 items of each task"
        if full
        else "a seeded sample (`wif collect --sample N --seed 0`) of "
        + ", ".join(f"{n} {task}" for task, n in sizes.items())
        + " items out of 4000 each"
    )
    note = f" Not measured in this run (interrupted): {', '.join(missing)}." if missing else ""
    write_section(
        "models-real",
        f"""
## Both embedded models on the real items (issue 14)

Machine: {machine()}; load average {load_before:.1f} before the run. Command: `python -m bench.run models-real`.
Real items from ../shared (PIQA, BoolQ, WinoGrande; their train + val + test files, 4000 items each); measured
here: **{scope}** ({seconds:.0f} s of collection in this run; less where `data/models.duckdb` already held runs).{note}
All 4000 items of each: `python -m bench.models --real 4000` (hours on 2 cores; the store resumes).
Accuracy with its exact (Clopper–Pearson) {LEVEL:.0%} interval; items matched by their normalised key. The
2 × 2 table's cells are counts of items. The paired tests (exact McNemar p, Cohen's κ of the errors) belong to
`wif compare-runs` (issue 14, item 2), which is not on this branch: run it on these runs in `data/models.duckdb`.

| task | n | {MODELS[0]} accuracy | {MODELS[1]} accuracy | failed by both (shared failures) | {MODELS[0]} only | {MODELS[1]} only | both right |
| --- | --- | --- | --- | --- | --- | --- | --- |
{rows}
""",
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--real", type=int, default=None, help="items per task (default: SAMPLES)")
    print(json.dumps(real_main(n_real=parser.parse_args().real), indent=1, default=str))
