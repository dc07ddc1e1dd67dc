"""Cluster a run's items in one feature space and summarise every cluster as a card.

Two modes:

- ``failures``: cluster the failed items only (groups of failures that may share a cause). Each
  success is then placed in the cluster nearest to it, so a card's failure rate says how
  failure-specific its region of the space is.
- ``all``: cluster every item and rank the clusters by failure rate with a Wilson interval
  (slice discovery: where does the model fail most).

Scaling and PCA are fitted on all the run's items in the space (no labels are used), clusters on
the items of the mode. Results are cached as JSON beside the store (``<store>.clusters/``), keyed
by the run, the space and the versions of what it is read from, and every option, so the app
draws a computed result at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from wif_core.clusters import ALGORITHMS, MAPS, MODES, SPACES
from wif_core.clusters import algorithms as algo
from wif_core.clusters.cards import (
    ClusterCard,
    factor_ami,
    factor_values,
    over_represented,
    representatives,
    top_sae_features,
    wilson,
)
from wif_core.clusters.ctfidf import class_tfidf
from wif_core.clusters.spaces import build_space, item_text, resolve, sae_item_codes
from wif_core.errors import InputError
from wif_core.jsondir import JsonDir, jsonable
from wif_core.metrics.auc import DEFAULT_LEVEL
from wif_core.store import Store

log = logging.getLogger(__name__)
CLUSTERS_VERSION = 1
N_REPRESENTATIVES = 5
SNIPPET = 160


def snippet(text: str, width: int = SNIPPET) -> str:
    """One line of at most ``width`` characters."""
    s = " ".join(str(text).split())
    return s[:width] + ("…" if len(s) > width else "")


@dataclass(kw_only=True)
class ClusterResult:
    """Clusters of one run in one space, their cards, and every item's place (cluster and 2-D map)."""

    run_id: str
    task: str
    space: str
    tier: str
    description: str
    settings: dict[str, Any]
    mode: str
    algorithm: str
    k: int  # clusters found, not counting HDBSCAN's noise
    k_chosen_by: str  # "silhouette", "user" or "hdbscan"
    silhouettes: dict[str, float]
    silhouette: float
    map: str
    seed: int
    n_items: int
    n_failed: int
    n_clustered: int
    base_rate: float  # failure rate over all the run's items in the space
    clusters: list[ClusterCard]
    factor_ami: dict[str, float] = field(default_factory=dict)
    item_ids: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)  # per item; in mode failures, successes get their nearest
    clustered: list[bool] = field(default_factory=list)  # whether the item was clustered (vs placed)
    failed: list[int] = field(default_factory=list)
    splits: list[str | None] = field(default_factory=list)
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    ci_level: float = DEFAULT_LEVEL

    def to_json(self, items: bool = True) -> dict[str, Any]:
        """The result as JSON-ready data; without ``items``, no per-item arrays (`wif cluster --json`)."""
        out = asdict(self)
        if not items:
            for key in ("item_ids", "labels", "clustered", "failed", "splits", "x", "y"):
                out.pop(key)
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ClusterResult:
        d = dict(d)
        d["clusters"] = [ClusterCard.from_json(c) for c in d["clusters"]]
        nan = float("nan")  # JSON has no NaN: the cache wrote null
        d["silhouette"] = nan if d.get("silhouette") is None else d["silhouette"]
        d["silhouettes"] = {k: nan if v is None else v for k, v in d.get("silhouettes", {}).items()}
        return cls(**d)

    def card(self, cluster_id: int) -> ClusterCard:
        return next(c for c in self.clusters if c.id == cluster_id)


class ClusterCache(JsonDir):
    """Cluster results beside a store (``<store>.clusters/``), shared by the page and ``wif cluster``."""

    kind = "clusters"

    def get(self, key: str) -> ClusterResult | None:
        doc = self.read(key)
        try:
            return None if doc is None else ClusterResult.from_json(doc)
        except (ValueError, TypeError, KeyError):  # written by another version of ClusterResult
            return None

    def put(self, key: str, result: ClusterResult) -> None:
        self.write(key, jsonable(result.to_json()))


def _check_options(space: str, mode: str, algorithm: str, k: int | None, map_method: str) -> None:
    if space not in SPACES:
        raise InputError(f"--space must be one of {', '.join(SPACES)}, not '{space}'")
    if mode not in MODES:
        raise InputError(f"--mode must be one of {', '.join(MODES)}, not '{mode}'")
    if algorithm not in ALGORITHMS:
        raise InputError(f"--algorithm must be one of {', '.join(ALGORITHMS)}, not '{algorithm}'")
    if map_method not in MAPS:
        raise InputError(f"--map must be one of {', '.join(MAPS)}, not '{map_method}'")
    if k is not None and algorithm == "hdbscan":
        raise InputError("--k applies to kmeans; HDBSCAN finds the number of clusters itself (use --min-cluster-size)")
    if k is not None and (k < 2 or k > algo.K_LIMIT):
        raise InputError(f"--k {k} is out of range: use 2..{algo.K_LIMIT}, or leave --k out to choose by silhouette")


def _card_sae(store: Store, run_id: str, space: str, settings: dict[str, Any]) -> tuple[int, str] | None:
    """The SAE whose features the cards list (the space's own, else the run's first), and its version."""
    from wif_core.sae.paths import available, fingerprint

    saes = available(store.path, run_id)
    if space == "sae":
        return int(settings["layer"]), str(settings["sae_version"])
    if not saes:
        return None
    layer, path = next(iter(saes.items()))
    return layer, fingerprint(path)


def cache_key(
    store: Store,
    run_id: str,
    *,
    n_items: int,
    space: str,
    settings: dict[str, Any],
    options: dict[str, Any],
    sae: tuple[int, str] | None,
) -> str:
    run = store.run(run_id)
    payload = {
        "v": CLUSTERS_VERSION,
        "run": run_id,
        "n": n_items,
        "split": run.split_config,
        "config": run.config,
        "space": space,
        "settings": settings,
        "options": options,
        "sae": sae,
    }
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def cluster_run(
    store: Store,
    run_id: str,
    space: str = "activations",
    mode: str = "failures",
    algorithm: str = "kmeans",
    k: int | None = None,
    seed: int = 0,
    layer: int | None = None,
    site: str | None = None,
    method: str | None = None,
    map_method: str = "pca",
    min_cluster_size: int | None = None,
    sae_features: bool = True,
    cache: ClusterCache | None = None,
) -> ClusterResult:
    """Cluster ``run_id``'s items (not excluded for leakage) in ``space`` and summarise each cluster.

    ``k`` None chooses k in 2..10 by silhouette (kmeans); ``min_cluster_size`` sets HDBSCAN's
    (default max(5, n/25)). Bad options, and a space the run lacks, raise a one-line ``InputError``.
    """
    _check_options(space, mode, algorithm, k, map_method)
    settings = resolve(store, run_id, space, layer=layer, site=site, method=method)
    n_items = store.count_items(run_id, include_excluded=False)  # a cached result needs no item read
    if not n_items:
        raise InputError(f"run {run_id} has no scored items to cluster (see `wif items --run {run_id}`)")
    sae = _card_sae(store, run_id, space, settings) if sae_features else None
    options = {
        "mode": mode,
        "algorithm": algorithm,
        "k": k,
        "seed": seed,
        "map": map_method,
        "min_cluster_size": min_cluster_size,
        "sae_features": sae_features,
    }
    key = cache_key(store, run_id, n_items=n_items, space=space, settings=settings, options=options, sae=sae)
    if cache is not None and (hit := cache.get(key)) is not None:
        return hit
    frame = store.items(run_id, include_excluded=False)

    times: dict[str, float] = {}
    t = time.perf_counter()
    sp = build_space(
        store,
        run_id,
        space,
        frame["item_id"].tolist(),
        layer=settings.get("layer"),
        site=settings.get("site"),
        method=settings.get("method"),
    )
    times["features"] = time.perf_counter() - t
    frame = frame.set_index("item_id").loc[sp.item_ids].reset_index()
    failed = (~frame["correct"].astype(bool)).to_numpy(dtype=int)
    if not len(frame):
        raise InputError(f"run {run_id} has no items with {space} features to cluster")

    t = time.perf_counter()
    Z = algo.Reducer(sp.scale).fit(sp.X, seed).transform(sp.X)
    rows = np.flatnonzero(failed == 1) if mode == "failures" else np.arange(len(frame))
    what = "failed items" if mode == "failures" else "items"
    if len(rows) < 3:
        hint = "use --mode all, or collect more items" if mode == "failures" else "collect more items"
        raise InputError(
            f"run {run_id} has {len(rows)} {what} in the {space} space; clustering needs at least 3 ({hint})"
        )
    if k is not None:
        algo.check_k(k, len(rows), what)
    if algorithm == "kmeans":
        choice = algo.kmeans_auto(Z[rows], k, seed)
        raw, chosen_by, sil_by_k = choice.labels, choice.chosen_by, choice.silhouettes
    else:
        raw, chosen_by, sil_by_k = algo.hdbscan(Z[rows], min_cluster_size), "hdbscan", {}
    labels = np.full(len(frame), -1, dtype=int)
    labels[rows] = raw
    is_clustered = np.zeros(len(frame), dtype=bool)
    is_clustered[rows] = True
    others = np.flatnonzero(~is_clustered)
    if len(others):  # successes in mode failures: each in the cluster nearest to it
        if algorithm == "kmeans":
            cents = algo.centroids_of(Z[rows], raw)
            ids = np.array(sorted(cents))
            labels[others] = algo.nearest(Z[others], np.stack([cents[c] for c in ids]), ids)
        else:
            labels[others] = algo.nearest(Z[others], Z[rows], raw)
    times["cluster"] = time.perf_counter() - t

    # ids in reading order: by failure rate (mode all) or size (mode failures), noise last
    found = sorted(set(raw.tolist()) - {-1})

    def rank(c: int) -> tuple[float, float]:
        region = labels == c
        rate = failed[region].mean() if region.any() else 0.0
        return (-rate, -int((raw == c).sum())) if mode == "all" else (-int((raw == c).sum()), -rate)

    order = sorted(found, key=rank)
    remap = {c: n for n, c in enumerate(order)} | {-1: -1}
    labels = np.array([remap[c] for c in labels], dtype=int)

    t = time.perf_counter()
    xy = algo.map_2d(Z, map_method, seed)
    times["map"] = time.perf_counter() - t

    t = time.perf_counter()
    texts = [item_text(c, ch) for c, ch in zip(frame["context"], frame["choices"], strict=True)]
    metas = [json.loads(m) if isinstance(m, str) and m else {} for m in frame["meta"]]
    factors = factor_values([metas[i] for i in rows]) if store.run(run_id).task.startswith("gen-") else {}
    words = class_tfidf([texts[i] for i in rows], labels[rows].tolist())
    codes = _codes_for(store, run_id, sae, sp.item_ids, rows) if sae is not None else None
    cards = []
    for c in [*range(len(order)), *([-1] if -1 in raw else [])]:
        members = rows[labels[rows] == c]
        region = np.flatnonzero(labels == c) if c >= 0 else members
        rate = wilson(int(failed[region].sum()), len(region))
        shares, counts = over_represented(np.flatnonzero(labels[rows] == c), factors) if factors else ([], {})
        reps = representatives(Z, members, N_REPRESENTATIVES)
        splits = frame["split"].iloc[members].fillna("none").value_counts()
        cards.append(
            ClusterCard(
                id=c,
                size=len(members),
                n_failed=int(failed[region].sum()),
                n_region=len(region),
                failure_rate=rate.rate,
                ci_low=rate.ci_low,
                ci_high=rate.ci_high,
                ci_level=rate.ci_level,
                top_words=words[c].words,
                word_scores=words[c].scores,
                top_features=top_sae_features(codes, np.flatnonzero(labels[rows] == c)) if codes is not None else [],
                factors=shares,
                factor_counts=counts,
                representatives=[sp.item_ids[i] for i in reps],
                examples=[snippet(texts[i]) for i in reps],
                splits={str(s): int(n) for s, n in splits.items()},
            )
        )
    ami = factor_ami(labels[rows], factors) if factors else {}
    times["cards"] = time.perf_counter() - t

    sil = algo._silhouette(Z[rows], labels[rows], seed) if len(set(labels[rows].tolist())) > 1 else float("nan")
    result = ClusterResult(
        run_id=run_id,
        task=store.run(run_id).task,
        space=space,
        tier=sp.tier,
        description=sp.description,
        settings=settings,
        mode=mode,
        algorithm=algorithm,
        k=len(order),
        k_chosen_by=chosen_by,
        silhouettes={str(kk): v for kk, v in sil_by_k.items()},
        silhouette=sil,
        map=map_method,
        seed=seed,
        n_items=len(frame),
        n_failed=int(failed.sum()),
        n_clustered=len(rows),
        base_rate=float(failed.mean()),
        clusters=cards,
        factor_ami=ami,
        item_ids=list(sp.item_ids),
        labels=labels.tolist(),
        clustered=is_clustered.tolist(),
        failed=failed.tolist(),
        splits=[s if isinstance(s, str) else None for s in frame["split"]],
        x=xy[:, 0].tolist(),
        y=xy[:, 1].tolist(),
        seconds=times,
    )
    if cache is not None:
        cache.put(key, result)
    return result


def _codes_for(
    store: Store, run_id: str, sae: tuple[int, str], item_ids: list[str], rows: np.ndarray
) -> np.ndarray | None:
    """SAE codes ``[len(rows), d_sae]`` of the clustered items (zeros for items without codes), or None."""
    try:
        code_ids, codes = sae_item_codes(store, run_id, sae[0])
    except InputError as exc:
        log.warning("no SAE features on the cards (%s)", exc)
        return None
    index = {i: n for n, i in enumerate(code_ids)}
    out = np.zeros((len(rows), codes.shape[1]), dtype=np.float32)
    for n, i in enumerate(rows):
        if item_ids[i] in index:
            out[n] = codes[index[item_ids[i]]]
    return out
