"""Every explainer on each embedded model's full-size runs of the real tasks in ../shared, with paired margins.

The runs are ``bench.real_runs``'s: all 4000 items of PIQA, WinoGrande and BoolQ, scored by each embedded model
(activations at 5 layers, per-token activations at one middle layer), with Gemma-2 2B's outcomes imported beside
them, in ``data/real.duckdb`` (collected if missing: hours on 2 cores; resumable). "Best" is chosen on val and
reported on test: the val-selected input-tier setting, paired against the val-selected ``probe-paper`` layer and
the val-selected text baseline on the same test items.

``python -m bench.real_tasks [--models A,B] [--tasks T1,T2]`` measures a subset (the section says which).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from bench import real_runs
from bench.common import SHARED_BENCH, machine, write_section
from wif_core.api import quality
from wif_core.explainers.data import RunData
from wif_core.explainers.evaluate import ResultCache, best_of, compare, evaluate_all, selection
from wif_core.store import Store

INTERNALS = ("probe", "probe-paper", "probe-all-layers", "attention-probe")
BASELINES = ("surface", "text")
TIER_ORDER = ("input", "output", "gold")


def _fmt(r) -> str:
    return f"{r.auc:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]"


def _margin(a, b) -> dict[str, Any] | None:
    if a is None or b is None:
        return None
    return compare(a, b)


def _fmt_margin(c: dict[str, Any] | None) -> str:
    if c is None:
        return "—"
    if c["a"] == c["b"]:
        return f"0 (`{c['a']}` is both)"
    above = " **above 0**" if c["ci_low"] > 0 else ""
    return f"{c['diff']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]{above}"


def evaluate_run(store: Store, run_id: str, cache: ResultCache, **load: Any) -> dict[str, Any]:
    """Every explainer on one run; the val-selected bests and their paired margins."""
    data = RunData.load(store, run_id, **load)
    t = time.perf_counter()
    results = evaluate_all(data, cache=cache)
    best_input = best_of(results, "input")
    paper = best_of(results, "input", ("probe-paper",))
    text = best_of(results, "input", BASELINES)
    return {
        "results": results,
        "seconds": time.perf_counter() - t,
        "selection": selection(results),
        "best_input": best_input,
        "paper": paper,
        "text": text,
        "vs_paper": _margin(best_input, paper),
        "vs_text": _margin(best_input, text),
        "n_items": len(data.frame),
    }


def _suspect_lines(flags, clean: dict[str, Any] | None) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in flags.counts().items() if v) or "none"
    head = (
        f"- suspect labels (`wif quality`; signals: {', '.join(flags.signals) or 'none'}): "
        f"{flags.n_flagged} of {flags.n_items} items ({counts})\n"
    )
    if clean is None:
        return head
    b = clean["best_input"]
    if clean["n_items"] == clean["n_all"]:
        return head + (
            "- without them (`--exclude suspect`): the same items and results — every flagged item was already "
            "out of the splits (contradictory copies are excluded as leakage)\n"
        )
    return head + (
        f"- without them (`--exclude suspect`): val-selected `{b.label}`, test AUC {_fmt(b)}, n test {b.n_test}; "
        f"vs `probe-paper` {_fmt_margin(clean['vs_paper'])}; vs text {_fmt_margin(clean['vs_text'])}\n"
    )


def _section(model: str, task: str, run_id: str, acc: float, ev: dict[str, Any]) -> str:
    results = sorted(ev["results"], key=lambda r: (TIER_ORDER.index(r.tier), -r.auc))
    chosen = {tier: best_of(results, tier) for tier in TIER_ORDER}
    rows = "\n".join(
        f"| {r.tier} | `{r.label}`{' ✓' if r is chosen[r.tier] else ''} | "
        f"{'—' if r.val_auc is None else f'{r.val_auc:.3f}'} | {_fmt(r)} | {r.n_test} |"
        for r in results
    )
    b = ev["best_input"]
    return (
        f"### {task} × {model} — run `{run_id}` (accuracy {acc:.3f}; {len(results)} settings, "
        f"{ev['seconds']:.0f} s in this run; cached results are re-read)\n\n"
        f"| tier | explainer (✓ chosen on val) | val AUC | test AUC [99.9% CI] | n test |\n| --- | --- | --- | --- | --- |\n"
        f"{rows}\n\n"
        f"- val-selected input tier: `{b.label}`, test AUC {_fmt(b)} (test-best would have been "
        f"`{ev['selection']['tiers']['input']['test_best_label']}`)\n"
        f"- vs the val-selected `probe-paper` layer (`{ev['paper'].label if ev['paper'] else '—'}`): "
        f"{_fmt_margin(ev['vs_paper'])}\n"
        f"- vs the val-selected text baseline (`{ev['text'].label if ev['text'] else '—'}`): "
        f"{_fmt_margin(ev['vs_text'])}\n"
    )


def main(
    models: tuple[str, ...] = real_runs.MODELS,
    tasks: tuple[str, ...] = real_runs.TASKS,
    n: int = real_runs.FULL,
    pairs: list[tuple[str, str, int]] | None = None,
) -> dict:
    """Every (model, task) of ``models`` × ``tasks`` on ``n`` items each, or exactly the ``pairs`` (model, task, n)."""
    if not SHARED_BENCH.exists():
        return {"skipped": "../shared/benchmarks absent"}
    todo = pairs or [(model, task, n) for task in tasks for model in models]
    loads = [os.getloadavg()[0]]
    out: dict[str, Any] = {}
    sections, summary = [], []
    for model, task, size in todo:
        real_runs.ensure_imported(task)
        run_id = real_runs.ensure(model, task, size)
        with Store.open(real_runs.DB, write=True) as store:  # the item-quality pass stores its flags
            flags = quality(store, run_id)
        with Store.open(real_runs.DB) as store:
            acc = float(store.runs().set_index("run_id").loc[run_id, "accuracy"])
            cache = ResultCache.beside(real_runs.DB)
            ev = evaluate_run(store, run_id, cache)
            clean = evaluate_run(store, run_id, cache, exclude="suspect") if flags.n_flagged else None
            if clean is not None:
                clean["n_all"] = ev["n_items"]
        loads.append(os.getloadavg()[0])
        b = ev["best_input"]
        out[f"{model}/{task}"] = {
            "run": run_id,
            "accuracy": acc,
            "n_test": b.n_test,
            "selected_on": "val",
            "best_input": b.label,
            "best_input_auc": [b.auc, b.ci_low, b.ci_high],
            "vs_paper": ev["vs_paper"],
            "vs_text": ev["vs_text"],
            "suspect": {"n_flagged": flags.n_flagged, "counts": flags.counts(), "signals": flags.signals},
        }
        sections.append(_section(model, task, run_id, acc, ev) + _suspect_lines(flags, clean))
        summary.append(
            f"| {task} | {model} | {size} | {ev['n_items']} | {b.n_test} | `{b.label}` | {_fmt(b)} | "
            f"{_fmt_margin(ev['vs_paper'])} | {_fmt_margin(ev['vs_text'])} | {flags.n_flagged} | "
            + (
                "—"
                if clean is None
                else f"`{clean['best_input'].label}` {_fmt(clean['best_input'])}, {_fmt_margin(clean['vs_paper'])}"
            )
            + " |"
        )
        if clean is not None:
            out[f"{model}/{task}"]["without_suspect"] = {
                "best_input": clean["best_input"].label,
                "best_input_auc": [clean["best_input"].auc, clean["best_input"].ci_low, clean["best_input"].ci_high],
                "n_test": clean["best_input"].n_test,
                "vs_paper": clean["vs_paper"],
                "vs_text": clean["vs_text"],
            }
        _write(todo, sections, summary, out, loads)
    return out


def _write(todo, sections, summary, out, loads) -> None:
    margins = [v["vs_paper"] for v in out.values() if v["vs_paper"] is not None]
    above = sum(c["ci_low"] > 0 for c in margins)
    best = max((v["best_input_auc"][0] for v in out.values()), default=float("nan"))
    write_section(
        "real-tasks",
        f"""
## Explainers on real tasks, full size, selected on val (issues 3 and 15)

Machine: {machine()}; load average {min(loads):.1f}–{max(loads):.1f} while it ran (sampled between runs).
Command: `python -m bench.run real` (every model on all 4000 items of every task); this section:
`python -m bench.real_tasks --pairs {",".join(f"{m}:{t}:{k}" for m, t, k in todo)}`. Runs: `bench.real_runs`, all
items of a task's files in ../shared (train + val + test, 4000 each) or a seeded sample (column 3), layers spread over depth, per-token activations at 60% of the depth; balanced splits
redrawn on each model's own outcomes (50/25/25). Gemma-2 2B's outcomes are imported for `cross-model`.
CIs are 99.9% stratified bootstrap (2000 resamples); margins are paired bootstrap differences on the same test
items. **Selection is on val**: ✓ marks the setting of each tier with the highest val AUC, and its test AUC is
what is reported; margins pair the val-selected input-tier setting with the val-selected `probe-paper` layer and
the val-selected text baseline (`surface`, `text`).

| task | model | items collected | in the balanced splits | n test | val-selected input tier | test AUC [99.9% CI] | − best `probe-paper` | − best text baseline | suspect labels | without them: val-selected, test AUC, − `probe-paper` |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(summary)}

Goal (issue 15): a margin over `probe-paper` with its 99.9% CI above zero on at least 3 (model, task) runs — here
{above} of {len(margins)}; a test AUC ≥ 0.70 on at least one real run — here the highest is {best:.3f}.

{chr(10).join(sections)}
""",
    )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--models", default=",".join(real_runs.MODELS))
    p.add_argument("--tasks", default=",".join(real_runs.TASKS))
    p.add_argument("--n", type=int, default=real_runs.FULL, help="items per task (default: all 4000)")
    p.add_argument("--pairs", default=None, help="MODEL:TASK:N,... exactly these runs (overrides the others)")
    a = p.parse_args()
    pairs = None
    if a.pairs:
        pairs = [(m, t, int(k)) for m, t, k in (x.split(":") for x in a.pairs.split(","))]
    out = main(tuple(a.models.split(",")), tuple(a.tasks.split(",")), a.n, pairs)
    print(json.dumps(out, indent=1, default=str))
