"""Clusters: k-means + PCA and UMAP on 4000 × 576, the Clusters page's first render with cached
results, and, on the generated suite, how well failure clusters recover the generator's factors.

The 4000 items are real residual-stream activations (layer 18, site last) of the SmolLM2 runs
in ``data/real.duckdb`` when it exists, else synthetic ones of that shape. The generated suite
is the demo store (``data/demo.duckdb``, built with ``build_demo`` when absent). The cores are
shared, so BLAS and OpenMP run one thread each (``threadpoolctl``): with two threads on two
busy cores OpenBLAS spins and PCA alone takes seconds.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from bench.common import machine, page_render_seconds, write_section

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo.duckdb"
REAL = ROOT / "data" / "real.duckdb"
N, D, LAYER = 4000, 576, 18
SPACES_TRIED = ("activations", "sae", "text", "attribution")


def _matrix() -> tuple[np.ndarray, str]:
    """4000 × 576 activations: real ones from data/real.duckdb's runs when present, else synthetic."""
    if REAL.exists():
        from wif_core.store import Store

        parts, names = [], []
        with Store.open(REAL) as store:
            for run_id in store.run_ids():
                run = store.run(run_id)
                if LAYER in run.layers and "last" in run.sites and run.d_model == D:
                    parts.append(store.activations(run_id, LAYER, "last")[1])
                    names.append(run.task)
                if sum(map(len, parts)) >= N:
                    break
        X = np.concatenate(parts)[:N] if parts else np.zeros((0, D))
        if len(X) == N:
            return X, f"real activations (layer {LAYER}, site last) of SmolLM2-135M on {', '.join(names)}"
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, D)) * 3
    X = centres[rng.integers(0, 6, N)] + rng.normal(size=(N, D))
    return X.astype(np.float32), "synthetic activations (6 Gaussian groups)"


def _kmeans_pca(X: np.ndarray, reps: int = 3) -> dict[str, Any]:
    """Best of ``reps``: scaling + PCA to 50 dims, k-means with k by silhouette over 2..10, and the 2-D PCA map."""
    from wif_core.clusters import algorithms as algo

    best, k = float("inf"), 0
    for _ in range(reps):
        t = time.perf_counter()
        Z = algo.Reducer("standard").fit(X, 0).transform(X)
        choice = algo.kmeans_auto(Z, None, 0)
        algo.map_2d(Z, "pca", 0)
        best, k = min(best, time.perf_counter() - t), choice.k
    return {"seconds": best, "k": k}


def _umap(X: np.ndarray) -> dict[str, float]:
    """UMAP of the same items (after the PCA to 50 dims): first call in the process (import, numba JIT), then warm."""
    from wif_core.clusters import algorithms as algo

    Z = algo.reduce(X, "standard", 0)
    t = time.perf_counter()
    algo.map_2d(Z, "umap", 0)
    cold = time.perf_counter() - t
    t = time.perf_counter()
    algo.map_2d(Z, "umap", 0)
    return {"cold": cold, "warm": time.perf_counter() - t}


def _demo() -> Path:
    if not DEMO.exists():
        from wif_core.demo import build_demo

        build_demo(DEMO, limit=120)
    return DEMO


def _page_seconds(run_id: str, reps: int = 3) -> float:
    """Median server-side first render of the Clusters page (AppTest): result on disk, Streamlit caches cleared."""
    return page_render_seconds("clusters", run_id, DEMO, reps)  # the warm-up writes the result to the cache


def _suite() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per demo run and space: failure clusters' AMI with each generator factor, and the held-out AUC of the
    `cluster` explainer (input tier) or `cluster-attribution` (gold) in that space."""
    from wif_core.clusters import cluster_run
    from wif_core.clusters.spaces import default_layer, why_not
    from wif_core.errors import WifError
    from wif_core.explainers.data import RunData
    from wif_core.explainers.evaluate import ResultCache, evaluate
    from wif_core.sae import available
    from wif_core.store import Store

    ami_rows, auc_rows = [], []
    with Store.open(DEMO) as store:
        for run_id in store.run_ids():
            run = store.run(run_id)
            data = RunData.load(store, run_id)
            for space in SPACES_TRIED:
                if why_not(store, run_id, space):
                    continue
                t = time.perf_counter()
                r = cluster_run(store, run_id, space=space, mode="failures")  # no cache: the time is a compute
                ami_rows.append(
                    {
                        "task": run.task,
                        "space": space,
                        "k": r.k,
                        "n": r.n_clustered,
                        "ami": dict(r.factor_ami),
                        "seconds": time.perf_counter() - t,
                    }
                )
                layer = {"activations": default_layer(run.layers), "sae": next(iter(available(DEMO, run_id)), None)}
                name = "cluster-attribution" if space == "attribution" else "cluster"
                kwargs = {"space": space, "layer": layer.get(space)}
                if space == "activations":
                    kwargs["site"] = "last"
                try:
                    e = evaluate(data, name, cache=ResultCache.beside(DEMO), **kwargs)
                except WifError as exc:
                    auc_rows.append({"task": run.task, "space": space, "error": str(exc)})
                    continue
                auc_rows.append(
                    {
                        "task": run.task,
                        "space": space,
                        "tier": e.tier,
                        "auc": e.auc,
                        "ci": (e.ci_low, e.ci_high),
                        "n_test": e.n_test,
                        "k": e.explanation.get("k"),
                    }
                )
    return ami_rows, auc_rows


def main() -> dict:
    torch.set_num_threads(1)
    with threadpool_limits(1):
        X, source = _matrix()
        km = _kmeans_pca(X)
        um = _umap(X)
        _demo()
        ami_rows, auc_rows = _suite()
        from wif_core.store import Store

        with Store.open(DEMO) as store:
            first = store.run_ids()[0]
        page = _page_seconds(first)

    def ami_cell(ami: dict[str, float]) -> str:
        top = sorted(((f, v) for f, v in ami.items() if f != "gold_position"), key=lambda kv: -kv[1])[:3]
        return ", ".join(f"{f} {v:.2f}" for f, v in top)

    ami_table = "\n".join(
        f"| {r['task']} | {r['space']} | {r['n']} | {r['k']} | {ami_cell(r['ami'])} | "
        f"{r['ami'].get('gold_position', float('nan')):.2f} | {r['seconds']:.1f} s |"
        for r in ami_rows
    )
    auc_table = "\n".join(
        f"| {r['task']} | {r['space']} | {r['tier']} | {r['auc']:.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}] | "
        f"{r['n_test']} | {r['k']} |"
        if "auc" in r
        else f"| {r['task']} | {r['space']} | — | {r['error']} | | |"
        for r in auc_rows
    )
    spaces_seen = sorted({r["space"] for r in ami_rows})
    missing = [s for s in SPACES_TRIED if s not in spaces_seen]
    write_section(
        "clusters",
        f"""
## Clusters (issue 6)

Machine: {machine()}; one BLAS/OpenMP thread (`threadpoolctl`; the two cores are shared). Command:
`python -m bench.run clusters`.

| measure | goal | measured |
| --- | --- | --- |
| scale + PCA (50 dims) + k-means with k by silhouette (2..10) + 2-D PCA map, {N} × {D} ({source}; best of 3) | < 3 s | {km["seconds"]:.2f} s (k = {km["k"]}) |
| UMAP 2-D map of the same items, first call in a process (import and numba compilation included) | < 30 s | {um["cold"]:.1f} s |
| the same, warm | | {um["warm"]:.1f} s |
| Clusters page first render with the result cached beside the store (demo run `{first}`, median of 3, Streamlit caches cleared) | < 2 s | {page:.2f} s |

**Do failure clusters recover the generator's known factors?** Demo store (4 generated tasks × 120 items,
SmolLM2-135M): the failed items of each run clustered (mode `failures`, k-means, k by silhouette) in every
space the run has{f" (not stored: {', '.join(missing)})" if missing else ""}; adjusted mutual information between the
clusters and each factor (0: chance, 1: the same grouping). `gold_position` is a control: where the right
answer sits says nothing about the item's content.

| task | space | failures | k | AMI, top 3 factors | AMI gold_position | compute time |
| --- | --- | --- | --- | --- | --- | --- |
{ami_table}

**Clusters scored as an explanation** (the `cluster` explainer: k-means on train, k tuned on val, each test item
gets its cluster's train failure rate; test AUC with its 99.9% bootstrap CI). The demo's test splits are small,
so the intervals are wide.

| task | space | tier | test AUC [99.9% CI] | n_test | k |
| --- | --- | --- | --- | --- | --- |
{auc_table}
""",
    )
    return {
        "kmeans_pca_s": km["seconds"],
        "umap_cold_s": um["cold"],
        "umap_warm_s": um["warm"],
        "page_s": page,
        "source": source,
        "ami": ami_rows,
        "auc": auc_rows,
    }


if __name__ == "__main__":
    print(main())
