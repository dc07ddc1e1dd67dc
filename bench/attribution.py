"""Contrastive attribution (issue 5): speed per item by method, a 200-failure batch, conservation, faithfulness.

Items are the embedded model's real-task runs in ``data/real.duckdb`` (built by
``bench/real_tasks.py``), copied into a temporary store so nothing is written beside them;
without that store, a PIQA run of ../shared items is collected into the temporary store
first (~2 min). Conservation is measured on a tiny randomly initialised llama (the
embedded model's tokenizer, width 32, 4 blocks) and on the embedded model, for both LRP
rules: AttnLRP's softmax rule and CP-LRP.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import SHARED_BENCH, machine, write_section
from wif_core.attribution import (
    DEFAULT_METHOD,
    METHODS,
    attribute_item,
    attribute_run,
    build_pair,
    contrast,
    faithfulness_summary,
    recommend,
)
from wif_core.attribution.methods import attnlrp
from wif_core.models.loading import EMBEDDED, load_model
from wif_core.store import OutcomeRow, RunInfo, Store

REAL = Path(__file__).resolve().parents[1] / "data" / "real.duckdb"
TASK = "piqa"  # timings, the batch and conservation; faithfulness also on FAITH_TASKS
FAITH_TASKS = ("piqa", "winogrande")
N_TIMED = 8  # items timed per method (after one warm-up item)
N_FAITH = 40  # failures per task attributed by every method for the faithfulness comparison
N_BATCH = 200  # failures in the batch timing
N_CONSERVE = 20  # items for the conservation errors


def _copy_run(store: Store, task: str, n: int) -> str | None:
    """Copy the embedded model's real ``task`` run (items and outcomes, no activations) into ``store``."""
    if not REAL.exists():
        return None
    with Store.open(REAL) as real:
        runs = real.runs()
        done = runs[(runs.model == EMBEDDED) & (runs.task == task) & (runs.status == "complete")]
        if done.empty:
            return None
        run = real.run(done.run_id.iloc[0])
        items = {it.item_id: it for it in real.task_items(run.run_id)}
        frame = real.items(run.run_id).head(n)
    kept = [items[i] for i in frame.item_id]
    copy = RunInfo(
        run_id=run.run_id,
        model=EMBEDDED,
        task=task,
        source=run.source,
        n_choices=run.n_choices,
        family=run.family,
        template=run.template,
        scoring=run.scoring,
        n_layers=run.n_layers,
        d_model=run.d_model,
        status="complete",
    )
    store.create_run(copy, kept)
    rows = [
        OutcomeRow(
            item_id=r.item_id, pred=int(r.pred), correct=bool(r.correct), margin=float(r.margin), ll_sum=list(r.ll_sum)
        )
        for r in frame.itertuples()
    ]
    store.write_outcomes(run.run_id, rows)
    return run.run_id


def _collect_run(store: Store, lm: Any, n: int) -> str:
    from wif_core.runner import collect
    from wif_core.tasks.sources import read_outcome_file

    items = [it for it, _ in read_outcome_file(TASK, SHARED_BENCH / TASK / "test.json")][:n]
    return collect(store, lm, TASK, items, source="bench", layers=[lm.n_layers]).run.run_id


def _failures(db: Path, run_id: str, n: int) -> list[tuple[Any, int, int]]:
    with Store.open(db) as store:
        items = {it.item_id: it for it in store.task_items(run_id)}
        frame = store.items(run_id, outcome="incorrect", limit=n)
    return [(items[r.item_id], *contrast(items[r.item_id], r._asdict())) for r in frame.itertuples()]


def _timings(lm: Any, cases: list) -> dict[str, dict[str, float]]:
    out = {}
    for name in METHODS:
        item, w, r = cases[0]
        attribute_item(lm, item, w, r, name, deletion=False)  # warm-up
        bare = [attribute_item(lm, it, w, r, name, deletion=False).seconds or 0.0 for it, w, r in cases[1:]]
        out[name] = {"median": statistics.median(bare), "mean": statistics.fmean(bare), "max": max(bare)}
    return out


def _tiny_llama(vocab: int) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(cfg).eval()


def _conservation(model: Any, tokenizer: Any, cases: list) -> dict[str, dict[str, float]]:
    out = {}
    for rule in ("attnlrp", "cp"):
        errs = [
            attnlrp(model, tokenizer, build_pair(it, tokenizer, w, r), rule).config["conservation_error"]
            for it, w, r in cases
        ]
        out[rule] = {"median": float(np.median(errs)), "max": float(np.max(errs)), "n": len(errs)}
    return out


def _faithfulness(db: Path, lm: Any, run_id: str | None) -> tuple[Any, list[float], float, int]:
    """Every method on the first N_FAITH failures of a run: summary, IG completeness errors, seconds, n.

    Records already stored by the batch are reused: random deletion orders are seeded per item,
    so each method's curves are the same whichever call computes them.
    """
    if run_id is None:
        return None, [], 0.0, 0
    t = time.perf_counter()
    attribute_run(db, run_id, lm, list(METHODS), failures_only=True, limit=N_FAITH)
    seconds = time.perf_counter() - t
    with Store.open(db) as store:
        failed = set(store.items(run_id, outcome="incorrect").item_id[:N_FAITH])
        rows = [r for r in store.attributions(run_id) if r.item_id in failed]
    ig = [
        r.config["completeness_error"]
        for r in rows
        if r.method == "integrated_gradients" and r.config.get("completeness_error") is not None
    ]
    return faithfulness_summary(rows), ig, seconds, len(failed)


def _ratio(x: float) -> str:
    return f"{x:.1%}" if x >= 1e-3 else f"{x:.0e}"


def _faith_table(summary: Any) -> str:
    return "\n".join(
        f"| `{r.method}` | {r.mean:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}] | {r.vs_best:+.3f} "
        f"[{r.vs_best_low:+.3f}, {r.vs_best_high:+.3f}] | {r.n} |"
        for r in summary.sort_values("mean", ascending=False).itertuples()
    )


def main() -> dict:
    torch.set_num_threads(2)
    lm = load_model(EMBEDDED)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "attr.duckdb"
        with Store.open(db, write=True) as store:
            run_id = _copy_run(store, TASK, 1600)
            source = f"the {EMBEDDED} runs of `{REAL.name}`"
            if run_id is None:
                run_id, source = _collect_run(store, lm, 600), "600 ../shared PIQA test items, collected here"
        cases = _failures(db, run_id, max(N_TIMED + 1, N_CONSERVE))
        timings = _timings(lm, cases[: N_TIMED + 1])
        tiny = _tiny_llama(len(lm.tokenizer))
        conservation = {
            "tiny": _conservation(tiny, lm.tokenizer, cases[:N_CONSERVE]),
            "embedded": _conservation(lm.model, lm.tokenizer, cases[:N_CONSERVE]),
        }
        t = time.perf_counter()
        batch = attribute_run(db, run_id, lm, [DEFAULT_METHOD], failures_only=True, limit=N_BATCH)
        batch_s = time.perf_counter() - t
        with Store.open(db) as store:
            ntok = [len(r.tokens) for r in store.attributions(run_id, DEFAULT_METHOD)]
        faith = {TASK: _faithfulness(db, lm, run_id)}
        for task in FAITH_TASKS:
            if task != TASK:
                with Store.open(db, write=True) as store:
                    other = _copy_run(store, task, 1600)
                faith[task] = _faithfulness(db, lm, other)
    timing_rows = "\n".join(
        f"| `{m}` | {v['median']:.2f} s | {v['mean']:.2f} s | {v['max']:.2f} s |" for m, v in timings.items()
    )
    cons_rows = "\n".join(
        f"| {where} | {rule} | {_ratio(v['median'])} | {_ratio(v['max'])} | {v['n']} |"
        for where, by_rule in conservation.items()
        for rule, v in by_rule.items()
    )
    sections, out_faith = [], {}
    for task, (summary, ig, seconds, n) in faith.items():
        if summary is None:
            continue
        rec = recommend(summary)
        out_faith[task] = {
            "summary": summary.to_dict("records"),
            "recommend": rec,
            "ig_completeness_median": float(np.median(ig)),
            "seconds": seconds,
        }
        sections.append(
            f"**{task}**, first {n} failures, all methods in {seconds:.0f} s (the batch's `{DEFAULT_METHOD}` reused); integrated gradients' completeness "
            f"error median {np.median(ig):.0%} (max {np.max(ig):.0%}):\n\n"
            "| method | faithfulness [95% CI] | vs best [95% CI] | n |\n| --- | --- | --- | --- |\n"
            f"{_faith_table(summary)}\n\nRecommendation: {rec['reason']}.\n"
        )
    write_section(
        "attribution",
        f"""
## Contrastive attribution (issue 5)

Machine: {machine()}. Command: `make bench` (`python -m bench.run attribution`).
Items: failures of the embedded {EMBEDDED} on real tasks ({source}, copied into a temporary store);
timings on {TASK}, mean {np.mean(ntok):.0f} tokens per packed contrast.

Seconds per item, attribution alone ({N_TIMED} {TASK} failures after one warm-up item):

| method | median | mean | max |
| --- | --- | --- | --- |
{timing_rows}

Goals: `grad_x_input` < 1 s, `attnlrp` < 2 s per item.
Batch: `attribute_run` of the first {batch.n_items} {TASK} failures with `{DEFAULT_METHOD}` and its deletion curves
(8 extra sequences per item, one batched forward): **{batch_s:.0f} s** ({batch_s / max(1, batch.n_items):.2f} s/item; goal: 200 failures < 5 min).

Conservation error |Σ relevance − logit contrast| / |logit contrast| of the two LRP rules on {N_CONSERVE} {TASK}
failures (tiny: a random llama of width 32, 4 blocks, with this tokenizer). `attnlrp` uses the AttnLRP rules,
`cp_lrp` the CP-LRP ones:

| model | rule | median | max | n |
| --- | --- | --- | --- | --- |
{cons_rows}

Faithfulness: the mean drop of Δ, in nats, when deleting context tokens top-attributed first instead of in
a random order, over 0–50% of them (higher is better; 95% bootstrap CI; `vs best` is the paired difference to
the best method on the same items). Occlusion scores exactly this kind of deletion, one token at a time, so the
test favours it by construction; among the gradient-based methods it is a fair race.

{chr(10).join(sections)}
""",
    )
    return {
        "timings": timings,
        "batch_seconds": batch_s,
        "batch_items": batch.n_items,
        "conservation": conservation,
        "faithfulness": out_faith,
        "run": run_id,
    }


if __name__ == "__main__":
    print(main())
