"""Every explainer on the embedded model's runs of the real tasks in ../shared, with paired margins.

Collects the runs first if ``data/real.duckdb`` lacks them (~30 min on 2 cores):
a seeded sample of each task's outcome files, scored by the embedded model, with
per-token activations at layer 18 for the attention probe. Gemma-2 2B's outcomes are
imported beside them, so `cross-model` compares the two models on the same items.
"""

from __future__ import annotations

from pathlib import Path

from bench.common import SHARED_BENCH, machine, write_section
from wif_core.cli import main as wif
from wif_core.explainers.data import RunData
from wif_core.explainers.evaluate import ResultCache, best_of, compare, evaluate_all
from wif_core.store import Store

DB = Path(__file__).resolve().parents[1] / "data" / "real.duckdb"
SAMPLES = {"piqa": 1600, "boolq": 1000, "winogrande": 1600}
INTERNALS = ("probe", "probe-paper", "probe-all-layers", "attention-probe")
BASELINES = ("surface", "text")


def _complete(task: str, model: str) -> bool:
    if not DB.exists():
        return False
    with Store.open(DB) as store:
        runs = store.runs()
    return bool(((runs.task == task) & (runs.model == model) & (runs.status == "complete")).any())


def ensure_runs() -> dict[str, str]:
    """Run ids of the embedded model's real-task runs, collecting and importing what is missing."""
    for task, n in SAMPLES.items():
        if _complete(task, "smollm2-135m"):
            continue
        src = str(SHARED_BENCH / task)
        args = [
            "collect",
            "--model",
            "smollm2-135m",
            "--task",
            task,
            "--source",
            src,
            "--sample",
            str(n),
            "--token-layers",
            "18",
            "--db",
            str(DB),
            "--json",
        ]
        if wif(args) != 0:
            raise RuntimeError(f"collect failed for {task}")
    for task in SAMPLES:
        if not _complete(task, "gemma-2-2b"):
            wif(
                [
                    "import",
                    str(SHARED_BENCH / task),
                    "--task",
                    task,
                    "--model-name",
                    "gemma-2-2b",
                    "--db",
                    str(DB),
                    "--json",
                ]
            )
    with Store.open(DB) as store:
        runs = store.runs()
    done = runs[(runs.model == "smollm2-135m") & (runs.status == "complete")]
    return {t: done[done.task == t].run_id.iloc[0] for t in SAMPLES}


def _fmt(r) -> str:
    return f"{r.auc:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]"


def _margin(a, b) -> str:
    c = compare(a, b)
    return (
        f"`{c['a']}` − `{c['b']}` = {c['diff']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}], p = {c['p_value']:.3g}"
    )


def main() -> dict:
    if not SHARED_BENCH.exists():
        return {"skipped": "../shared/benchmarks absent"}
    run_ids = ensure_runs()
    sections, out = [], {}
    for task, run_id in run_ids.items():
        with Store.open(DB) as store:
            data = RunData.load(store, run_id)
            results = evaluate_all(data, cache=ResultCache.beside(DB))
            acc = float(store.runs().set_index("run_id").loc[run_id, "accuracy"])
        elapsed = sum(r.fit_seconds for r in results)  # fit + predict time of each, cached or not
        rows = "\n".join(
            f"| {r.tier} | `{r.label}` | {_fmt(r)} | {r.n_test} |"
            for r in sorted(results, key=lambda r: ("input output gold".split().index(r.tier), -r.auc))
        )
        best = best_of(results)
        best_input = best_of(results, "input")
        paper = best_of(results, names=("probe-paper",))
        internals = best_of(results, "input", INTERNALS)
        baseline = best_of(results, "input", BASELINES)
        lines = [
            f"- best overall vs best `probe-paper` layer: {_margin(best, paper)}",
            f"- best input-tier vs best `probe-paper` layer: {_margin(best_input, paper)}",
            f"- best input-tier internals explainer vs best input-tier baseline: {_margin(internals, baseline)}",
        ]
        out[task] = {
            "run": run_id,
            "accuracy": acc,
            "best": best.label,
            "best_input": best_input.label,
            "input_vs_paper": compare(best_input, paper),
            "internals_vs_baseline": compare(internals, baseline),
        }
        sections.append(
            f"### {task} — run `{run_id}` (accuracy {acc:.3f}; {len(results)} explainer settings, {elapsed:.0f} s of fitting)\n\n"
            f"| tier | explainer | test AUC [99.9% CI] | n |\n| --- | --- | --- | --- |\n{rows}\n\n"
            + "\n".join(lines)
            + "\n"
        )
    write_section(
        "real-tasks",
        f"""
## Explainers on real tasks (issue 3)

Machine: {machine()}. Command: `make bench` (`python -m bench.run real`).
Runs: the embedded SmolLM2-135M on a seeded sample of each task's items in ../shared
({", ".join(f"{t} {n}" for t, n in SAMPLES.items())}), layers 6/12/18/24/30, per-token activations at 18;
balanced splits redrawn on this model's own outcomes (50/25/25). Gemma-2 2B's outcomes are imported for `cross-model`.
CIs are 99.9% stratified bootstrap (2000 resamples); margins are paired bootstrap differences on the same test items.

{chr(10).join(sections)}
The best of some 24 input-tier settings is picked on the test split itself, so "best vs …" margins are
optimistic; a margin whose 99.9% CI excludes zero would still need a fresh split to confirm.
""",
    )
    return out


if __name__ == "__main__":
    print(main())
