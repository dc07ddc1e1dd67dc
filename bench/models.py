"""Both embedded models side by side: gemma3-270m's collection throughput against its own matmul roofline and a
naive per-choice loop (SmolLM2 measured in the same run), and both models' accuracy on the real items in ../shared.

``python -m bench.run models`` measures the throughput; ``python -m bench.run models-real`` pairs both models (and
Gemma-2 2B's imported outcomes) on all 4000 items of each real task with ``wif compare-runs``, collecting the runs
it lacks through ``bench.real_runs`` (hours on 2 cores; the store resumes). ``python -m bench.models --real N
--tasks piqa,winogrande`` takes a seeded sample of N items, or fewer tasks.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict

import torch

from bench import real_runs
from bench.collection import _collect_rate, _items
from bench.common import RESULTS, SHARED_BENCH, machine, matmul_flops, write_section
from wif_core.compare import PAIR_COLUMNS, compare_runs
from wif_core.jsondir import jsonable
from wif_core.models.loading import EMBEDDED, default_layers, load_model
from wif_core.models.scoring import DEFAULT_MAX_TOKENS, score_items, score_naive
from wif_core.store import Store

MODELS = (EMBEDDED, "gemma3-270m")


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


def real_main(
    n_real: int | None = None, tasks: tuple[str, ...] = real_runs.TASKS, sizes: dict[str, int] | None = None
) -> dict:
    """Both models' accuracy on real items, paired by ``wif compare-runs`` (section ``models-real``).

    ``n_real`` items of every task (default all 4000: the runs of ``bench.real_runs``, shared with the
    explainer benchmark); fewer take a seeded sample. Gemma-2 2B's imported outcomes on the same items are the
    third run. ``sizes`` gives some models another size (model → n; a seeded sample of a model's run pairs with
    the same items of a full run). The section is rewritten after each task, so an interrupted run still shows
    the tasks it finished.
    """
    if not SHARED_BENCH.exists():
        return {"skipped": "../shared/benchmarks absent"}
    torch.set_num_threads(2)
    n = n_real or real_runs.FULL
    per_model = {m: (sizes or {}).get(m, n) for m in MODELS}
    loads = [os.getloadavg()[0]]
    t = time.perf_counter()
    real: dict[str, dict] = {}
    for task in tasks:
        ids = {m: real_runs.ensure(m, task, per_model[m]) for m in MODELS}
        ids[real_runs.IMPORTED] = real_runs.ensure_imported(task)
        loads.append(os.getloadavg()[0])
        with Store.open(real_runs.DB) as store:
            c = compare_runs(store, [ids[MODELS[0]], ids[MODELS[1]], ids[real_runs.IMPORTED]], cache=False)
        real[task] = {"run_ids": ids, "comparison": c}
        _write_real(real, per_model, tasks, loads, time.perf_counter() - t)
    return {
        task: {
            "run_ids": r["run_ids"],
            "pairs": [
                jsonable(asdict(p) | {"failed_only_a": None, "failed_only_b": None}) for p in r["comparison"].pairs
            ],
        }
        for task, r in real.items()
    } | {"seconds": time.perf_counter() - t}


def _pair_row(task: str, c, p) -> str:
    names = {r.run_id: r.model for r in c.runs}
    t = p.table
    both_right, a_only_right, b_only_right, both_wrong = (t[k] for k in PAIR_COLUMNS)
    kap = "—" if p.kappa is None else f"{p.kappa:.3f}"
    rho = "—" if p.margin_spearman is None else f"{p.margin_spearman:.3f} (n {p.n_margins})"
    return (
        f"| {task} | {names[p.a]} vs {names[p.b]} | {p.n} | {p.diff:+.3f} [{p.diff_ci_low:+.3f}, {p.diff_ci_high:+.3f}] "
        f"| {p.mcnemar_p:.2g} | {kap} | {rho} | {both_wrong} | {b_only_right} | {a_only_right} | {both_right} |"
    )


def kept_rows(tasks: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """The table rows of the current models-real section for tasks other than ``tasks`` (measured in an earlier
    run and not re-measured now): accuracy rows, pair rows, and the tasks they are of."""
    text = RESULTS.read_text() if RESULTS.exists() else ""
    start, end = "<!-- bench:models-real -->", "<!-- /bench:models-real -->"
    if start not in text or end not in text:
        return [], [], []
    section = text[text.index(start) : text.index(end)]
    acc, pairs, kept = [], [], []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| ") or cells[0] in ("task", "---") or cells[0] in tasks or len(cells) < 4:
            continue
        (pairs if " vs " in cells[1] else acc).append(line)
        if cells[0] not in kept:
            kept.append(cells[0])
    return acc, pairs, kept


def _write_real(
    real: dict[str, dict], n: dict[str, int], tasks: tuple[str, ...], loads: list[float], seconds: float
) -> None:
    acc_rows, pair_rows, earlier = kept_rows(list(real))
    for task, r in real.items():
        c = r["comparison"]
        acc_rows.append(
            f"| {task} | {c.n_shared} | "
            + " | ".join(f"{a.accuracy:.3f} [{a.ci_low:.3f}, {a.ci_high:.3f}]" for a in c.runs)
            + " |"
        )
        pair_rows += [_pair_row(task, c, p) for p in c.pairs]
    missing = [task for task in tasks if task not in real]
    scope = "; ".join(
        f"{m}: "
        + ("all 4000 items of each task" if k >= real_runs.FULL else f"a seeded sample of {k} items of each task")
        for m, k in n.items()
    )
    missing = [task for task in missing if task not in earlier]
    note = f" Not measured yet (interrupted, or left for a later run): {', '.join(missing)}." if missing else ""
    if earlier:
        note += (
            f" The rows of {', '.join(earlier)} are kept from an earlier run of this benchmark (on the same runs' "
            "definition; this run did not measure them again)."
        )
    level = next(iter(real.values()))["comparison"].ci_level
    write_section(
        "models-real",
        f"""
## Both embedded models on the real items (issue 14)

Machine: {machine()}; load average {min(loads):.1f}–{max(loads):.1f} while it ran (sampled between tasks).
Command: `python -m bench.run models-real` (all 4000 items of every task); this section: `python -m bench.models
--tasks {",".join(real)} --sizes {",".join(f"{m}={k}" for m, k in n.items())}`. Its runs are `python -m bench.real_runs`,
shared with the explainer benchmark, in the resumable store `data/real.duckdb`. Real items from ../shared (their train + val + test files,
4000 items each): **{scope}**; {seconds:.0f} s in this run (less where the store already held runs).{note}
Gemma-2 2B's outcomes, imported from the same files, are the third run. Items are matched by their normalised
key; an item whose key repeats counts once, so n can be below 4000 (PIQA repeats 440 keys).
Accuracy with its {level:.1%} Wilson interval. Paired: the difference of accuracies (row's first model minus
second) with its exact interval, the exact McNemar p, Cohen's κ of the two models' errors, and the Spearman
correlation of their margins Δ = log p(gold) − log p(best other) (— where a run has none). From
`wif compare-runs --db data/real.duckdb --runs A,B,C --json`.

| task | n shared | {MODELS[0]} | {MODELS[1]} | {real_runs.IMPORTED} (imported) |
| --- | --- | --- | --- | --- |
{chr(10).join(acc_rows)}

| task | pair | n | accuracy difference | McNemar p | κ of errors | margins, Spearman | failed by both | failed by the first only | failed by the second only | both right |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(pair_rows)}
""",
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--real", type=int, default=None, help="items per task (default: all 4000)")
    parser.add_argument("--tasks", default=",".join(real_runs.TASKS))
    parser.add_argument("--sizes", default="", help="MODEL=N,... another size for some models")
    a = parser.parse_args()
    sizes = {m: int(k) for m, k in (x.split("=") for x in a.sizes.split(",") if x)}
    out = real_main(n_real=a.real, tasks=tuple(a.tasks.split(",")), sizes=sizes)
    print(json.dumps(out, indent=1, default=str))
