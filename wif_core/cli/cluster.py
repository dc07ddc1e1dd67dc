"""``wif cluster``: clusters of a run's failures (or of all its items, ranked by failure rate)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wif_core.cli.common import AddCommon, emit
from wif_core.clusters import ALGORITHMS, MAPS, MODES, SPACES

if TYPE_CHECKING:
    from wif_core.clusters.run import ClusterResult


def add_commands(sub: Any, common: AddCommon) -> None:
    """Add ``wif cluster``."""
    p = common(sub.add_parser("cluster", help="cluster a run's failures (or all items, ranked by failure rate)"))
    p.add_argument("--run", required=True)
    p.add_argument(
        "--space",
        choices=SPACES,
        default="activations",
        help="activations (layer, site), sae (codes of the run's SAE), attribution (gold tier), or text",
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default="failures",
        help="failures: cluster the failed items; all: cluster every item, rank by failure rate",
    )
    p.add_argument("--algorithm", choices=ALGORITHMS, default="kmeans")
    p.add_argument("--k", type=int, default=None, help="clusters for kmeans (default: by silhouette over 2..10)")
    p.add_argument("--min-cluster-size", type=int, default=None, help="HDBSCAN's smallest cluster (default n/25, ≥ 5)")
    p.add_argument("--layer", type=int, default=None, help="activations or SAE layer (default: the middle / the SAE's)")
    p.add_argument("--site", choices=["last", "mean", "choice"], default=None, help="activation site (default last)")
    p.add_argument("--method", default=None, help="attribution method (default: the one with most stored items)")
    p.add_argument("--map", choices=MAPS, default="pca", help="the 2-D map stored with the result")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--items", action="store_true", help="with --json: every item's cluster and map position too")
    p.add_argument("--no-cache", action="store_true", help="ignore and do not write cached results")
    p.set_defaults(func=cmd_cluster)


def cmd_cluster(args: argparse.Namespace) -> int:
    from wif_core.clusters.run import ClusterCache, cluster_run
    from wif_core.store import Store

    cache = ClusterCache(None) if args.no_cache else ClusterCache.beside(Path(args.db))
    with Store.open(args.db) as store:
        result = cluster_run(
            store,
            args.run,
            space=args.space,
            mode=args.mode,
            algorithm=args.algorithm,
            k=args.k,
            seed=args.seed,
            layer=args.layer,
            site=args.site,
            method=args.method,
            map_method=args.map,
            min_cluster_size=args.min_cluster_size,
            cache=cache,
        )
    payload = result.to_json(items=args.items)
    emit(args, payload, text_report(result))
    return 0


def text_report(r: ClusterResult) -> str:
    """The clusters as a table a terminal reader can scan: size, failure rate with CI, words, factors."""
    what = "failed items" if r.mode == "failures" else "items"
    how = f"k={r.k} by {r.k_chosen_by}" if r.algorithm == "kmeans" else f"HDBSCAN found {r.k}"
    lines = [
        f"{r.run_id}: {r.n_clustered} {what} clustered in {r.description} ({r.tier} tier), {r.algorithm} {how}, "
        f"silhouette {r.silhouette:.3f}; base failure rate {r.base_rate:.2f} over {r.n_items} items",
        f"{'id':>3} {'size':>5} {'failed/region':>13} {'rate':>5} {f'{r.ci_level:.1%} CI':>14}  top words · over-represented factors",
    ]
    for c in r.clusters:
        factors = ", ".join(f"{f.factor}={f.value} ({f.share_in:.0%} vs {f.share_all:.0%})" for f in c.factors[:2])
        words = " ".join(c.top_words[:6])
        lines.append(
            f"{c.id:>3} {c.size:>5} {f'{c.n_failed}/{c.n_region}':>13} {c.failure_rate:>5.2f} "
            f"[{c.ci_low:.2f}, {c.ci_high:.2f}]  {words}" + (f" · {factors}" if factors else "")
        )
    if r.factor_ami:
        best = sorted(r.factor_ami.items(), key=lambda kv: -kv[1])[:4]
        lines.append("AMI with generator factors: " + ", ".join(f"{f} {v:.2f}" for f, v in best))
    return "\n".join(lines)
